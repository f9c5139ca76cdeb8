"""Ground truth per neuron on the bundled benchmarks, and a finder's precision@k against it.

The bundled benchmarks render the same sample with every core value (the object: a shape, a digit
group) × every spurious value (a background, a colour), keeping every nuisance factor fixed
(:func:`neuroinspect.datasets.groundtruth.counterfactual_grid`). From the pooled activations
a[i, c, s, n] of neuron n on sample i rendered with core c and spurious value s:

- ``spurious_effect[n]`` = mean over (i, c) of the std over s of a[i, c, s, n]  (the response to the
  spurious attribute, core held fixed);
- ``core_effect[n]`` = mean over (i, s) of the std over c of a[i, c, s, n]  (the response to the core
  object, spurious value held fixed);
- ``spurious_ratio[n] = s / (s + c)`` (0 for a dead neuron).

Stds are population stds (ddof 0). Labels, with documented thresholds (:class:`TruthThresholds`):

- ``dead``: total effect s + c ≤ max(``abs_tol``, ``dead_fraction`` × the median total effect of the
  neurons whose total effect is > 0) — the neuron does not respond to either factor;
- ``spurious``: ratio ≥ ``spurious_min`` (2/3 by default: the spurious effect is at least twice the
  core effect);
- ``core``: ratio ≤ ``core_max`` (1/3: the core effect is at least twice the spurious effect);
- ``mixed``: in between.

**Which neurons are responsible for class c's mistakes** (:func:`responsible_neurons`): the mistakes
of class c are predicted as other classes k with shares q_k (from the finder's mistakes, or uniform
over k ≠ c). The neuron's *margin weight* is d_n = W[c,n] − Σ_k q_k W[k,n]: the change of the
class-c-versus-wrong-class logit margin per unit of activation. Changing only the spurious attribute
moves that margin through neuron n by about |d_n| × spurious_effect[n] (logit units), its *spurious
margin impact* e_n. A neuron is responsible iff it is labelled ``spurious`` and e_n ≥ ``min_impact``
× max over spurious neurons of e. Its direction is ``excessive`` when d_n < 0 (its decision weight
supports the wrong classes more than class c, or opposes class c: its presence causes the mistake)
and ``insufficient`` when d_n > 0 (a spurious cue class c relies on; its absence causes the
mistake). Both directions count by default, as a finder lists both.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from neuroinspect.datasets.base import ImageDataset
from neuroinspect.errors import UserError
from neuroinspect.harness.models import ModelSurface
from neuroinspect.harness.records import make_record
from neuroinspect.runtime import progress

LABELS = ("spurious", "core", "mixed", "dead")
DIRECTIONS = ("both", "excessive", "insufficient")

GridFn = Callable[[ImageDataset, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TruthThresholds:
    """Label thresholds (see the module docstring)."""

    spurious_min: float = 2.0 / 3.0
    core_max: float = 1.0 / 3.0
    dead_fraction: float = 0.02
    abs_tol: float = 1e-6

    def __post_init__(self) -> None:
        if not 0.0 <= self.core_max <= self.spurious_min <= 1.0:
            raise UserError(
                f"thresholds must satisfy 0 <= core_max <= spurious_min <= 1, got {self.core_max}, {self.spurious_min}."
            )


@dataclass
class NeuronTruth:
    """Per-neuron ground truth (D neurons) measured on counterfactual grids.

    ``spurious_effect``, ``core_effect``, ``spurious_ratio``, ``mean_activation``: float64 (D,);
    ``labels``: D strings from :data:`LABELS`; ``spurious_means``: (n_spurious, D) mean activation
    per spurious value; ``core_means``: (n_core, D) per core value; ``indices``: the dataset samples used.
    """

    spurious_effect: np.ndarray
    core_effect: np.ndarray
    spurious_ratio: np.ndarray
    labels: list[str]
    mean_activation: np.ndarray
    spurious_means: np.ndarray
    core_means: np.ndarray
    core_names: list[str]
    spurious_names: list[str]
    indices: list[int]
    thresholds: TruthThresholds = field(default_factory=TruthThresholds)
    dataset: str | None = None
    split: str | None = None

    @property
    def num_features(self) -> int:
        return int(self.spurious_effect.size)

    def mask(self, label: str) -> np.ndarray:
        """Boolean (D,) mask of the neurons with ``label``."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        return np.array([lab == label for lab in self.labels], dtype=bool)

    def neurons(self, label: str) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.mask(label))]

    def counts(self) -> dict[str, int]:
        return {lab: int(self.mask(lab).sum()) for lab in LABELS}

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "n_samples": len(self.indices),
            "core_names": self.core_names,
            "spurious_names": self.spurious_names,
            "thresholds": asdict(self.thresholds),
            "counts": self.counts(),
            "labels": self.labels,
            "spurious_effect": [float(v) for v in self.spurious_effect],
            "core_effect": [float(v) for v in self.core_effect],
            "spurious_ratio": [float(v) for v in self.spurious_ratio],
        }


