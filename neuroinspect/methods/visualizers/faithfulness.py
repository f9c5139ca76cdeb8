"""Automatic faithfulness metrics for visualizations, and concept recovery on the bundled benchmarks.

:func:`compute` scores one :class:`Visualization` (one (neuron, class) pair) on the images it shows,
re-running the model on exactly those images (normalized with the model's own statistics):

- ``activation_percentile``: the target neuron's activation on each image as a percentile of its
  activations over a dataset split (``reference_activations``, N values from the feature cache;
  ``percentileofscore``'s "mean" convention: ties count half). > 100 is impossible; a synthetic image
  that beats every natural one scores 100.
- ``rank`` / ``specificity``: the target's rank among all D neurons of the pooled layer on the image
  (1 = the most active; ties are resolved in the target's favour) and ``1 − (rank − 1)/(D − 1)``
  (1 = most active, 0 = least); ``specificity_z``: the target's z-score among the D activations.
  A visualization that drives every neuron up is not specific to the target.
- ``class_prob`` / ``class_top1``: the classifier's probability of the conditioned class and the
  share of images predicted as that class (class consistency; ``None`` when unconditioned).
- ``clip_score``: cosine between each image's CLIP embedding and the class text's (if a CLIP model
  and a class text are given).
- ``diversity_feature``: mean pairwise 1 − cosine similarity of the images' pooled features (0 for
  identical images, ~1 for unrelated ones); ``diversity_pixel``: mean pairwise RMS pixel distance in
  [0, 1]. No LPIPS: it would need pretrained weights that are not available offline.
- ``deletion_auc`` (attribution visualizations): the target (class probability, or the pooled
  neuron relative to its value on the intact image) as the most-attributed pixels are replaced by
  the model's mean colour in ``deletion_steps`` steps; the area under that curve, lower = more
  faithful (Petsiuk et al.'s deletion metric), beside ``deletion_auc_random``, the same with a random
  pixel order (seeded) as the control.
- ``wall_seconds``: the visualization's own time.

Natural exemplars carry both top and bottom images; the summary values (``*_mean``) use the images
that are meant to show the neuron (``role != "bottom"``), the per-image lists cover all of them.

Concept recovery (bundled benchmarks): :func:`train_attribute_classifiers` fits small seeded
classifiers that read the core attribute (shape) and the spurious attribute (background) off an
image, trained with group-balanced weights so neither can lean on the other's correlation, and
reports their held-out accuracy; :func:`concept_recovery` asks them whether a visualization shows
the attribute its neuron is known to encode (ground truth from
:mod:`neuroinspect.methods.groundtruth_scoring`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.harness.models import ModelSurface
from neuroinspect.methods.visualizers._taps import frozen, seeded
from neuroinspect.methods.visualizers.base import Visualization
from neuroinspect.runtime import progress


# -- small, exact building blocks (tested on hand-made cases) ----------------------------------------
def percentile_of(reference: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Percentile (0..100) of each of ``values`` (n) within ``reference`` (N); ties count half."""
    ref = reference.detach().double().flatten()
    if ref.numel() == 0:
        raise ValueError("reference_activations is empty")
    v = values.detach().double().flatten()
    below = (ref[None, :] < v[:, None]).sum(dim=1).double()
    equal = (ref[None, :] == v[:, None]).sum(dim=1).double()
    return 100.0 * (below + 0.5 * equal) / ref.numel()


