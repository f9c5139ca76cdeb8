"""The finder interface: which neurons are responsible for a class's mistakes.

Every finder implements one call, :meth:`Finder.find`, in Captum's ``attribute`` style: the same
arguments for every method and one :class:`FinderResult`. Finders work on CACHED pooled features
(:class:`~neuroinspect.harness.features.FeatureSet`): the backbone is frozen, so the pooled
feature f ∈ R^D of every sample is computed once and the decision layer ``nn.Linear(D, K)`` is all
a finder needs (neuron n = input n of the decision layer).

Shared pieces live here so that every finder reports the same things the same way:

- :func:`select_mistakes`: the class-c mistakes of a feature set, with the checks a user can trip
  (class index, feature width, no mistakes → :class:`~neuroinspect.errors.UserError`);
- :func:`importance`: the knock-out ratio ``imp`` of spec §2.2;
- :func:`gamma_heuristic`: the editing target γ of spec §2.5;
- :class:`FinderResult`: the two ranked lists, the D-vector of scores, counts, ``to_json`` and a table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.registry import Registry

LISTS = ("insufficient", "excessive")
#: How many insufficient neurons the suggested editing target γ is computed for: the number the demo
#: and ``bench`` edit (``ExperimentConfig.num_neurons``), so that ``debug`` prints the γ they use.
GAMMA_TOP = 5


# -- the class-c mistakes ------------------------------------------------------------------------
@dataclass
class Mistakes:
    """The samples of class c that the model gets wrong, taken from one :class:`FeatureSet`.

    - ``positions``: M int64, rows of the feature set;
    - ``features``: M×D float32 pooled features; ``stored_preds``: M int64, the predictions the
      feature set recorded at extraction time (what made them mistakes);
    - ``indices`` / ``paths``: dataset indices and sample paths (M);
    - ``already_correct``: M bool, rows that the given decision layer classifies as c although the
      stored prediction was wrong (e.g. features extracted under bf16 autocast, or a decision layer
      that differs from the one that produced the stored logits). They are counted, never dropped.
    - ``class_mean``: D, mean feature over all samples labelled c (correct and incorrect alike);
      ``all_mean``: D, mean feature over the whole split (the reference's choice for ``imp``);
    - ``correct_features``: the class-c samples the stored logits got right (C×D).
    """

    class_idx: int
    split: str | None
    positions: torch.Tensor
    features: torch.Tensor
    stored_preds: torch.Tensor
    indices: torch.Tensor
    paths: list[str]
    already_correct: torch.Tensor
    class_mean: torch.Tensor
    all_mean: torch.Tensor
    correct_features: torch.Tensor

    def __len__(self) -> int:
        return int(self.positions.numel())


def check_decision(decision: nn.Module, features: FeatureSet, class_idx: int) -> None:
    """Raise a :class:`UserError` when ``decision`` cannot explain ``features`` for ``class_idx``."""
    if not isinstance(decision, nn.Linear):
        raise UserError(f"the decision layer must be an nn.Linear(D, K), got {type(decision).__name__}.")
    d = int(features.features.shape[1]) if features.features.ndim == 2 else -1
    if d != decision.in_features:
        raise UserError(
            f"the cached features have width {d} but the decision layer has {decision.in_features} input neurons; "
            "the features were computed with another model. Delete the feature cache entry or pass the matching checkpoint."
        )
    k = int(decision.out_features)
    if (
        isinstance(class_idx, bool)
        or not isinstance(class_idx, (int, np.integer))
        or not 0 <= int(class_idx) < k
    ):
        raise UserError(f"--class-idx {class_idx} is out of range: the model has {k} classes, 0..{k - 1}.")


def select_mistakes(decision: nn.Linear, features: FeatureSet, class_idx: int) -> Mistakes:
    """The class-``class_idx`` mistakes of ``features`` (label = c, stored prediction ≠ c).

    The mistakes are found and explained on the SAME features (one transform, spec bug 16).
    Raises :class:`UserError` when there are none.
    """
    check_decision(decision, features, class_idx)
    c = int(class_idx)
    split = features.meta.get("split") if features.meta else None
    labels = features.labels.long()
    stored = features.logits.argmax(dim=1) if features.logits.numel() else torch.full_like(labels, -1)
    is_c = labels == c
    wrong = is_c & (stored != c)
    if not bool(wrong.any()):
        where = f"split {split!r}" if split else "this split"
        n_c = int(is_c.sum())
        why = "it has no samples" if n_c == 0 else f"all {n_c} of its samples are classified correctly"
        raise UserError(f"class {c} has no mistakes on {where} ({why}); choose another class or split.")
    pos = torch.nonzero(wrong).flatten()
    feats = features.features[pos].float()
    W = decision.weight.detach().float().cpu()
    b = decision.bias.detach().float().cpu() if decision.bias is not None else torch.zeros(W.shape[0])
    with torch.no_grad():
        now = torch.nn.functional.linear(feats, W, b).argmax(dim=1)
    all_feats = features.features.float()
    return Mistakes(
        class_idx=c,
        split=split,
        positions=pos,
        features=feats,
        stored_preds=stored[pos],
        indices=features.indices[pos].long(),
        paths=[features.paths[i] for i in pos.tolist()],
        already_correct=now == c,
        class_mean=all_feats[is_c].mean(dim=0),
        all_mean=all_feats.mean(dim=0),
        correct_features=all_feats[is_c & (stored == c)],
    )


# -- imp and γ -----------------------------------------------------------------------------------
def importance(
    decision: nn.Linear, mean_feature: torch.Tensor, class_idx: int, chunk: int = 1024
) -> torch.Tensor:
    """Knock-out ratio of every neuron for class c on a mean feature (spec §2.2), a float64 D-vector.

    ``imp[n] = p / p^(-n)`` with ``p = softmax(W f̄ + b)_c`` and ``p^(-n)`` the same with component n
    of f̄ set to 0. ``imp > 1``: the neuron supports class c; ``imp < 1``: it works against c.
    The masked copies are built from a fresh clone of the expanded mean (spec bug 18: masking the
    expanded view in place fails on CPU); they are processed ``chunk`` neurons at a time (memory
    ``chunk × D``). Computed in float64.
    """
    W = decision.weight.detach().double().cpu()
    b = (
        decision.bias.detach().double().cpu()
        if decision.bias is not None
        else torch.zeros(W.shape[0], dtype=torch.float64)
    )
    f = mean_feature.detach().double().cpu().flatten()
    D = f.numel()
    logp = torch.log_softmax(W @ f + b, dim=0)[class_idx]
    out = torch.empty(D, dtype=torch.float64)
    for start in range(0, D, chunk):
        stop = min(D, start + chunk)
        rows = torch.arange(stop - start)
        masked = f.unsqueeze(0).expand(stop - start, D).clone()
        masked[rows, rows + start] = 0.0
        logp_masked = torch.log_softmax(masked @ W.T + b, dim=1)[:, class_idx]
        out[start:stop] = torch.exp(logp - logp_masked)
    return out


def gamma_heuristic(imp: torch.Tensor | Sequence[float] | np.ndarray, neurons: Iterable[int]) -> float:
    """The editing target γ of spec §2.5: ``1 + (min_{n∈S} imp[n] − 1) / 3`` for the selected neurons S.

    Food101 / steak in the paper: S = {1039, 1172, 1549}, min imp 1.0629 → γ ≈ 1.021 (README o = 1.02).
    """
    vals = np.asarray(imp, dtype=np.float64).ravel()
    sel = [int(n) for n in neurons]
    if not sel:
        raise UserError("select at least one neuron to compute the editing target γ.")
    bad = [n for n in sel if not 0 <= n < vals.size]
    if bad:
        raise UserError(
            f"neuron index {bad[0]} is out of range: the decision layer has {vals.size} input neurons, 0..{vals.size - 1}."
        )
    return float(1.0 + (vals[sel].min() - 1.0) / 3.0)


# -- the result ----------------------------------------------------------------------------------
@dataclass
class FinderResult:
    """What a finder returns for one class.

    - ``insufficient`` / ``excessive``: ranked rows ``{"neuron", "prec5", "imp"}``. Insufficient
      properties: raising the neuron would help class c (the image lacks the feature); excessive
      properties: lowering it would help (the feature pushes toward a wrong class). ``prec5`` is the
      fraction (0..1) of corrected mistakes with the neuron among the top-5 counterfactual shifts
      for ``counterfactual``, the method's own score for the baselines (see ``score_name``).
    - ``scores``: D float, the responsibility score used to rank all neurons (larger = more
      responsible, either list); ``insufficient_scores`` / ``excessive_scores``: D, per list.
      ``tiebreak``: D or ``None``, a secondary key for equal scores (vote counts tie often).
    - ``imp``: D float64, the knock-out ratio of spec §2.2 (``imp_reference`` says on which mean).
    - ``counts``: ``mistakes`` (class-c samples the stored predictions got wrong), ``corrected``
      (flipped after ≥ 1 step), ``never_flipped`` (still wrong at the step cap), ``already_correct``
      (the decision layer already gives class c: 0 steps, no shift). ``None`` where not applicable.
    - ``never_flipped``: the sample paths that hit the cap.
    - ``samples``: per-mistake details (index, path, stored prediction, steps, status, top shifts).
    - ``shifts``: M×D counterfactual shifts (zero rows where no step was taken), or ``None``.
    """

    method: str
    class_idx: int
    insufficient: list[dict[str, Any]]
    excessive: list[dict[str, Any]]
    scores: torch.Tensor
    insufficient_scores: torch.Tensor
    excessive_scores: torch.Tensor
    imp: torch.Tensor
    counts: dict[str, int | None]
    never_flipped: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    score_name: str = "Prec@5"
    imp_reference: str = "class_mean"
    tiebreak: torch.Tensor | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    shifts: torch.Tensor | None = None
    wall_seconds: float = 0.0

    @property
    def num_features(self) -> int:
        return int(self.scores.numel())

    def gamma_for(self, neurons: Iterable[int]) -> float:
        """Editing target γ for the selected neurons (spec §2.5), from this result's ``imp``."""
        return gamma_heuristic(self.imp, neurons)

    def ranking(self, which: str = "both") -> list[int]:
        """All D neurons, most responsible first, by ``scores`` (``which="both"``) or one list's scores.

        Ties are broken by ``tiebreak`` (descending; for the counterfactual the mean |shift| over the
        corrected mistakes) and then by neuron index (ascending), so the order never depends on the
        platform's sort.
        """
        if which == "both":
            s = self.scores
        elif which == "insufficient":
            s = self.insufficient_scores
        elif which == "excessive":
            s = self.excessive_scores
        else:
            raise ValueError(f"which must be 'both', 'insufficient' or 'excessive', got {which!r}")
        primary = s.detach().double().cpu().numpy()
        secondary = (
            self.tiebreak.detach().double().cpu().numpy()
            if self.tiebreak is not None
            else np.zeros_like(primary)
        )
        order = np.lexsort((np.arange(primary.size), -secondary, -primary))
        return [int(i) for i in order]

    def top_neurons(self, which: str = "insufficient", n: int = 10) -> list[int]:
        """The first ``n`` neurons of one printed list."""
        rows = self.insufficient if which == "insufficient" else self.excessive
        return [int(r["neuron"]) for r in rows[:n]]

    def ordered(self, which: str = "insufficient") -> list[int]:
        """All D neurons in the order a person reads list ``which``: the printed rows first, then the rest
        of :meth:`ranking` (the vote cut and the ``top`` limit leave the printed list short). ``"both"``:
        the merged :meth:`ranking`. This is the order candidates are handed to a selector, and the order
        the per-list scores are computed on."""
        if which == "both":
            return self.ranking("both")
        head = self.top_neurons(which, self.num_features)
        seen = set(head)
        return head + [n for n in self.ranking(which) if n not in seen]

    def empty_reason(self, which: str) -> str:
        """Why the ``which`` list (insufficient / excessive) came out empty, in words."""
        counts, settings = self.counts, self.settings or {}
        if self.score_name == "Prec@5":
            if not counts.get("corrected"):
                return (
                    "no mistake could be corrected within the step cap (max_steps), so nothing was voted for."
                )
            sign = "positive" if which == "insufficient" else "negative"
            return (
                f"no neuron was among the 5 largest {sign} shifts of more than {settings.get('cut_ratio', 3.0)}% "
                f"of the {counts['corrected']} corrected mistakes (cut_ratio)."
            )
        if self.method == "gradient" and settings.get("baseline") == "zero" and which == "insufficient":
            return (
                "with the zero baseline, gradient × activation on non-negative features can only blame a "
                "neuron that is present, so no neuron is insufficient; --finder-param baseline=class_mean "
                "compares with the class's correct images instead."
            )
        return f"no neuron met {self.method}'s criterion for this list (a responsibility above 0 in this direction)."

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the content of ``debug.json``), without the D-vectors of scores."""
        suggested = self.top_neurons("insufficient", GAMMA_TOP)
        return {
            "method": self.method,
            "class_idx": self.class_idx,
            "split": self.split,
            "score_name": self.score_name,
            "imp_reference": self.imp_reference,
            "counts": dict(self.counts),
            "insufficient": [_plain_row(r) for r in self.insufficient],
            "excessive": [_plain_row(r) for r in self.excessive],
            "gamma_suggested": (
                {"neurons": suggested, "gamma": self.gamma_for(suggested)} if suggested else None
            ),
            "never_flipped": list(self.never_flipped),
            "samples": self.samples,
            "ranking_top50": self.ranking()[:50],
            "settings": dict(self.settings),
            "wall_seconds": round(float(self.wall_seconds), 4),
        }

    def format_table(self, top: int | None = None, class_names: Sequence[str] | None = None) -> str:
        """Both lists side by side in plain text: rank, neuron, score, imp; then the counts and γ."""
        cname = (
            f" ({class_names[self.class_idx]})" if class_names and self.class_idx < len(class_names) else ""
        )
        lines = [
            f"{self.method}: neurons behind the mistakes of class {self.class_idx}{cname}"
            + (f" on {self.split}" if self.split else "")
        ]
        pct = self.score_name == "Prec@5"
        lines.append(
            (
                "Prec@5: the share of the corrected mistakes whose 5 largest counterfactual shifts include "
                "the neuron. "
                if pct
                else f"{self.score_name}: the {self.method} finder's responsibility score. "
            )
            + "imp: the class's probability on its mean feature over the same with the neuron set to 0 "
            "(1.10: 10% lower without it; below 1: the neuron works against the class)."
        )
        for name in LISTS:
            rows = getattr(self, name)[: top if top is not None else None]
            what = "raising it helps class c" if name == "insufficient" else "lowering it helps class c"
            lines.append("")
            lines.append(f"{name.capitalize()} properties ({what}): {len(rows)} neuron(s)")
            if not rows:
                lines.append(f"  (empty: {self.empty_reason(name)})")
            lines.append(f"  {'rank':>4}  {'neuron':>6}  {self.score_name:>12}  {'imp':>8}")
            for r, row in enumerate(rows, start=1):
                score = f"{100 * row['prec5']:.1f}%" if pct else f"{row['prec5']:.4g}"
                lines.append(f"  {r:>4}  {row['neuron']:>6}  {score:>12}  {row['imp']:>8.4f}")
        lines.append("")
        cnt = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.counts.items() if v is not None)
        lines.append(f"Counts: {cnt}")
        if self.never_flipped:
            shown = ", ".join(self.never_flipped[:5]) + (" ..." if len(self.never_flipped) > 5 else "")
            lines.append(f"Never flipped within the step cap: {shown}")
        suggested = self.top_neurons("insufficient", GAMMA_TOP)
        if suggested:
            lines.append(
                f"Editing target γ = 1 + (min imp − 1)/3 for S = {suggested} (the first {len(suggested)} "
                f"insufficient neurons, what `neuroinspect edit --neurons` and the demo would use): "
                f"{self.gamma_for(suggested):.4f}"
            )
        return "\n".join(lines)


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"neuron": int(row["neuron"]), "prec5": float(row["prec5"]), "imp": float(row["imp"])}


# -- the interface and its registry --------------------------------------------------------------
class Finder:
    """Base class. Subclasses set ``name`` and implement :meth:`find`.

    Constructor arguments are the method's hyperparameters (with defaults); the call's arguments
    are the same for every method. ``top``: how many rows each printed list keeps; ``ref``: the
    reference's quirks where the numbers depend on them (spec §9); ``device``: where to compute.
    """

    name: ClassVar[str] = ""
    score_name: ClassVar[str] = "score"

    def __init__(self, *, top: int = 30, ref: bool = False, device: str | torch.device = "cpu") -> None:
        if top < 1:
            raise UserError(f"--top must be at least 1, got {top}.")
        self.top = int(top)
        self.ref = bool(ref)
        self.device = str(device)

    def find(
        self,
        decision: nn.Linear,
        features: FeatureSet,
        class_idx: int,
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> FinderResult:
        """Rank the neurons (inputs of ``decision``, ``nn.Linear(D, K)``) behind the mistakes of ``class_idx``.

        ``features``: the pooled features of one split (N×D) with the logits recorded at extraction
        (N×K) and the labels (N). Raises :class:`UserError` when the class index is out of range, the
        feature width differs from D, or the class has no mistakes on this split.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The hyperparameters of this instance, recorded with every result."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None)))
        }

    def imp_for(self, decision: nn.Linear, mistakes: Mistakes) -> tuple[torch.Tensor, str]:
        """``imp`` on the class-c mean feature (default) or on the all-class mean (``ref``, spec bug 18)."""
        if self.ref:
            return importance(decision, mistakes.all_mean, mistakes.class_idx), "all_mean"
        return importance(decision, mistakes.class_mean, mistakes.class_idx), "class_mean"


FINDERS: Registry[type[Finder]] = Registry("finder")


def register_finder(name: str, summary: str | None = None) -> Callable[[type[Finder]], type[Finder]]:
    """Class decorator: ``@register_finder("counterfactual")``."""

    def deco(cls: type[Finder]) -> type[Finder]:
        cls.name = name
        return FINDERS.register(name, summary)(cls)

    return deco


__all__ = [
    "FINDERS",
    "Finder",
    "FinderResult",
    "Mistakes",
    "check_decision",
    "gamma_heuristic",
    "importance",
    "register_finder",
    "select_mistakes",
]