def label_neurons(
    spurious_effect: np.ndarray, core_effect: np.ndarray, thresholds: TruthThresholds | None = None
) -> tuple[np.ndarray, list[str]]:
    """``(spurious_ratio, labels)`` from the two effects (D,) with the documented thresholds."""
    th = thresholds or TruthThresholds()
    s = np.asarray(spurious_effect, dtype=np.float64)
    c = np.asarray(core_effect, dtype=np.float64)
    total = s + c
    alive = total > 0
    median = float(np.median(total[alive])) if alive.any() else 0.0
    dead = total <= max(th.abs_tol, th.dead_fraction * median)
    ratio = np.where(total > 0, s / np.where(total > 0, total, 1.0), 0.0)
    labels = []
    for n in range(s.size):
        if dead[n]:
            labels.append("dead")
        elif ratio[n] >= th.spurious_min:
            labels.append("spurious")
        elif ratio[n] <= th.core_max:
            labels.append("core")
        else:
            labels.append("mixed")
    return ratio, labels


def truth_from_activations(
    acts: np.ndarray,
    core_names: Sequence[str] | None = None,
    spurious_names: Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
    thresholds: TruthThresholds | None = None,
) -> NeuronTruth:
    """:class:`NeuronTruth` from pooled activations ``acts`` of shape (n, n_core, n_spurious, D)."""
    a = np.asarray(acts, dtype=np.float64)
    if a.ndim != 4:
        raise ValueError(f"acts must be (n, n_core, n_spurious, D), got shape {a.shape}")
    n, n_core, n_sp, _ = a.shape
    if n_core < 2 or n_sp < 2:
        raise UserError(
            f"the counterfactual grid needs at least 2 core and 2 spurious values, got {n_core} × {n_sp}."
        )
    spurious_effect = a.std(axis=2, ddof=0).mean(axis=(0, 1))
    core_effect = a.std(axis=1, ddof=0).mean(axis=(0, 1))
    th = thresholds or TruthThresholds()
    ratio, labels = label_neurons(spurious_effect, core_effect, th)
    return NeuronTruth(
        spurious_effect=spurious_effect,
        core_effect=core_effect,
        spurious_ratio=ratio,
        labels=labels,
        mean_activation=a.mean(axis=(0, 1, 2)),
        spurious_means=a.mean(axis=(0, 1)),
        core_means=a.mean(axis=(0, 2)),
        core_names=list(core_names) if core_names is not None else [str(i) for i in range(n_core)],
        spurious_names=list(spurious_names) if spurious_names is not None else [str(i) for i in range(n_sp)],
        indices=[int(i) for i in (indices if indices is not None else range(n))],
        thresholds=th,
    )


def _default_grid_fn() -> tuple[
    GridFn, Callable[[ImageDataset], list[str]], Callable[[ImageDataset], list[str]]
]:
    from neuroinspect.datasets import groundtruth

    return groundtruth.counterfactual_grid, groundtruth.core_names, groundtruth.spurious_names


