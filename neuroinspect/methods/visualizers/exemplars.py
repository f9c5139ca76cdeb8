"""Natural exemplars: the dataset images that activate a neuron most (and least).

Borowski et al. (ICLR'21) found natural exemplars explain units better than synthetic feature
visualizations in a 2AFC task (92% vs 82%): this is the baseline every synthetic method must beat.
Activations are the pooled features from the feature cache (one backbone pass per split and
checkpoint); the images are the dataset's own, un-normalized and resized to the model's input size,
with the neuron's spatial activation map upsampled over them (spec §4.4).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureCache, FeatureSet
from neuroinspect.harness.models import ModelSurface
from neuroinspect.harness.transforms import describe
from neuroinspect.methods.visualizers._taps import frozen, input_size
from neuroinspect.methods.visualizers.base import (
    Visualization,
    Visualizer,
    register_visualizer,
    validate_pairs,
)
from neuroinspect.methods.visualizers.masks import activation_masks

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


# -- helpers shared with the attribution baselines and the faithfulness metrics --------------------
def surface_fingerprint(surface: ModelSurface) -> str:
    """sha256 of the architecture and every weight and buffer: a feature-cache key for an in-memory model.

    Use the checkpoint's own sha256 where there is a checkpoint file; this is for models that were
    never saved (tests, notebooks).
    """
    h = hashlib.sha256(f"{surface.spec.arch}|{surface.num_classes}|{surface.data_config.as_dict()}".encode())
    for name, t in sorted(surface.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def dataset_features(
    surface: ModelSurface,
    dataset: Any,
    *,
    features: FeatureSet | None = None,
    checkpoint_sha: str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    show_progress: bool = True,
) -> FeatureSet:
    """Pooled features of ``dataset`` (N×D): ``features`` if given, else from the feature cache.

    Refuses a feature set whose width is not the model's D or whose length is not the dataset's N.
    """
    if dataset is None:
        raise UserError(
            "this visualizer needs a dataset (pass --dataset and --root) to find images of the neuron."
        )
    if features is None:
        sha = checkpoint_sha or surface_fingerprint(surface)
        with frozen(surface):
            features = FeatureCache(cache_dir).get_or_compute(
                surface,
                sha,
                dataset,
                batch_size=batch_size,
                device=device,
                transform_desc=describe(dataset.transform),
                show_progress=show_progress,
            )
    if features.num_features != surface.num_features:
        raise UserError(
            f"the feature set has {features.num_features} features per image but the model has "
            f"{surface.num_features} neurons; it belongs to another model. Clear the feature cache or pass the right one."
        )
    if len(features) != len(dataset):
        raise UserError(
            f"the feature set has {len(features)} rows but the dataset has {len(dataset)} images; "
            "it belongs to another split. Clear the feature cache or pass the right one."
        )
    return features


def load_images01(
    dataset: Any, indices: Sequence[int], size: tuple[int, int], interpolation: str = "bilinear"
) -> torch.Tensor:
    """Dataset images ``indices`` as n×3×H×W float in [0, 1], resized to ``size`` = (H, W)."""
    h, w = size
    resample = _RESAMPLE.get(interpolation, Image.Resampling.BILINEAR)
    out = torch.zeros(len(indices), 3, h, w)
    for j, i in enumerate(indices):
        img = dataset.load_image(int(i)).convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), resample=resample)
        out[j] = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return out


@torch.no_grad()
def evaluate_images(
    surface: ModelSurface,
    images01: torch.Tensor,
    neurons: Sequence[int],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    tau: float = 0.25,
    reduction: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Run the model on n×3×H×W images in [0, 1] (normalized with the model's own mean/std).

    Returns ``pooled`` n×D, ``logits`` n×K, ``probs`` n×K, ``activations`` n (pooled feature
    ``neurons[i]`` of image i), ``maps`` n×H×W (that neuron's spatial map, bilinearly upsampled to
    the image with ``align_corners=True``) and ``masks`` n×H×W (the spec §4.4 mask with ``tau`` and
    ``reduction``; the defaults give the reference's binary display mask), all on the CPU.
    """
    if len(neurons) != images01.shape[0]:
        raise ValueError(f"{len(neurons)} neurons for {images01.shape[0]} images")
    size = (int(images01.shape[-2]), int(images01.shape[-1]))
    pooled, logits, maps, masks = [], [], [], []
    with frozen(surface):
        surface.to(device)
        for start in range(0, images01.shape[0], batch_size):
            x = surface.normalize(images01[start : start + batch_size].to(device))
            feats = surface.forward_features(x)
            f = surface.pool(feats)
            pooled.append(f.float().cpu())
            logits.append(surface.decision(f).float().cpu())
            m, k = activation_masks(
                surface.spatial_maps(feats).float(),
                list(neurons[start : start + batch_size]),
                size,
                tau,
                reduction,
            )
            maps.append(m.cpu())
            masks.append(k.cpu())
    d = surface.num_features
    P = torch.cat(pooled) if pooled else torch.zeros(0, d)
    L = torch.cat(logits) if logits else torch.zeros(0, surface.num_classes)
    idx = torch.as_tensor(list(neurons), dtype=torch.long)
    return {
        "pooled": P,
        "logits": L,
        "probs": L.softmax(dim=1),
        "activations": P[torch.arange(P.shape[0]), idx] if P.shape[0] else torch.zeros(0),
        "maps": torch.cat(maps) if maps else torch.zeros(0, *size),
        "masks": torch.cat(masks) if masks else torch.zeros(0, *size),
    }


