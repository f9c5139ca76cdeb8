"""Causal ground truth on a class's mistakes (bundled benchmarks): which neurons the spurious attribute
moves, and by how much that moves each mistake's margin.

The bundled benchmarks can re-render a sample with another value of the spurious attribute and
nothing else changed (:func:`neuroinspect.datasets.groundtruth.counterfactual_grid`). For each
mistake i of class c (predicted as k_i ≠ c) and each *other* spurious value s' of the sample:

    Δa_i,n  = mean over s' of a_n(x_i with s') − a_n(x_i)         (pooled activation, neuron n)
    d_i,n   = W[c, n] − W[k_i, n]                                  (decision weights, per unit of a_n)
    e_i,n   = d_i,n · Δa_i,n                                       (logits: neuron n's share of the
                                                                    change of the margin z_c − z_k_i)
    E_n     = mean over the mistakes of e_i,n                      (:attr:`MistakeEffects.effect`)

Because the decision layer is linear, Σ_n e_i,n is exactly the change of mistake i's margin z_c −
z_k_i when its spurious attribute is changed (the bias cancels), so E says how the counterfactual's
margin gain is spread over the neurons. E_n > 0: changing the background helps class c through n.

**Directions** (matched to a finder's two lists, :func:`causal_truth`): a neuron with E_n > 0 is
``insufficient`` when the counterfactual *raises* it (mean Δa_n > 0: the mistakes lack a feature
that class c relies on, e.g. "land" for squares on water) and ``excessive`` when it *lowers* it
(mean Δa_n < 0: a present feature pushed toward the wrong class, e.g. "water").

**Threshold** (stated, :data:`DEFAULT_THRESHOLD`): a neuron is causal iff E_n ≥ 0.1 · max_n E_n (and
E_n > 0): it carries at least a tenth of the largest single-neuron effect.

**Margin share** of a neuron set S (:func:`margin_share`): Σ_{n∈S} E_n / Σ_n max(E_n, 0): the part of
the counterfactual's positive margin gain that S carries (negative members count against it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from neuroinspect.datasets.base import ImageDataset
from neuroinspect.errors import UserError
from neuroinspect.harness.models import ModelSurface
from neuroinspect.runtime import progress

#: E_n ≥ DEFAULT_THRESHOLD · max E makes a neuron causal (see the module docstring)
DEFAULT_THRESHOLD = 0.1
LISTS = ("insufficient", "excessive")


@dataclass
class MistakeEffects:
    """Per-neuron margin effects of changing the spurious attribute of class c's mistakes.

    - ``effect``: (D,) E_n in logit units; ``per_mistake``: (M, D) e_i,n;
    - ``delta``: (D,) mean Δa_n over the mistakes (activation units); ``margin_weight``: (D,) mean d_n;
    - ``margin_before`` / ``margin_after``: (M,) z_c − z_k_i on the original and (mean over s') the
      counterfactual renders; ``flipped``: (M,) share of each mistake's counterfactuals predicted as c;
    - ``indices`` / ``preds``: the mistakes' dataset indices and predicted classes.
    """

    class_idx: int
    effect: np.ndarray
    per_mistake: np.ndarray
    delta: np.ndarray
    margin_weight: np.ndarray
    margin_before: np.ndarray
    margin_after: np.ndarray
    flipped: np.ndarray
    indices: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    split: str | None = None

    @property
    def num_features(self) -> int:
        return int(self.effect.size)

    @property
    def num_mistakes(self) -> int:
        return int(self.per_mistake.shape[0])

    @property
    def flip_rate(self) -> float:
        """Share of the (mistake, other spurious value) renders that the model classifies as c."""
        return float(self.flipped.mean()) if self.flipped.size else 0.0

    def margin_share(self, neurons: Iterable[int]) -> float:
        """:func:`margin_share` of ``neurons`` under these effects."""
        return margin_share(self.effect, neurons)

    def oracle(self, k: int) -> list[int]:
        """The ``k`` neurons with the largest E_n (ties by index): the oracle-neurons control."""
        order = np.lexsort((np.arange(self.effect.size), -self.effect))
        return [int(n) for n in order[: int(k)] if self.effect[n] > 0]

    def to_json(self) -> dict[str, Any]:
        return {
            "class_idx": self.class_idx,
            "split": self.split,
            "n_mistakes": self.num_mistakes,
            "flip_rate": self.flip_rate,
            "mean_margin_before": float(self.margin_before.mean()) if self.margin_before.size else None,
            "mean_margin_after": float(self.margin_after.mean()) if self.margin_after.size else None,
            "effect": [float(v) for v in self.effect],
            "delta": [float(v) for v in self.delta],
            "indices": list(self.indices),
            "preds": list(self.preds),
        }


def margin_share(effect: np.ndarray, neurons: Iterable[int]) -> float:
    """Σ_{n∈S} E_n / Σ_n max(E_n, 0) for the set S = ``neurons`` (duplicates counted once); 0 when no E_n > 0."""
    e = np.asarray(effect, dtype=np.float64)
    total = float(np.clip(e, 0.0, None).sum())
    if total <= 0:
        return 0.0
    s = sorted({int(n) for n in neurons})
    return float(e[s].sum()) / total if s else 0.0


def effects_from_activations(
    original: np.ndarray,
    counterfactual: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    class_idx: int,
    preds: Sequence[int],
    *,
    indices: Sequence[int] | None = None,
) -> MistakeEffects:
    """:class:`MistakeEffects` from pooled activations.

    ``original``: (M, D) activations of the mistakes; ``counterfactual``: (M, V, D) activations of
    their V ≥ 1 counterfactual renders (other spurious values); ``weight`` (K, D) and ``bias`` (K,)
    the decision layer; ``preds``: (M,) the predicted (wrong) class of each mistake.
    """
    a = np.asarray(original, dtype=np.float64)
    cf = np.asarray(counterfactual, dtype=np.float64)
    W = np.asarray(weight, dtype=np.float64)
    b = np.zeros(W.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    k = np.asarray(preds, dtype=np.int64).reshape(-1)
    M = a.shape[0]
    if a.ndim != 2 or cf.ndim != 3 or cf.shape[0] != M or cf.shape[2] != a.shape[1] or k.shape != (M,):
        raise ValueError(
            f"expected original (M, D), counterfactual (M, V, D), preds (M,); got {a.shape}, {cf.shape}, {k.shape}"
        )
    if cf.shape[1] < 1:
        raise UserError("the counterfactual needs at least one other value of the spurious attribute.")
    c = int(class_idx)
    if (k == c).any():
        raise ValueError("a mistake's predicted class must differ from class_idx")
    d = W[c][None, :] - W[k]  # (M, D)
    delta = cf.mean(axis=1) - a  # (M, D)
    per = d * delta
    z0 = a @ W.T + b
    z1 = cf @ W.T + b  # (M, V, K)
    rows = np.arange(M)
    margin_before = z0[rows, c] - z0[rows, k]
    z1_c = z1[:, :, c]
    z1_k = np.take_along_axis(z1, k[:, None, None].repeat(z1.shape[1], axis=1), axis=2)[:, :, 0]
    margin_after = (z1_c - z1_k).mean(axis=1)
    flipped = (z1.argmax(axis=2) == c).mean(axis=1)
    D = a.shape[1]
    return MistakeEffects(
        class_idx=c,
        effect=per.mean(axis=0) if M else np.zeros(D),
        per_mistake=per,
        delta=delta.mean(axis=0) if M else np.zeros(D),
        margin_weight=d.mean(axis=0) if M else np.zeros(D),
        margin_before=margin_before,
        margin_after=margin_after,
        flipped=flipped,
        indices=[int(i) for i in (indices if indices is not None else range(M))],
        preds=[int(p) for p in k],
    )


@torch.no_grad()
def mistake_effects(
    surface: ModelSurface,
    dataset: ImageDataset,
    transform: Callable[[Image.Image], Any],
    decision: nn.Linear,
    class_idx: int,
    mistake_indices: Sequence[int],
    preds: Sequence[int],
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    show_progress: bool = True,
) -> MistakeEffects:
    """Render each mistake with every other spurious value and measure :class:`MistakeEffects`.

    ``dataset``: the benchmark split the mistakes come from, as ``load`` returned it;
    ``mistake_indices`` / ``preds``: their dataset indices and predicted classes; ``transform``: the
    model's eval transform (PIL → normalized 3×H×W). The original activation is measured on the
    grid's own render of the sample (byte-identical to the dataset image), so both sides of Δa go
    through the same path.
    """
    from neuroinspect.datasets import groundtruth

    idx = np.asarray(mistake_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise UserError(f"class {class_idx} has no mistakes to render; nothing to measure.")
    core = dataset.core  # type: ignore[attr-defined]
    spur = dataset.spurious  # type: ignore[attr-defined]
    groundtruth.spurious_names(dataset)  # a UserError for datasets without ground truth
    device = torch.device(device)
    surface = surface.to(device).eval()
    originals: list[np.ndarray] = []
    cfs: list[np.ndarray] = []
    chunk = 8
    for start in progress(
        range(0, idx.size, chunk),
        desc=f"causal truth class {class_idx}",
        total=(idx.size + chunk - 1) // chunk,
        enabled=show_progress,
    ):
        sel = idx[start : start + chunk]
        grid = np.asarray(groundtruth.counterfactual_grid(dataset, sel))  # (m, n_core, n_sp, H, W, 3)
        n_sp = grid.shape[2]
        rows = []
        for j, i in enumerate(sel.tolist()):
            rows.append(grid[j, int(core[i])])  # (n_sp, H, W, 3): this sample on every spurious value
        flat = np.concatenate(rows)
        feats = []
        for b0 in range(0, flat.shape[0], batch_size):
            x = torch.stack(
                [transform(Image.fromarray(img, mode="RGB")) for img in flat[b0 : b0 + batch_size]]
            ).to(device)
            feats.append(surface.features(x).double().cpu())
        acts = torch.cat(feats).numpy().reshape(len(sel), n_sp, -1)
        for j, i in enumerate(sel.tolist()):
            own = int(spur[i])
            others = [s for s in range(n_sp) if s != own]
            originals.append(acts[j, own])
            cfs.append(acts[j, others])
    W = decision.weight.detach().double().cpu().numpy()
    b = decision.bias.detach().double().cpu().numpy() if decision.bias is not None else None
    out = effects_from_activations(
        np.stack(originals), np.stack(cfs), W, b, class_idx, preds, indices=idx.tolist()
    )
    out.split = dataset.split
    return out


@dataclass
class CausalTruth:
    """Direction-matched causal truth: boolean (D,) masks per list, with the rule that made them."""

    insufficient: np.ndarray
    excessive: np.ndarray
    threshold: float
    cutoff: float

    @property
    def either(self) -> np.ndarray:
        return self.insufficient | self.excessive

    def mask(self, which: str) -> np.ndarray:
        if which == "insufficient":
            return self.insufficient
        if which == "excessive":
            return self.excessive
        if which in ("both", "edited", "either"):
            return self.either
        raise ValueError(f"unknown list {which!r}")

    def counts(self) -> dict[str, int]:
        return {
            "insufficient": int(self.insufficient.sum()),
            "excessive": int(self.excessive.sum()),
            "either": int(self.either.sum()),
        }


def causal_truth(effects: MistakeEffects, threshold: float = DEFAULT_THRESHOLD) -> CausalTruth:
    """Causal neurons per direction (module docstring): E_n ≥ ``threshold`` · max E, E_n > 0, split by the
    sign of the mean activation change (> 0: insufficient, < 0: excessive)."""
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"the causal threshold must be in [0, 1], got {threshold}.")
    e = effects.effect
    top = float(e.max()) if e.size else 0.0
    cutoff = threshold * top
    causal = (e > 0) & (e >= cutoff)
    return CausalTruth(
        insufficient=causal & (effects.delta > 0),
        excessive=causal & (effects.delta < 0),
        threshold=float(threshold),
        cutoff=float(cutoff),
    )


def list_scores(
    ranking: Sequence[int],
    relevant: np.ndarray,
    effect: np.ndarray,
    ks: Sequence[int],
) -> dict[str, Any]:
    """P@k and margin share@k of the first k neurons of ``ranking`` against a boolean (D,) truth mask.

    ``chance_precision`` = |relevant| / D (a random ranking's expected precision); the chance margin
    share of k random neurons is k / D · Σ E / Σ max(E, 0), given as ``chance_margin_share``.
    """
    rel = np.asarray(relevant, dtype=bool)
    D = rel.size
    ranked = [int(n) for n in ranking]
    pos = float(np.clip(effect, 0, None).sum())
    chance_share_per_neuron = float(effect.sum()) / pos / D if pos > 0 else 0.0
    out: dict[str, Any] = {
        "precision_at_k": {},
        "margin_share_at_k": {},
        "chance_margin_share_at_k": {},
        "chance_precision": float(rel.sum()) / D if D else 0.0,
        "n_relevant": int(rel.sum()),
    }
    for k in ks:
        top = ranked[: int(k)]
        out["precision_at_k"][str(k)] = sum(1 for n in top if rel[n]) / int(k)
        out["margin_share_at_k"][str(k)] = margin_share(effect, top)
        out["chance_margin_share_at_k"][str(k)] = chance_share_per_neuron * int(k)
    return out


def _attribute_counts(labels: Sequence[str] | None, neurons: Sequence[int]) -> dict[str, int] | None:
    if labels is None:
        return None
    out: dict[str, int] = {}
    for n in neurons:
        lab = labels[int(n)]
        out[lab] = out.get(lab, 0) + 1
    return out


def list_recovery_record(
    ranking: Sequence[int],
    which: str,
    effects: MistakeEffects,
    truth: CausalTruth,
    *,
    method: dict[str, str],
    dataset: str,
    model: str,
    seed: int,
    provenance: dict[str, Any],
    ks: Sequence[int] = (5, 10, 20),
    attribute_labels: Sequence[str] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``neuron_recovery`` record scoring one of a finder's lists (``which``: ``insufficient`` or
    ``excessive``, in :meth:`FinderResult.ordered` order) against that list's causal truth.

    ``metrics``: ``list`` (which list), ``precision_at_k``, ``margin_share_at_k``, their chance rates
    (``chance_precision`` = |truth of the list| / D, ``chance_margin_share_at_k``), ``n_relevant``,
    the mistakes' ``flip_rate`` / ``n_mistakes`` and, descriptive only, the attribute-ratio labels
    (``attribute_labels_at_k``: how many of the first k are spurious / core / mixed / dead).
    ``config.list`` repeats the list, so a leaderboard keeps the lists apart.
    """
    if which not in LISTS:
        raise ValueError(f"which must be one of {LISTS}, got {which!r}")
    from neuroinspect.harness.records import make_record

    sc = list_scores(ranking, truth.mask(which), effects.effect, ks)
    metrics = {
        "list": which,
        **sc,
        "flip_rate": effects.flip_rate,
        "n_mistakes": effects.num_mistakes,
        "num_features": effects.num_features,
    }
    counts = {str(k): _attribute_counts(attribute_labels, list(ranking)[: int(k)]) for k in ks}
    if attribute_labels is not None:
        metrics["attribute_labels_at_k"] = counts
    cfg = {
        "list": which,
        "truth": {
            "kind": "causal_mistakes",
            "threshold": truth.threshold,
            "split": effects.split,
            "ks": list(ks),
        },
        **dict(config or {}),
    }
    return make_record(
        task="neuron_recovery",
        dataset=dataset,
        model=model,
        method=dict(method),
        seed=int(seed),
        metrics=metrics,
        config=cfg,
        provenance=provenance,
        class_idx=int(effects.class_idx),
    )


def edited_recovery_record(
    neurons: Sequence[int],
    k: int,
    effects: MistakeEffects,
    truth: CausalTruth,
    *,
    method: dict[str, str],
    dataset: str,
    model: str,
    seed: int,
    provenance: dict[str, Any],
    attribute_labels: Sequence[str] | None = None,
    selection: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``neuron_recovery`` record for the set actually edited (``config.list = "edited"``).

    ``precision_at_k[k]`` = the share of the edited neurons that are causal in either direction
    (divided by the number edited; 0 for an empty set), ``margin_share`` of the set, the chance rates
    of k random neurons, ``n_selected``, and ``core_let_through``: how many edited neurons the
    attribute-ratio ground truth labels ``core`` (the class's own object).
    """
    from neuroinspect.harness.records import make_record

    S = [int(n) for n in neurons]
    rel = truth.either
    hits = sum(1 for n in S if rel[n])
    D = effects.num_features
    pos = float(np.clip(effects.effect, 0, None).sum())
    attr = _attribute_counts(attribute_labels, S)
    metrics: dict[str, Any] = {
        "list": "edited",
        "precision_at_k": {str(k): hits / len(S) if S else 0.0},
        "margin_share_at_k": {str(k): margin_share(effects.effect, S)},
        "chance_precision": float(rel.sum()) / D,
        "chance_margin_share_at_k": {str(k): (float(effects.effect.sum()) / pos / D * k) if pos > 0 else 0.0},
        "n_relevant": int(rel.sum()),
        "n_selected": len(S),
        "causal_selected": hits,
        "flip_rate": effects.flip_rate,
        "n_mistakes": effects.num_mistakes,
    }
    if attr is not None:
        metrics["core_let_through"] = int(attr.get("core", 0))
        metrics["attribute_labels"] = attr
    if selection is not None:
        metrics["selection"] = selection
    cfg = {
        "list": "edited",
        "k": int(k),
        "neurons": S,
        "truth": {"kind": "causal_mistakes", "threshold": truth.threshold, "split": effects.split},
        **dict(config or {}),
    }
    return make_record(
        task="neuron_recovery",
        dataset=dataset,
        model=model,
        method=dict(method),
        seed=int(seed),
        metrics=metrics,
        config=cfg,
        provenance=provenance,
        class_idx=int(effects.class_idx),
    )


__all__ = [
    "DEFAULT_THRESHOLD",
    "edited_recovery_record",
    "list_recovery_record",
    "CausalTruth",
    "MistakeEffects",
    "causal_truth",
    "effects_from_activations",
    "list_scores",
    "margin_share",
    "mistake_effects",
]