def neuron_rank(pooled: torch.Tensor, neurons: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Rank (1 = most active) of ``neurons[i]`` among the D activations of row i of ``pooled`` (n×D).

    Ties with other neurons are resolved in the target's favour (1 + number of strictly larger ones).
    """
    idx = torch.as_tensor(neurons, dtype=torch.long).view(-1)
    target = pooled[torch.arange(pooled.shape[0]), idx]
    return 1 + (pooled > target[:, None]).sum(dim=1)


def specificity_score(rank: torch.Tensor, num_features: int) -> torch.Tensor:
    """``1 − (rank − 1)/(D − 1)``: 1 for the most active neuron, 0 for the least (D = 1 gives 1)."""
    if num_features <= 1:
        return torch.ones_like(rank, dtype=torch.float64)
    return 1.0 - (rank.double() - 1.0) / (num_features - 1)


def pairwise_cosine_diversity(features: torch.Tensor) -> float | None:
    """Mean over pairs i < j of 1 − cos(f_i, f_j) for n×D ``features``; ``None`` for fewer than 2 rows.

    An all-zero feature vector has cosine 0 with everything (distance 1).
    """
    n = features.shape[0]
    if n < 2:
        return None
    f = F.normalize(features.detach().double(), dim=1)
    sim = f @ f.T
    iu = torch.triu_indices(n, n, offset=1)
    return float((1.0 - sim[iu[0], iu[1]]).mean())


def pairwise_pixel_diversity(images: torch.Tensor) -> float | None:
    """Mean over pairs i < j of the RMS pixel difference of n×3×H×W images in [0, 1]; ``None`` below 2."""
    n = images.shape[0]
    if n < 2:
        return None
    flat = images.detach().double().reshape(n, -1)
    d2 = torch.cdist(flat, flat).pow(2) / flat.shape[1]
    iu = torch.triu_indices(n, n, offset=1)
    return float(d2[iu[0], iu[1]].sqrt().mean())


def reference_activations(features: FeatureSet, neuron: int, class_idx: int | None = None) -> torch.Tensor:
    """The ``neuron``'s pooled activations over a split (N), optionally only over images of ``class_idx``."""
    acts = features.features[:, int(neuron)]
    if class_idx is not None:
        acts = acts[features.labels == int(class_idx)]
    return acts.clone()


# -- the per-visualization metrics ---------------------------------------------------------------------
def _primary(viz: Visualization) -> torch.Tensor:
    roles = viz.extra.get("role")
    n = int(viz.images.shape[0])
    if isinstance(roles, list) and len(roles) == n:
        keep = torch.tensor([r != "bottom" for r in roles])
        if bool(keep.any()):
            return keep
    return torch.ones(n, dtype=torch.bool)


def _mean(values: torch.Tensor | None, keep: torch.Tensor) -> float | None:
    if values is None:
        return None
    v = values[keep]
    return float(v.double().mean()) if v.numel() else None


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.double().tolist()]