def rank_by_activation(
    features: FeatureSet,
    neuron: int,
    k: int,
    *,
    class_idx: int | None = None,
    restrict: str = "label",
    bottom: bool = False,
) -> torch.Tensor:
    """Row positions (into ``features``) of the ``k`` highest (or lowest) activations of ``neuron``.

    ``restrict``: ``"label"`` keeps rows whose true label is ``class_idx``, ``"pred"`` rows predicted
    as ``class_idx``, ``"none"`` (or ``class_idx=None``) all rows. Ties are broken by row order
    (a stable sort), so the result is deterministic.
    """
    acts = features.features[:, neuron]
    rows = torch.arange(len(features))
    if class_idx is not None and restrict != "none":
        if restrict == "label":
            keep = features.labels == class_idx
        elif restrict == "pred":
            keep = features.preds == class_idx
        else:
            raise ValueError(f"restrict must be 'label', 'pred' or 'none', got {restrict!r}")
        rows = rows[keep]
        acts = acts[keep]
    order = torch.sort(acts, descending=not bottom, stable=True).indices
    return rows[order[:k]]


# -- the visualizer ---------------------------------------------------------------------------------
@register_visualizer("exemplars")
class ExemplarsVisualizer(Visualizer):
    """Natural exemplars: the top-k (and bottom-k) activating dataset images of the neuron, with activation maps."""

    kind = "natural"

    def __init__(
        self,
        k: int = 9,
        bottom_k: int | None = None,
        restrict: str = "label",
        batch_size: int = 64,
        features: FeatureSet | None = None,
        checkpoint_sha: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        """``k`` top images per pair; ``bottom_k`` least-activating ones (default ``k``, 0 for none; the
        2AFC study shows both, Borowski et al. use 9 + 9). ``restrict``: with a class, rank only images
        whose ``"label"`` (default) or ``"pred"`` is that class, or ``"none"``. ``features``: a
        precomputed :class:`FeatureSet` of the dataset; otherwise the feature cache under ``cache_dir``
        is used, keyed by ``checkpoint_sha`` (default: a hash of the weights)."""
        if k < 1:
            raise UserError(f"exemplars needs k >= 1 images per neuron, got {k}.")
        if restrict not in ("label", "pred", "none"):
            raise UserError(f"restrict must be 'label', 'pred' or 'none', got {restrict!r}.")
        self.k = int(k)
        self.bottom_k = int(k if bottom_k is None else bottom_k)
        self.restrict = restrict
        self.batch_size = int(batch_size)
        self._features = features
        self._checkpoint_sha = checkpoint_sha
        self._cache_dir = cache_dir

    def visualize(
        self,
        surface: ModelSurface,
        neurons: Sequence[int],
        class_idx: Sequence[int | None] | int | None = None,
        *,
        dataset: Any = None,
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        show_progress: bool = True,
    ) -> list[Visualization]:
        classes = validate_pairs(surface, neurons, class_idx)
        t0 = time.perf_counter()
        fs = dataset_features(
            surface,
            dataset,
            features=self._features,
            checkpoint_sha=self._checkpoint_sha,
            cache_dir=self._cache_dir,
            batch_size=self.batch_size,
            device=device,
            show_progress=show_progress,
        )
        shared = (time.perf_counter() - t0) / max(1, len(neurons))
        size = input_size(surface)
        interp = surface.data_config.interpolation
        out: list[Visualization] = []
        for n, c in zip(neurons, classes, strict=True):
            t1 = time.perf_counter()
            n = int(n)
            top = rank_by_activation(fs, n, self.k, class_idx=c, restrict=self.restrict)
            bot = (
                rank_by_activation(fs, n, self.bottom_k, class_idx=c, restrict=self.restrict, bottom=True)
                if self.bottom_k > 0
                else torch.zeros(0, dtype=torch.long)
            )
            if top.numel() == 0:
                raise UserError(
                    f"no images of class {c} in {getattr(dataset, 'name', 'the dataset')}/{getattr(dataset, 'split', '?')} "
                    "to rank; pick another split or use restrict='none'."
                )
            rows = torch.cat([top, bot])
            ds_idx = fs.indices[rows].tolist()
            images = load_images01(dataset, ds_idx, size, interp)
            ev = evaluate_images(
                surface, images, [n] * len(ds_idx), batch_size=self.batch_size, device=device
            )
            logits = fs.logits[rows]
            probs = logits.softmax(dim=1)
            out.append(
                Visualization(
                    method=self.name,
                    neuron=n,
                    class_idx=c,
                    images=images,
                    activations=[float(v) for v in fs.features[rows, n].tolist()],
                    activation_maps=ev["maps"],
                    masks=ev["masks"],
                    class_logits=None if c is None else [float(v) for v in logits[:, c].tolist()],
                    class_probs=None if c is None else [float(v) for v in probs[:, c].tolist()],
                    settings={
                        **self.settings(),
                        "image_size": list(size),
                        "dataset": getattr(dataset, "name", None),
                        "split": getattr(dataset, "split", None),
                        "feature_cache_key": fs.meta.get("cache_key"),
                    },
                    wall_seconds=shared + time.perf_counter() - t1,
                    extra={
                        "role": ["top"] * len(top) + ["bottom"] * len(bot),
                        "dataset_indices": [int(i) for i in ds_idx],
                        "paths": [fs.paths[r] for r in rows.tolist()],
                        "labels": [int(v) for v in fs.labels[rows].tolist()],
                        "preds": [int(v) for v in fs.preds[rows].tolist()],
                        # Recomputed on the resized image shown (the cache used the dataset's transform).
                        "activations_shown": [float(v) for v in ev["activations"].tolist()],
                        "pool_size": int((fs.labels == c).sum())
                        if c is not None and self.restrict == "label"
                        else int((fs.preds == c).sum())
                        if c is not None and self.restrict == "pred"
                        else len(fs),
                    },
                )
            )
        return out