@torch.no_grad()
def neuron_attribute_scores(
    surface: ModelSurface,
    dataset: ImageDataset,
    transform: Callable[[Image.Image], Any],
    n_samples: int = 64,
    seed: int = 0,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    thresholds: TruthThresholds | None = None,
    grid_fn: GridFn | None = None,
    names: tuple[Sequence[str], Sequence[str]] | None = None,
    show_progress: bool = True,
) -> NeuronTruth:
    """Measure, for every neuron of ``surface``, its response to the spurious attribute versus the core object.

    ``n_samples`` samples of ``dataset`` (drawn without replacement with ``seed``) are re-rendered
    with every core × spurious value (``grid_fn``, by default the benchmark's
    ``counterfactual_grid``: uint8 (n, n_core, n_spurious, H, W, 3)), passed through ``transform``
    (PIL → normalized 3×H×W tensor, the model's eval transform) and the frozen model; the pooled
    activations (D per image) give the effects and labels of :class:`NeuronTruth`.
    ``names``: (core names, spurious names) when ``grid_fn`` is not the benchmark's.
    """
    if n_samples < 1:
        raise UserError(f"n_samples must be at least 1, got {n_samples}.")
    if len(dataset) == 0:
        raise UserError(
            f"dataset {dataset.name}/{dataset.split} is empty; cannot measure neuron ground truth."
        )
    core_nm: list[str] | None
    sp_nm: list[str] | None
    if grid_fn is None:
        grid_fn, core_fn, sp_fn = _default_grid_fn()
        core_nm, sp_nm = core_fn(dataset), sp_fn(dataset)  # also checks that the dataset has ground truth
    else:
        core_nm, sp_nm = (list(names[0]), list(names[1])) if names is not None else (None, None)
    rng = np.random.default_rng(seed)
    n = min(int(n_samples), len(dataset))
    indices = np.sort(rng.choice(len(dataset), size=n, replace=False)).astype(np.int64)
    device = torch.device(device)
    surface = surface.to(device).eval()
    # grids are rendered a few samples at a time to bound memory (n × n_core × n_spurious images)
    chunk = 8
    acts: list[np.ndarray] = []
    for start in progress(
        range(0, n, chunk),
        desc=f"ground truth {dataset.name}",
        total=(n + chunk - 1) // chunk,
        enabled=show_progress,
    ):
        grid = np.asarray(grid_fn(dataset, indices[start : start + chunk]))
        if grid.ndim != 6 or grid.shape[-1] != 3 or grid.dtype != np.uint8:
            raise ValueError(
                f"the counterfactual grid must be uint8 (n, n_core, n_spurious, H, W, 3), got {grid.dtype} {grid.shape}"
            )
        m, n_core, n_sp = grid.shape[:3]
        flat = grid.reshape(m * n_core * n_sp, *grid.shape[3:])
        feats = []
        for b0 in range(0, flat.shape[0], batch_size):
            x = torch.stack(
                [transform(Image.fromarray(img, mode="RGB")) for img in flat[b0 : b0 + batch_size]]
            ).to(device)
            feats.append(surface.features(x).double().cpu())
        acts.append(torch.cat(feats).reshape(m, n_core, n_sp, -1).numpy())
    truth = truth_from_activations(np.concatenate(acts), core_nm, sp_nm, indices.tolist(), thresholds)
    truth.dataset = dataset.name
    truth.split = dataset.split
    return truth


# -- which neurons are responsible for a class's mistakes -----------------------------------------
def _wrong_class_shares(
    num_classes: int, class_idx: int, wrong_classes: Sequence[int] | np.ndarray | Mapping[int, float] | None
) -> np.ndarray:
    q = np.zeros(num_classes, dtype=np.float64)
    if wrong_classes is None or len(wrong_classes) == 0:
        q[:] = 1.0
    elif isinstance(wrong_classes, Mapping):
        for k, v in wrong_classes.items():
            q[int(k)] += float(v)
    else:
        for wrong in np.asarray(wrong_classes, dtype=np.int64).ravel():
            q[int(wrong)] += 1.0
    q[class_idx] = 0.0
    if q.sum() <= 0:
        q[:] = 1.0
        q[class_idx] = 0.0
    return q / q.sum()


def margin_weights(
    decision: nn.Linear,
    class_idx: int,
    wrong_classes: Sequence[int] | np.ndarray | Mapping[int, float] | None = None,
) -> np.ndarray:
    """d_n = W[c,n] − Σ_k q_k W[k,n] (D,), with q the shares of the wrong predicted classes (module docstring)."""
    W = decision.weight.detach().double().cpu().numpy()
    q = _wrong_class_shares(W.shape[0], class_idx, wrong_classes)
    return W[class_idx] - q @ W