@torch.no_grad()
def _forward(
    surface: ModelSurface, images01: torch.Tensor, device: torch.device, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    pooled, logits = [], []
    with frozen(surface):
        surface.to(device)
        for s in range(0, images01.shape[0], batch_size):
            f = surface.features(surface.normalize(images01[s : s + batch_size].to(device)))
            pooled.append(f.float().cpu())
            logits.append(surface.decision(f).float().cpu())
    return torch.cat(pooled), torch.cat(logits)


def compute(
    viz: Visualization,
    surface: ModelSurface,
    *,
    reference_activations: torch.Tensor | None = None,
    clip: Any = None,
    class_text: str | Sequence[str] | torch.Tensor | None = None,
    attribute_classifier: AttributeClassifiers | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    deletion_steps: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Faithfulness metrics of ``viz`` (see the module docstring); a JSON-able dict.

    ``reference_activations``: N activations of ``viz.neuron`` over a split (e.g.
    :func:`reference_activations` of a cached :class:`FeatureSet`); without it the percentile is
    ``None``. ``clip``: an object with ``encode_image(B×3×H×W in [0,1]) -> B×E`` and
    ``encode_text(list[str]) -> N×E`` (:class:`neuroinspect.clip.loader.ClipModel`); ``class_text``:
    the class string(s) (several are averaged, as prompt templates are) or a text embedding (E).
    ``attribute_classifier``: :class:`AttributeClassifiers`, whose predictions are added.
    """
    t0 = time.perf_counter()
    images = viz.images.detach().float().cpu()
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"visualization images must be n×3×H×W, got {tuple(images.shape)}")
    n = int(images.shape[0])
    d = surface.num_features
    if not 0 <= viz.neuron < d:
        raise UserError(
            f"neuron index {viz.neuron} is out of range: the model's pooled layer has {d} neurons, 0..{d - 1}."
        )
    dev = torch.device(device)
    keep = _primary(viz)
    out: dict[str, Any] = {
        "method": viz.method,
        "neuron": int(viz.neuron),
        "class_idx": viz.class_idx,
        "n_images": n,
        "n_scored": int(keep.sum()),
        "scored": "top images (bottom exemplars excluded)" if bool((~keep).any()) else "all images",
        "wall_seconds": float(viz.wall_seconds),
    }
    if n == 0:
        return out
    pooled, logits = _forward(surface, images, dev, batch_size)
    acts = pooled[:, viz.neuron]
    out["activations"] = _floats(acts)
    out["activation_mean"] = _mean(acts, keep)

    if reference_activations is not None:
        pct = percentile_of(torch.as_tensor(reference_activations), acts)
        out["activation_percentiles"] = _floats(pct)
        out["activation_percentile_mean"] = _mean(pct, keep)
        out["reference_size"] = int(torch.as_tensor(reference_activations).numel())
    else:
        out["activation_percentiles"] = None
        out["activation_percentile_mean"] = None

    rank = neuron_rank(pooled, [viz.neuron] * n)
    spec = specificity_score(rank, d)
    mu = pooled.double().mean(dim=1)
    sd = pooled.double().std(dim=1, unbiased=True) if d > 1 else torch.zeros(n, dtype=torch.float64)
    z = torch.where(sd > 0, (acts.double() - mu) / sd.clamp_min(1e-12), torch.zeros_like(mu))
    out.update(
        {
            "ranks": [int(r) for r in rank.tolist()],
            "rank_mean": _mean(rank.double(), keep),
            "specificities": _floats(spec),
            "specificity_mean": _mean(spec, keep),
            "specificity_z_mean": _mean(z, keep),
            "num_features": d,
        }
    )

    probs = logits.softmax(dim=1)
    preds = logits.argmax(dim=1)
    out["predicted"] = [int(p) for p in preds.tolist()]
    if viz.class_idx is not None:
        c = int(viz.class_idx)
        out["class_probs"] = _floats(probs[:, c])
        out["class_prob_mean"] = _mean(probs[:, c], keep)
        out["class_top1"] = _mean((preds == c).double(), keep)
    else:
        out["class_probs"] = out["class_prob_mean"] = out["class_top1"] = None

    out["clip_scores"] = out["clip_score_mean"] = None
    if clip is not None and class_text is not None:
        scores = _clip_scores(clip, images, class_text, dev, batch_size)
        out["clip_scores"] = _floats(scores)
        out["clip_score_mean"] = _mean(scores, keep)

    out["diversity_feature"] = pairwise_cosine_diversity(pooled[keep])
    out["diversity_pixel"] = pairwise_pixel_diversity(images[keep])

    if attribute_classifier is not None:
        out["attributes"] = attribute_classifier.summarize(images[keep])

    if viz.activation_maps is not None and viz.settings.get("target_kind") in ("class", "neuron"):
        out.update(_deletion(viz, surface, dev, batch_size, deletion_steps, seed))
    out["metric_seconds"] = round(time.perf_counter() - t0, 4)
    return out


@torch.no_grad()
def _clip_scores(
    clip: Any, images01: torch.Tensor, class_text: Any, device: torch.device, batch_size: int
) -> torch.Tensor:
    if isinstance(class_text, torch.Tensor):
        text = class_text.detach().float().view(1, -1)
    else:
        texts = [class_text] if isinstance(class_text, str) else list(class_text)
        text = F.normalize(clip.encode_text(texts).float(), dim=-1).mean(dim=0, keepdim=True)
    text = F.normalize(text.to(device), dim=-1)
    embs = []
    for s in range(0, images01.shape[0], batch_size):
        embs.append(F.normalize(clip.encode_image(images01[s : s + batch_size].to(device)).float(), dim=-1))
    return (torch.cat(embs) @ text.T).flatten().cpu()


@torch.no_grad()
def _deletion(
    viz: Visualization, surface: ModelSurface, device: torch.device, batch_size: int, steps: int, seed: int
) -> dict[str, Any]:
    """Deletion curves: remove the most-attributed pixels first (and, as a control, in random order)."""
    images = viz.images.detach().float().cpu()
    maps = viz.activation_maps.detach().float().cpu()  # type: ignore[union-attr]
    if maps.shape[0] != images.shape[0] or tuple(maps.shape[-2:]) != tuple(images.shape[-2:]):
        return {}
    n, _, h, w = images.shape
    target_kind = viz.settings.get("target_kind")
    targets = viz.extra.get("targets") or ([viz.neuron] * n if target_kind == "neuron" else None)
    if targets is None:
        return {}
    mean = torch.tensor(surface.data_config.mean).view(1, 3, 1, 1)
    fracs = torch.linspace(0, 1, steps + 1)
    gen = torch.Generator().manual_seed(seed)
    curves: dict[str, list[list[float]]] = {"attribution": [], "random": []}
    for i in range(n):
        order_attr = torch.argsort(maps[i].flatten(), descending=True, stable=True)
        order_rand = torch.randperm(h * w, generator=gen)
        for key, order in (("attribution", order_attr), ("random", order_rand)):
            batch = images[i : i + 1].repeat(steps + 1, 1, 1, 1)
            for s, frac in enumerate(fracs.tolist()):
                k = int(round(frac * h * w))
                if k == 0:
                    continue
                m = torch.zeros(h * w, dtype=torch.bool)
                m[order[:k]] = True
                m = m.view(1, h, w)
                batch[s] = torch.where(m, mean[0], batch[s])
            pooled, logits = _forward(surface, batch, device, batch_size)
            if target_kind == "neuron":
                y = pooled[:, int(targets[i])]
                y0 = float(y[0])
                y = y / y0 if abs(y0) > 1e-12 else y
            else:
                y = logits.softmax(dim=1)[:, int(targets[i])]
            curves[key].append(_floats(y))
    auc = {k: [float(np.trapezoid(c, dx=1.0 / steps)) for c in v] for k, v in curves.items()}
    return {
        "deletion_target": "neuron activation / its intact value"
        if target_kind == "neuron"
        else "target class probability",
        "deletion_curves": curves["attribution"],
        "deletion_auc": float(np.mean(auc["attribution"])),
        "deletion_auc_random": float(np.mean(auc["random"])),
        "deletion_steps": steps,
    }


# -- concept recovery ------------------------------------------------------------------------------
def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class _TinyCNN(nn.Module):
    """Three conv blocks, global average + max pooling (position-invariant), one linear head per attribute."""

    def __init__(self, n_core: int, n_spurious: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_block(3, width),
            nn.MaxPool2d(2),
            *_block(width, 2 * width),
            nn.MaxPool2d(2),
            *_block(2 * width, 2 * width),
        )
        self.core = nn.Linear(4 * width, n_core)
        self.spurious = nn.Linear(4 * width, n_spurious)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        g = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.core(g), self.spurious(g)


@dataclass
class AttributeClassifiers:
    """Classifiers of a benchmark's core and spurious attributes from an image.

    ``predict_proba(images)`` (n×3×H×W in [0, 1], any size) → ``{"core": n×Kc, "spurious": n×Ks}``.
    ``accuracy``: held-out accuracy of each (``core``, ``spurious``) plus worst-group accuracies and
    the held-out split's name and size. ``settings``: every hyperparameter.
    """

    method: str
    core_names: list[str]
    spurious_names: list[str]
    image_size: int
    accuracy: dict[str, Any]
    settings: dict[str, Any]
    _model: Any = field(repr=False, default=None)

    def _prepare(self, images01: torch.Tensor) -> torch.Tensor:
        x = images01.detach().float().cpu()
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return x

    @torch.no_grad()
    def predict_proba(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._prepare(images01)
        if self.method == "cnn":
            self._model.eval()
            zc, zs = [], []
            for s in range(0, x.shape[0], 256):
                a, b = self._model((x[s : s + 256] - 0.5) / 0.25)
                zc.append(a)
                zs.append(b)
            return {"core": torch.cat(zc).softmax(dim=1), "spurious": torch.cat(zs).softmax(dim=1)}
        flat = x.reshape(x.shape[0], -1).numpy()
        core_m, spur_m = self._model
        return {
            "core": torch.from_numpy(core_m.predict_proba(flat)).float(),
            "spurious": torch.from_numpy(spur_m.predict_proba(flat)).float(),
        }

    def summarize(self, images01: torch.Tensor) -> dict[str, Any]:
        """Mean probabilities, predicted values and confidences of both attributes on the images."""
        probs = self.predict_proba(images01)
        out: dict[str, Any] = {}
        for key, names in (("core", self.core_names), ("spurious", self.spurious_names)):
            p = probs[key]
            mean = p.mean(dim=0)
            out[key] = {
                "mean_probs": {name: float(v) for name, v in zip(names, mean.tolist(), strict=True)},
                "predicted": [names[i] for i in p.argmax(dim=1).tolist()],
                "confidence": confidence(p),
                "agreement": agreement(p),
            }
        return out


def confidence(probs: torch.Tensor) -> float:
    """Mean over images of (max p − 1/K)/(1 − 1/K): 0 at chance, 1 when the classifier is certain."""
    k = probs.shape[1]
    if probs.shape[0] == 0 or k < 2:
        return 0.0
    return float(((probs.max(dim=1).values - 1.0 / k) / (1.0 - 1.0 / k)).mean())


def agreement(probs: torch.Tensor) -> float:
    """(max_v mean_i p_i(v) − 1/K)/(1 − 1/K): 1 when every image is certainly the same value, 0 when the
    images' mean prediction is uniform (they disagree, or each is at chance)."""
    k = probs.shape[1]
    if probs.shape[0] == 0 or k < 2:
        return 0.0
    return float((probs.mean(dim=0).max() - 1.0 / k) / (1.0 - 1.0 / k))


def _to01(arr: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (n, H, W, 3) → float n×3×size×size in [0, 1] (antialiased resize)."""
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _images01(dataset: Any, size: int, indices: np.ndarray | None = None) -> torch.Tensor:
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    arr = getattr(dataset, "images", None)
    if isinstance(arr, np.ndarray):
        return _to01(arr[idx], size)
    images = [
        dataset.load_image(int(i)).convert("RGB").resize((size, size), Image.Resampling.BILINEAR) for i in idx
    ]
    return _to01(np.stack([np.asarray(im) for im in images]), size)


def _group_weights(core: np.ndarray, spurious: np.ndarray) -> np.ndarray:
    """Per-sample weights that give every (core, spurious) group the same total weight (mean 1)."""
    n_s = int(spurious.max()) + 1
    g = core * n_s + spurious
    w = 1.0 / np.bincount(g)[g]
    return w * len(g) / w.sum()


def _accuracies(pred: np.ndarray, truth: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    groups = {}
    for a in np.unique(truth):
        for b in np.unique(other):
            sel = (truth == a) & (other == b)
            if sel.any():
                groups[f"{a},{b}"] = float((pred[sel] == truth[sel]).mean())
    return {"accuracy": float((pred == truth).mean()), "worst_group": min(groups.values()), "groups": groups}


def train_attribute_classifiers(
    dataset: Any,
    *,
    heldout: Any = None,
    method: str = "cnn",
    counterfactual: bool = True,
    max_train: int = 600,
    image_size: int = 32,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-2,
    width: int = 16,
    holdout_fraction: float = 0.2,
    balance: bool = True,
    seed: int = 0,
    show_progress: bool = True,
) -> AttributeClassifiers:
    """Fit classifiers of the core and the spurious attribute on a benchmark split.

    ``dataset``: a bundled benchmark's split (the train split; labels from
    :func:`neuroinspect.datasets.groundtruth.attribute_labels`). ``heldout``: the split to report
    accuracy on (e.g. the group-balanced val split); without it ``holdout_fraction`` of ``dataset`` is
    held out (seeded). ``method``: ``"cnn"`` (a tiny position-invariant CNN for both attributes, Adam
    with a one-cycle schedule, flips and transposes as augmentation) or ``"logreg"`` (logistic
    regression on ``image_size``² downsampled pixels, scikit-learn).

    The train split is 95% aligned (shape k on background k), so a classifier trained on it as is
    reads the background to predict the shape. ``counterfactual`` (default) trains instead on
    :func:`~neuroinspect.datasets.groundtruth.counterfactual_grid` renders of ``max_train`` training
    samples, each with every core × spurious value: the two attributes are independent by
    construction. Without it, ``balance`` weights samples so every (core, spurious) group counts equally.
    Held-out accuracy is always measured on natural (non-counterfactual) images, per group too.
    """
    from neuroinspect.datasets.groundtruth import (
        attribute_labels,
        core_names,
        counterfactual_grid,
        spurious_names,
    )

    if method not in ("cnn", "logreg"):
        raise UserError(f"attribute classifier method must be 'cnn' or 'logreg', got {method!r}.")
    if max_train < 1 or epochs < 1 or image_size < 8:
        raise UserError(
            f"need max_train >= 1, epochs >= 1 and image_size >= 8 (got {max_train}, {epochs}, {image_size})."
        )
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    core, spur = attribute_labels(dataset)
    if heldout is not None:
        hc, hs = attribute_labels(heldout)
        hx = _images01(heldout, image_size)
        held_name = f"{getattr(heldout, 'name', '?')}/{getattr(heldout, 'split', '?')}"
        pool = np.arange(len(core))
    else:
        if not 0 < holdout_fraction < 1:
            raise UserError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
        perm = rng.permutation(len(core))
        n_hold = max(1, int(round(holdout_fraction * len(core))))
        hold, pool = np.sort(perm[:n_hold]), perm[n_hold:]
        hc, hs = core[hold], spur[hold]
        hx = _images01(dataset, image_size, hold)
        held_name = f"{getattr(dataset, 'name', '?')}/{getattr(dataset, 'split', '?')} (held-out {holdout_fraction:.0%})"
    chosen = np.sort(rng.choice(pool, size=min(max_train, len(pool)), replace=False))
    n_core = len(core_names(dataset))
    n_spur = len(spurious_names(dataset))
    if counterfactual:
        grid = counterfactual_grid(dataset, chosen)  # n × Kc × Ks × H × W × 3 uint8
        n, kc, ks = grid.shape[:3]
        xx = _to01(grid.reshape(n * kc * ks, *grid.shape[3:]), image_size)
        xc = np.tile(np.repeat(np.arange(kc), ks), n)
        xs = np.tile(np.tile(np.arange(ks), kc), n)
        weights = np.ones(len(xc))
    else:
        xx = _images01(dataset, image_size, chosen)
        xc, xs = core[chosen], spur[chosen]
        weights = _group_weights(xc, xs) if balance else np.ones(len(xc))
    settings: dict[str, Any] = {
        "method": method, "counterfactual": counterfactual, "max_train": max_train, "image_size": image_size,
        "balance": balance if not counterfactual else None, "seed": seed, "n_train_images": len(xc),
        "train_split": f"{getattr(dataset, 'name', '?')}/{getattr(dataset, 'split', '?')}",
    }  # fmt: skip
    model: Any
    if method == "cnn":
        settings.update({"epochs": epochs, "batch_size": batch_size, "lr": lr, "width": width})
        model = _fit_cnn(
            xx, xc, xs, weights, n_core, n_spur, epochs, batch_size, lr, width, seed, show_progress
        )
    else:
        model = _fit_logreg(xx, xc, xs, weights, seed)
    clf = AttributeClassifiers(
        method=method,
        core_names=core_names(dataset),
        spurious_names=spurious_names(dataset),
        image_size=image_size,
        accuracy={},
        settings=settings,
        _model=model,
    )
    probs = clf.predict_proba(hx)
    pc = probs["core"].argmax(dim=1).numpy()
    ps = probs["spurious"].argmax(dim=1).numpy()
    clf.accuracy = {
        "heldout": held_name,
        "n_heldout": len(hc),
        "core": _accuracies(pc, hc, hs),
        "spurious": _accuracies(ps, hs, hc),
    }
    clf.settings["train_seconds"] = round(time.perf_counter() - t0, 3)
    return clf


def _fit_cnn(
    x: torch.Tensor, core: np.ndarray, spur: np.ndarray, weights: np.ndarray, n_core: int, n_spur: int,
    epochs: int, batch_size: int, lr: float, width: int, seed: int, show_progress: bool,
) -> nn.Module:  # fmt: skip
    with seeded(seed):
        model = _TinyCNN(n_core, n_spur, width)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        yc = torch.as_tensor(core, dtype=torch.long)
        ys = torch.as_tensor(spur, dtype=torch.long)
        w = torch.as_tensor(weights, dtype=torch.float32)
        xn = (x - 0.5) / 0.25
        n = len(yc)
        steps = max(1, math.ceil(n / batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
        model.train()
        for _ in progress(range(epochs), desc="attribute classifiers", enabled=show_progress):
            perm = torch.randperm(n, generator=gen)
            for s in range(steps):
                b = perm[s * batch_size : (s + 1) * batch_size]
                xb = xn[b]
                # Shapes and textures keep their identity under flips and transposes (the dihedral group).
                flip = torch.rand(len(b), 1, 1, 1, generator=gen) < 0.5
                xb = torch.where(flip, xb.flip(3), xb)
                swap = torch.rand(len(b), 1, 1, 1, generator=gen) < 0.5
                xb = torch.where(swap, xb.transpose(2, 3), xb)
                zc, zs = model(xb)
                loss = (
                    w[b]
                    * (
                        F.cross_entropy(zc, yc[b], reduction="none")
                        + F.cross_entropy(zs, ys[b], reduction="none")
                    )
                ).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
    return model


def _fit_logreg(
    x: torch.Tensor, core: np.ndarray, spur: np.ndarray, weights: np.ndarray, seed: int
) -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    flat = x.reshape(x.shape[0], -1).numpy()
    models = []
    for y in (core, spur):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
        m.fit(flat, y, logisticregression__sample_weight=weights)
        models.append(m)
    return models[0], models[1]


#: agreements within this of the higher one count as shown too (images that share both a shape and a
#: background show both attributes; a strict comparison would hand every tie to one of them)
TIE_TOLERANCE = 0.05
#: below this chance-corrected agreement the images show neither attribute consistently
MIN_AGREEMENT = 0.25


def concept_recovery(
    viz: Visualization,
    classifiers: AttributeClassifiers,
    truth_label: str,
    truth_value: int | str | None = None,
    *,
    tie_tolerance: float = TIE_TOLERANCE,
    min_agreement: float = MIN_AGREEMENT,
) -> dict[str, Any]:
    """Does ``viz`` show the attribute its neuron is known to encode?

    ``truth_label``: the neuron's ground-truth label (``"spurious"`` or ``"core"``; ``"mixed"`` and
    ``"dead"`` are reported but not scored). A natural image always contains *some* shape and *some*
    background, so confidence alone cannot tell which one a set of images is about; what they are
    about is what they **agree** on: a spurious neuron's images share a background while their shapes
    vary. An attribute is shown when its :func:`agreement` (chance-corrected, so attributes with
    different numbers of values compare fairly) is at least ``min_agreement`` and within
    ``tie_tolerance`` of the higher of the two: ``shown`` is ``"core"``, ``"spurious"``, ``"both"``
    (images that share a shape *and* a background, e.g. the top exemplars of a neuron that fires on
    triangles on land) or ``"neither"``; ``recovered`` = ``truth_label`` is among the attributes
    shown. For a single image, agreement is that image's confidence. ``truth_value`` (index
    or name of the value the neuron prefers, e.g. the background it fires on): ``value_match`` = the
    value with the highest mean probability for that attribute equals it.
    """
    if truth_label not in ("spurious", "core", "mixed", "dead"):
        raise UserError(f"truth_label must be 'spurious', 'core', 'mixed' or 'dead', got {truth_label!r}.")
    keep = _primary(viz)
    summary = classifiers.summarize(viz.images.detach().float().cpu()[keep])
    agree_core = summary["core"]["agreement"]
    agree_spur = summary["spurious"]["agreement"]
    top = max(agree_core, agree_spur)
    attrs = [
        name
        for name, value in (("core", agree_core), ("spurious", agree_spur))
        if value >= min_agreement and value >= top - tie_tolerance
    ]
    shown = "both" if len(attrs) == 2 else (attrs[0] if attrs else "neither")
    out: dict[str, Any] = {
        "method": viz.method,
        "neuron": int(viz.neuron),
        "truth_label": truth_label,
        "agreement_core": agree_core,
        "agreement_spurious": agree_spur,
        "shown": shown,
        "shown_attributes": attrs,
        "recovered": (truth_label in attrs) if truth_label in ("spurious", "core") else None,
        "attributes": summary,
        "classifier_accuracy": {k: classifiers.accuracy[k]["accuracy"] for k in ("core", "spurious")},
        "value_match": None,
    }
    if truth_value is not None and truth_label in ("spurious", "core"):
        names = classifiers.spurious_names if truth_label == "spurious" else classifiers.core_names
        name = names[int(truth_value)] if not isinstance(truth_value, str) else truth_value
        if name not in names:
            raise UserError(f"{truth_label} value {truth_value!r} is not one of {', '.join(names)}.")
        mean_probs = summary[truth_label]["mean_probs"]
        out["truth_value"] = name
        out["value_match"] = max(mean_probs, key=mean_probs.get) == name
    return out


__all__ = [
    "AttributeClassifiers",
    "agreement",
    "compute",
    "concept_recovery",
    "confidence",
    "neuron_rank",
    "pairwise_cosine_diversity",
    "pairwise_pixel_diversity",
    "percentile_of",
    "reference_activations",
    "specificity_score",
    "train_attribute_classifiers",
]
