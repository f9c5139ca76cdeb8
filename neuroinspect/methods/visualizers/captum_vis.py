"""Captum attribution baselines: where in an input image the class logit (or the pooled neuron) comes from.

Two families, one file each method would otherwise be:

- class variants (``captum_ig``, ``captum_saliency``, ``captum_gradcam``, ``captum_occlusion``,
  ``captum_lime``, ``captum_kernelshap``): attributions of the class logit, target = the pair's
  class, or each image's predicted class when the pair has none;
- neuron variants (``captum_neuron_*``): attributions of the pooled neuron itself, through Captum's
  ``Neuron*`` / ``Layer*`` classes on the ``pooled`` tap of :class:`SurfaceTaps` (a wrapper whose
  ``pooled`` module outputs the B×D pooled features, the decision layer's inputs).

Inputs are dataset images chosen per (neuron, class) pair: ``indices=[...]``, or the neuron's
top-activating images, or the class's mistakes (``inputs="auto"``: mistakes for class variants with a
class, top-activating images otherwise). Memory is bounded by ``internal_batch_size`` (IG steps,
occlusion / LIME / KernelSHAP perturbations per forward). LIME and KernelSHAP use a square grid as
feature mask, so scikit-image superpixels are not needed. Maps are reduced over channels and
normalized by :mod:`heatmaps` (``normalize="none"`` keeps the raw values); the choice is recorded.

Returned :class:`Visualization` s have ``kind="attribution"``: ``images`` = the inputs in [0, 1],
``activation_maps`` = the attribution maps (n×H×W).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.harness.models import ModelSurface
from neuroinspect.methods.visualizers._taps import SurfaceTaps, frozen, input_size, seeded
from neuroinspect.methods.visualizers.base import (
    Visualization,
    Visualizer,
    register_visualizer,
    validate_pairs,
)
from neuroinspect.methods.visualizers.exemplars import (
    dataset_features,
    evaluate_images,
    load_images01,
    rank_by_activation,
)
from neuroinspect.methods.visualizers.heatmaps import (
    NORMALIZATIONS,
    normalize_maps,
    reduce_channels,
    upsample_maps,
)
from neuroinspect.runtime import progress

INPUT_CHOICES = ("auto", "top", "mistakes")
BASELINES = ("black", "mean")


def _captum_attr() -> Any:
    """``captum.attr``, imported on first use (about a second, which listing the methods or running
    another visualizer should not pay)."""
    import captum.attr

    return captum.attr


def grid_feature_mask(height: int, width: int, cells: int) -> torch.Tensor:
    """A square-grid feature mask, 1×3×H×W int64: ``cells``×``cells`` groups, ids row-major, shared by the channels."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    rows = (torch.arange(height) * cells // height).clamp(max=cells - 1)
    cols = (torch.arange(width) * cells // width).clamp(max=cells - 1)
    ids = rows[:, None] * cells + cols[None, :]
    return ids.expand(1, 3, height, width).clone().long()


class CaptumVisualizer(Visualizer):
    """Shared machinery: input selection, targets, batching, heatmap normalization, the record."""

    kind = "attribution"
    #: "class": attribute the class logit; "neuron": attribute the pooled neuron.
    target_kind: ClassVar[str] = "class"
    default_normalize: ClassVar[str] = "signed"
    default_reduce: ClassVar[str] = "sum"
    captum_class: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give an ``__init__(self, own..., **kwargs)`` the full signature (its own arguments, then the
        parent's as keyword-only), so ``inspect.signature`` (the CLI's ``--set``, help, docs) sees every
        hyperparameter."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        own = inspect.signature(init)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.parameters.values()):
            return
        parent = inspect.signature(super(cls, cls).__init__)
        mine = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        inherited = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for name, p in parent.parameters.items()
            if name != "self" and name not in own.parameters and p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        init.__signature__ = own.replace(parameters=mine + inherited)  # type: ignore[attr-defined]

    def __init__(
        self,
        indices: Sequence[int] | None = None,
        inputs: str = "auto",
        n_inputs: int = 4,
        normalize: str | None = None,
        clip_percentile: float | None = 99.0,
        reduce: str | None = None,
        baseline: str = "black",
        internal_batch_size: int = 16,
        batch_size: int = 64,
        features: FeatureSet | None = None,
        checkpoint_sha: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        """``indices``: dataset indices of the input images (the same for every pair); otherwise
        ``inputs`` picks ``n_inputs`` per pair: ``"top"`` (the neuron's top-activating images, within the
        pair's class if it has one), ``"mistakes"`` (the class's misclassified images, most activating
        first) or ``"auto"`` (mistakes for class variants with a class, else top). ``normalize``: heatmap
        normalization (``signed``/``abs``/``positive``/``none``; default per method), percentile
        ``clip_percentile``; ``reduce``: channel reduction (default per method); ``baseline``: the
        reference image of IG / occlusion / LIME / KernelSHAP, ``"black"`` (pixels 0) or ``"mean"`` (the
        model's normalization mean, i.e. 0 after normalization); ``internal_batch_size``: IG steps or
        perturbations per forward pass (bounds memory); ``features``/``checkpoint_sha``/``cache_dir``: as
        for :class:`~neuroinspect.methods.visualizers.exemplars.ExemplarsVisualizer`."""
        if inputs not in INPUT_CHOICES:
            raise UserError(f"inputs must be one of {', '.join(INPUT_CHOICES)}, got {inputs!r}.")
        normalize = normalize or self.default_normalize
        if normalize not in NORMALIZATIONS:
            raise UserError(
                f"unknown heatmap normalization {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}."
            )
        if baseline not in BASELINES:
            raise UserError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}.")
        if n_inputs < 1:
            raise UserError(f"n_inputs must be >= 1, got {n_inputs}.")
        if internal_batch_size < 1:
            raise UserError(f"internal_batch_size must be >= 1, got {internal_batch_size}.")
        self.indices = None if indices is None else [int(i) for i in indices]
        self.inputs = inputs
        self.n_inputs = int(n_inputs)
        self.normalize = normalize
        self.clip_percentile = clip_percentile
        self.reduce = reduce or self.default_reduce
        reduce_channels(torch.zeros(1, 3, 1, 1), self.reduce)  # validates the name
        self.baseline = baseline
        self.internal_batch_size = int(internal_batch_size)
        self.batch_size = int(batch_size)
        self._features = features
        self._checkpoint_sha = checkpoint_sha
        self._cache_dir = cache_dir

    # -- what a method implements -------------------------------------------------------------------
    def attribute(
        self,
        taps: SurfaceTaps,
        x: torch.Tensor,
        target: list[int] | int,
        baseline: torch.Tensor,
        show_progress: bool,
    ) -> torch.Tensor:
        """Attributions for normalized inputs ``x`` (n×3×H×W): n×C×h×w (C = 3, or 1 for layer maps).

        ``taps`` outputs logits (class variants, ``target`` = n class ids) or pooled features (neuron
        variants, ``target`` = the neuron id); ``baseline`` is 1×3×H×W in normalized space.
        """
        raise NotImplementedError

    def method_settings(self) -> dict[str, Any]:
        return {}

    # -- the interface ------------------------------------------------------------------------------
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
        if dataset is None:
            raise UserError(f"{self.name} attributes dataset images; pass a dataset (--dataset and --root).")
        if self.indices is not None:
            bad = [i for i in self.indices if not 0 <= i < len(dataset)]
            if bad:
                raise UserError(
                    f"image index {bad[0]} is out of range for a dataset of {len(dataset)} images (0..{len(dataset) - 1})."
                )
        t0 = time.perf_counter()
        fs = None
        if self.indices is None:
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
        dev = torch.device(device)
        out: list[Visualization] = []
        pairs = list(zip(neurons, classes, strict=True))
        for p, (n, c) in enumerate(progress(pairs, desc=self.name, enabled=show_progress and len(pairs) > 1)):
            t1 = time.perf_counter()
            n = int(n)
            ds_idx, how = self._select(fs, n, c)
            if not ds_idx:
                raise UserError(
                    f"{self.name}: no input images for neuron {n}"
                    + (f" and class {c}" if c is not None else "")
                    + "; pass indices=... or another split."
                )
            images = load_images01(dataset, ds_idx, size, surface.data_config.interpolation)
            ev = evaluate_images(surface, images, [n] * len(ds_idx), batch_size=self.batch_size, device=dev)
            preds = ev["logits"].argmax(dim=1)
            if self.target_kind == "neuron":
                target: list[int] | int = n
                targets = [n] * len(ds_idx)
            else:
                targets = [int(c)] * len(ds_idx) if c is not None else [int(v) for v in preds.tolist()]
                target = targets
            attrs = self._run(surface, images, target, dev, seed + p, show_progress)
            maps = upsample_maps(reduce_channels(attrs, self.reduce), size)
            raw_flat = maps.reshape(maps.shape[0], -1)
            normed, info = normalize_maps(maps, self.normalize, self.clip_percentile)
            labels = [int(dataset.samples[i].label) for i in ds_idx]
            out.append(
                Visualization(
                    method=self.name,
                    neuron=n,
                    class_idx=c,
                    images=images,
                    activations=[float(v) for v in ev["activations"].tolist()],
                    activation_maps=normed,
                    class_logits=None if c is None else [float(v) for v in ev["logits"][:, c].tolist()],
                    class_probs=None if c is None else [float(v) for v in ev["probs"][:, c].tolist()],
                    settings={
                        **self.settings(),
                        **self.method_settings(),
                        "captum": self.captum_class,
                        "target_kind": self.target_kind,
                        "image_size": list(size),
                    },
                    wall_seconds=shared + time.perf_counter() - t1,
                    extra={
                        "input_selection": how,
                        "dataset_indices": [int(i) for i in ds_idx],
                        "paths": [dataset.samples[i].path for i in ds_idx],
                        "labels": labels,
                        "preds": [int(v) for v in preds.tolist()],
                        "targets": targets,
                        "target_logits": [float(ev["logits"][j, t]) for j, t in enumerate(targets)]
                        if self.target_kind == "class"
                        else None,
                        "heatmap": info,
                        "raw_min": [float(v) for v in raw_flat.amin(dim=1).tolist()],
                        "raw_max": [float(v) for v in raw_flat.amax(dim=1).tolist()],
                        "attribution_sum": [
                            float(v) for v in attrs.reshape(attrs.shape[0], -1).sum(dim=1).tolist()
                        ],
                    },
                )
            )
        return out

    def _select(self, fs: FeatureSet | None, n: int, c: int | None) -> tuple[list[int], str]:
        if self.indices is not None:
            return list(self.indices), "indices"
        assert fs is not None
        how = self.inputs
        if how == "auto":
            how = "mistakes" if self.target_kind == "class" and c is not None else "top"
        if how == "mistakes":
            if c is None:
                raise UserError(f"{self.name}: inputs='mistakes' needs a class (--class-idx).")
            wrong = (fs.labels == c) & (fs.preds != c)
            rows = torch.nonzero(wrong).flatten()
            if rows.numel() == 0 and self.inputs == "auto":
                how = "top (class has no mistakes)"
            else:
                order = torch.sort(fs.features[rows, n], descending=True, stable=True).indices
                return [int(v) for v in fs.indices[rows[order[: self.n_inputs]]].tolist()], "mistakes"
        rows = rank_by_activation(fs, n, self.n_inputs, class_idx=c, restrict="label")
        return [int(v) for v in fs.indices[rows].tolist()], how

    def _baseline(self, surface: ModelSurface, h: int, w: int, device: torch.device) -> torch.Tensor:
        if self.baseline == "mean":
            return torch.zeros(1, 3, h, w, device=device)
        return surface.normalize(torch.zeros(1, 3, h, w, device=device))

    def _run(
        self,
        surface: ModelSurface,
        images01: torch.Tensor,
        target: list[int] | int,
        device: torch.device,
        seed: int,
        show_progress: bool,
    ) -> torch.Tensor:
        h, w = int(images01.shape[-2]), int(images01.shape[-1])
        with frozen(surface), seeded(seed, device):
            surface.to(device)
            taps = SurfaceTaps(surface, output="logits" if self.target_kind == "class" else "pooled")
            x = surface.normalize(images01.to(device)).requires_grad_(True)
            baseline = self._baseline(surface, h, w, device)
            attrs = self.attribute(taps, x, target, baseline, show_progress)
        return attrs.detach().float().cpu()


# -- gradients ------------------------------------------------------------------------------------
class _IG(CaptumVisualizer):
    captum_class = "IntegratedGradients"

    def __init__(self, n_steps: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_steps < 1:
            raise UserError(f"n_steps must be >= 1, got {n_steps}.")
        self.n_steps = int(n_steps)

    def attribute(self, taps, x, target, baseline, show_progress):  # type: ignore[no-untyped-def]
        common = {
            "baselines": baseline.expand_as(x),
            "n_steps": self.n_steps,
            "internal_batch_size": self.internal_batch_size,
        }
        attr = _captum_attr()
        if self.target_kind == "neuron":
            neuron_ig = attr.NeuronIntegratedGradients(taps, taps.pooled)
            return neuron_ig.attribute(x, neuron_selector=int(target), **common)
        return attr.IntegratedGradients(taps).attribute(x, target=target, **common)


@register_visualizer("captum_ig")
class CaptumIG(_IG):
    """Integrated Gradients of the class logit (Captum), from a black baseline."""


@register_visualizer("captum_neuron_ig")
class CaptumNeuronIG(_IG):
    """Integrated Gradients of the pooled neuron (Captum NeuronIntegratedGradients)."""

    target_kind = "neuron"
    captum_class = "NeuronIntegratedGradients"


class _Saliency(CaptumVisualizer):
    default_normalize = "abs"
    default_reduce = "max_abs"  # Simonyan et al.: max over channels of |gradient|
    captum_class = "Saliency"

    def attribute(self, taps, x, target, baseline, show_progress):  # type: ignore[no-untyped-def]
        attr = _captum_attr()
        if self.target_kind == "neuron":
            return attr.NeuronGradient(taps, taps.pooled).attribute(x, neuron_selector=int(target)).abs()
        return attr.Saliency(taps).attribute(x, target=target, abs=True)


@register_visualizer("captum_saliency")
class CaptumSaliency(_Saliency):
    """Saliency (|gradient| of the class logit, max over channels; Captum)."""


@register_visualizer("captum_neuron_saliency")
class CaptumNeuronSaliency(_Saliency):
    """Saliency of the pooled neuron (|gradient|, Captum NeuronGradient)."""

    target_kind = "neuron"
    captum_class = "NeuronGradient"


class _GradCam(CaptumVisualizer):
    default_normalize = (
        "positive"  # Grad-CAM's ReLU, applied in the normalization (the raw map keeps its sign)
    )
    captum_class = "LayerGradCam"

    def attribute(self, taps, x, target, baseline, show_progress):  # type: ignore[no-untyped-def]
        # The layer is the backbone's spatial output; for neuron variants the forward outputs the pooled
        # features, so target = the neuron (Grad-CAM of one pooled unit).
        gradcam = _captum_attr().LayerGradCam(taps, taps.spatial)
        return gradcam.attribute(x, target=target, relu_attributions=False)


@register_visualizer("captum_gradcam")
class CaptumGradCam(_GradCam):
    """Grad-CAM of the class logit on the backbone's last spatial map (Captum LayerGradCam)."""


@register_visualizer("captum_neuron_gradcam")
class CaptumNeuronGradCam(_GradCam):
    """Grad-CAM of the pooled neuron on the backbone's last spatial map (LayerGradCam, pooled output)."""

    target_kind = "neuron"


# -- perturbations --------------------------------------------------------------------------------
class _Occlusion(CaptumVisualizer):
    default_reduce = "mean"  # the window covers all channels: the map is the same in each
    captum_class = "Occlusion"

    def __init__(self, window: float = 0.125, stride: float = 0.5, **kwargs: Any) -> None:
        """``window``: occluding square's side as a fraction of the image side; ``stride``: as a fraction of the window."""
        super().__init__(**kwargs)
        if not 0 < window <= 1 or not 0 < stride <= 1:
            raise UserError(
                f"occlusion window and stride must be fractions in (0, 1], got {window} and {stride}."
            )
        self.window = float(window)
        self.stride = float(stride)

    def window_px(self, h: int, w: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Sliding window (3, wh, ww) and strides (3, sh, sw) in pixels for an H×W image."""
        wh, ww = max(1, round(h * self.window)), max(1, round(w * self.window))
        sh, sw = max(1, round(wh * self.stride)), max(1, round(ww * self.stride))
        return (3, wh, ww), (3, sh, sw)

    def attribute(self, taps, x, target, baseline, show_progress):  # type: ignore[no-untyped-def]
        win, strides = self.window_px(int(x.shape[-2]), int(x.shape[-1]))
        return (
            _captum_attr()
            .Occlusion(taps)
            .attribute(
                x,
                sliding_window_shapes=win,
                strides=strides,
                baselines=baseline,
                target=target,
                perturbations_per_eval=self.internal_batch_size,
                show_progress=False,
            )
        )


@register_visualizer("captum_occlusion")
class CaptumOcclusion(_Occlusion):
    """Occlusion of the class logit with a sliding square sized to the image (Captum)."""


@register_visualizer("captum_neuron_occlusion")
class CaptumNeuronOcclusion(_Occlusion):
    """Occlusion of the pooled neuron with a sliding square sized to the image (Captum)."""

    target_kind = "neuron"


class _Surrogate(CaptumVisualizer):
    """LIME / KernelSHAP over a square grid of image cells (no superpixel library needed)."""

    default_reduce = "mean"
    default_samples: ClassVar[int] = 64

    def __init__(self, grid: int = 8, n_samples: int | None = None, **kwargs: Any) -> None:
        """``grid``: cells per side of the square feature mask; ``n_samples``: perturbed images per input."""
        super().__init__(**kwargs)
        if grid < 1:
            raise UserError(f"grid must be >= 1 cells per side, got {grid}.")
        n_samples = self.default_samples if n_samples is None else n_samples
        if n_samples < 2:
            raise UserError(f"n_samples must be >= 2, got {n_samples}.")
        self.grid = int(grid)
        self.n_samples = int(n_samples)

    def _explainer(self, taps: SurfaceTaps) -> Any:
        raise NotImplementedError

    def attribute(self, taps, x, target, baseline, show_progress):  # type: ignore[no-untyped-def]
        h, w = int(x.shape[-2]), int(x.shape[-1])
        cells = min(self.grid, h, w)
        mask = grid_feature_mask(h, w, cells).to(x.device)
        explainer = self._explainer(taps)
        out = []
        # One example at a time: each gets its own surrogate model (Captum's recommended use).
        for j in range(x.shape[0]):
            t = target if isinstance(target, int) else target[j]
            out.append(
                explainer.attribute(
                    x[j : j + 1],
                    baselines=baseline,
                    target=t,
                    feature_mask=mask,
                    n_samples=self.n_samples,
                    perturbations_per_eval=self.internal_batch_size,
                    show_progress=False,
                )
            )
        return torch.cat(out)


class _Lime(_Surrogate):
    captum_class = "Lime"
    default_samples = 64

    def __init__(self, surrogate: str = "ridge", alpha: float = 1.0, **kwargs: Any) -> None:
        """``surrogate``: ``"ridge"`` (the ``lime`` package's Ridge(alpha=1)) or ``"lasso"`` (Captum's default,
        SkLearnLasso(alpha=0.01), which zeroes every cell when the output moves by less than ~alpha);
        ``alpha``: its regularization strength."""
        super().__init__(**kwargs)
        if surrogate not in ("ridge", "lasso"):
            raise UserError(f"LIME surrogate must be 'ridge' or 'lasso', got {surrogate!r}.")
        self.surrogate = surrogate
        self.alpha = float(alpha)

    def _explainer(self, taps: SurfaceTaps) -> Any:
        from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge

        model = (
            SkLearnRidge(alpha=self.alpha) if self.surrogate == "ridge" else SkLearnLasso(alpha=self.alpha)
        )
        return _captum_attr().Lime(taps, interpretable_model=model)


class _KernelShap(_Surrogate):
    captum_class = "KernelShap"
    default_samples = 64

    def _explainer(self, taps: SurfaceTaps) -> Any:
        return _captum_attr().KernelShap(taps)


@register_visualizer("captum_lime")
class CaptumLime(_Lime):
    """LIME of the class logit over a square grid of cells (Captum; Ridge surrogate as in the lime package)."""


@register_visualizer("captum_neuron_lime")
class CaptumNeuronLime(_Lime):
    """LIME of the pooled neuron over a square grid of cells (Captum)."""

    target_kind = "neuron"


@register_visualizer("captum_kernelshap")
class CaptumKernelShap(_KernelShap):
    """KernelSHAP of the class logit over a square grid of cells (Captum)."""


@register_visualizer("captum_neuron_kernelshap")
class CaptumNeuronKernelShap(_KernelShap):
    """KernelSHAP of the pooled neuron over a square grid of cells (Captum)."""

    target_kind = "neuron"


__all__ = ["CaptumVisualizer", "grid_feature_mask"]