def responsible_neurons(
    truth: NeuronTruth,
    decision: nn.Linear,
    class_idx: int,
    wrong_classes: Sequence[int] | np.ndarray | Mapping[int, float] | None = None,
    min_impact: float = 0.1,
    direction: str = "both",
) -> dict[str, Any]:
    """The ground-truth neurons behind class ``class_idx``'s mistakes (definition in the module docstring).

    Returns ``{"neurons": [...] (by decreasing impact), "directions": {n: "excessive"|"insufficient"},
    "impact": (D,) spurious margin impact e, "margin_weight": (D,) d}``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if decision.in_features != truth.num_features:
        raise UserError(
            f"the ground truth has {truth.num_features} neurons but the decision layer has {decision.in_features}; "
            "measure the ground truth with the same model."
        )
    d = margin_weights(decision, class_idx, wrong_classes)
    impact = np.abs(d) * truth.spurious_effect
    spurious = truth.mask("spurious")
    top = float(impact[spurious].max()) if spurious.any() else 0.0
    keep = spurious & (impact >= min_impact * top) & (impact > 0)
    if direction == "excessive":
        keep &= d < 0
    elif direction == "insufficient":
        keep &= d > 0
    order = [int(n) for n in np.flatnonzero(keep)]
    order.sort(key=lambda n: (-impact[n], n))
    return {
        "neurons": order,
        "directions": {n: ("excessive" if d[n] < 0 else "insufficient") for n in order},
        "impact": impact,
        "margin_weight": d,
    }


def _relevant_mask(
    truth: NeuronTruth | Collection[int] | np.ndarray, target: str, num_features: int | None
) -> np.ndarray:
    if isinstance(truth, NeuronTruth):
        return truth.mask(target)
    arr = np.asarray(list(truth) if not isinstance(truth, np.ndarray) else truth)
    if arr.dtype == bool:
        return arr.astype(bool)
    if num_features is None:
        raise ValueError("give num_features when the truth is a set of neuron ids")
    mask = np.zeros(num_features, dtype=bool)
    mask[arr.astype(np.int64)] = True
    return mask


def precision_at_k(
    ranking: Sequence[int] | np.ndarray,
    truth: NeuronTruth | Collection[int] | np.ndarray,
    k: int,
    target: str = "spurious",
) -> float:
    """Share of the first ``k`` neurons of ``ranking`` that are relevant.

    ``truth``: a :class:`NeuronTruth` (relevant = labelled ``target``), a boolean (D,) mask, or a
    collection of relevant neuron ids. Always divided by ``k`` (a ranking shorter than k counts its
    missing entries as misses).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ranked = [int(n) for n in list(ranking)[:k]]
    if isinstance(truth, NeuronTruth) or (isinstance(truth, np.ndarray) and truth.dtype == bool):
        mask = _relevant_mask(truth, target, None)
        return sum(1 for n in ranked if 0 <= n < mask.size and mask[n]) / k
    relevant = {int(n) for n in truth}
    return sum(1 for n in ranked if n in relevant) / k


def recall_at_k(ranking: Sequence[int] | np.ndarray, relevant: Collection[int], k: int) -> float | None:
    """Share of the relevant neurons found among the first ``k`` of ``ranking`` (``None`` if none is relevant)."""
    rel = {int(n) for n in relevant}
    if not rel:
        return None
    return len(rel.intersection(int(n) for n in list(ranking)[:k])) / len(rel)


def neuron_recovery_record(
    result: Any,
    truth: NeuronTruth,
    decision: nn.Linear,
    *,
    dataset: str,
    model: str,
    seed: int,
    provenance: Mapping[str, Any],
    ks: Sequence[int] = (5, 10, 20),
    min_impact: float = 0.1,
    direction: str = "both",
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A validated ``task="neuron_recovery"`` record scoring a :class:`FinderResult` against ``truth``.

    Relevant = :func:`responsible_neurons` for the result's class, with the wrong classes taken from
    the finder's mistakes. ``metrics.precision_at_k`` = ``{"5": .., "10": .., "20": ..}``;
    ``metrics.chance_precision`` = |relevant| / D (the expected precision of a random ranking);
    also recall@k and the precision@k against every ``spurious``-labelled neuron.
    """
    c = int(result.class_idx)
    wrong = [int(s["stored_pred"]) for s in getattr(result, "samples", []) if "stored_pred" in s]
    resp = responsible_neurons(truth, decision, c, wrong or None, min_impact=min_impact, direction=direction)
    relevant = resp["neurons"]
    ranking = result.ranking()
    D = truth.num_features
    metrics = {
        "precision_at_k": {str(k): precision_at_k(ranking, relevant, k) for k in ks},
        "recall_at_k": {str(k): recall_at_k(ranking, relevant, k) for k in ks},
        "spurious_precision_at_k": {str(k): precision_at_k(ranking, truth, k, "spurious") for k in ks},
        "chance_precision": len(relevant) / D,
        "chance_spurious_precision": truth.counts()["spurious"] / D,
        "n_relevant": len(relevant),
        "num_features": D,
        "truth_counts": truth.counts(),
        "counts": dict(getattr(result, "counts", {})),
    }
    cfg = {
        "finder": dict(getattr(result, "settings", {})),
        "truth": {
            "split": truth.split,
            "n_samples": len(truth.indices),
            "thresholds": asdict(truth.thresholds),
            "min_impact": min_impact,
            "direction": direction,
            "ks": list(ks),
        },
        **dict(config or {}),
    }
    return make_record(
        task="neuron_recovery",
        dataset=dataset,
        model=model,
        method={"finder": str(result.method)},
        seed=int(seed),
        metrics=metrics,
        config=cfg,
        provenance=provenance,
        class_idx=c,
    )


__all__ = [
    "LABELS",
    "NeuronTruth",
    "TruthThresholds",
    "label_neurons",
    "margin_weights",
    "neuron_attribute_scores",
    "neuron_recovery_record",
    "precision_at_k",
    "recall_at_k",
    "responsible_neurons",
    "truth_from_activations",
]
