"""Image transforms: PIL image → normalized C×H×W float tensor.

One function builds the evaluation transform (:func:`eval_transform`) and every step that looks at
a model's predictions uses it: evaluation, the feature cache, the finders that look for mistakes
and the counterfactual step that explains them. The reference finds mistakes with one transform and
explains them with another, silently dropping some (spec bug 16); here there is a single source.

- Bundled benchmarks (``dataset_kind="benchmark"``) are generated at the model's size:
  Resize to the model size (a no-op when it already matches) → ToTensor → Normalize.
- Real datasets: timm's eval transform from the model's :class:`DataConfig` by default
  (``create_transform(..., is_training=False)``); ``ref=True`` gives the reference's transforms
  (spec §6.2): Resize((224, 224)) for Flowers102 / Food101, Resize((256, 256)) → CenterCrop(224)
  for Waterbirds, the timm eval transform for MetaShift, Resize(256) → CenterCrop(224) otherwise,
  always with ImageNet normalization (the reference hard-codes it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from PIL import Image

import neuroinspect  # noqa: F401  (torchvision fix before torchvision is imported)
from neuroinspect.harness.models import IMAGENET_MEAN, IMAGENET_STD, DataConfig

Transform = Callable[[Image.Image], Any]
KINDS = ("benchmark", "real")


def _T() -> Any:
    from torchvision import transforms

    return transforms


def _interp(name: str) -> Any:
    T = _T()
    return {
        "bilinear": T.InterpolationMode.BILINEAR,
        "bicubic": T.InterpolationMode.BICUBIC,
        "nearest": T.InterpolationMode.NEAREST,
        "lanczos": T.InterpolationMode.LANCZOS,
    }.get(name, T.InterpolationMode.BILINEAR)


def _check_kind(dataset_kind: str) -> None:
    if dataset_kind not in KINDS:
        raise ValueError(f"dataset_kind must be one of {KINDS}, got {dataset_kind!r}")


def _scaled(size: int, ref_size: int) -> int:
    # The reference's 256 → 224 resize-then-crop ratio, carried over to other input sizes.
    return int(round(size * ref_size / 224))


def eval_transform(
    data_config: DataConfig, dataset_kind: str, ref: bool = False, dataset: str | None = None
) -> Transform:
    """The evaluation transform: PIL RGB image → 3×S×S normalized tensor, S = ``data_config.image_size``.

    ``dataset`` (the registered name) only matters with ``ref=True``, whose transform differs per dataset.
    """
    _check_kind(dataset_kind)
    T = _T()
    size = data_config.image_size
    if dataset_kind == "benchmark":
        return T.Compose(
            [
                T.Resize((size, size), interpolation=_interp("bilinear"), antialias=True),
                T.ToTensor(),
                T.Normalize(data_config.mean, data_config.std),
            ]
        )
    if ref:
        norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if dataset in ("flowers102", "food101"):
            return T.Compose([T.Resize((size, size)), T.ToTensor(), norm])
        if dataset == "waterbirds":
            big = _scaled(size, 256)
            return T.Compose([T.Resize((big, big)), T.CenterCrop(size), T.ToTensor(), norm])
        if dataset is not None and dataset.startswith("metashift"):
            return _timm_eval(data_config)
        return T.Compose([T.Resize(_scaled(size, 256)), T.CenterCrop(size), T.ToTensor(), norm])
    return _timm_eval(data_config)


def _timm_eval(data_config: DataConfig) -> Transform:
    from timm.data import create_transform

    return create_transform(
        input_size=data_config.input_size,
        is_training=False,
        interpolation=data_config.interpolation,
        mean=tuple(data_config.mean),
        std=tuple(data_config.std),
        crop_pct=data_config.crop_pct,
        crop_mode=data_config.crop_mode,
    )


def train_transform(
    data_config: DataConfig,
    preset: Any,
    dataset_kind: str = "real",
    dataset: str | None = None,
) -> Transform:
    """The training transform for a :class:`~neuroinspect.harness.presets.TrainConfig` ``preset``.

    ``preset.augment``:
    - ``"none"``: the evaluation transform (reference transforms when ``preset.ref_transforms``);
    - ``"light"``: benchmarks: a random translation (RandomCrop with reflect padding of S/8), no flip
      (digits must not be mirrored); real data: RandomResizedCrop(S, scale 0.7-1) + horizontal flip;
    - ``"ref"``: the reference's training augmentation (spec §6.2): Resize((S, S)) → RandomAffine(15°,
      translate 0.15) for Flowers/Food and others; RandomResizedCrop(S, scale 0.7-1) + flip for Waterbirds;
      ImageNet normalization;
    - ``"timm"``: timm's own training transform (RandomResizedCrop, flip, colour jitter).
    """
    _check_kind(dataset_kind)
    T = _T()
    ref = bool(getattr(preset, "ref_transforms", False))
    augment = getattr(preset, "augment", "none")
    size = data_config.image_size
    mean, std = (
        (IMAGENET_MEAN, IMAGENET_STD)
        if ref and dataset_kind == "real"
        else (data_config.mean, data_config.std)
    )
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if augment == "none":
        return eval_transform(data_config, dataset_kind, ref=ref, dataset=dataset)
    if augment == "light":
        if dataset_kind == "benchmark":
            return T.Compose(
                [
                    T.Resize((size, size), interpolation=_interp("bilinear"), antialias=True),
                    T.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect"),
                    *tail,
                ]
            )
        return T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.7, 1.0), interpolation=_interp(data_config.interpolation)),
                T.RandomHorizontalFlip(),
                *tail,
            ]
        )
    if augment == "ref":
        norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        if dataset == "waterbirds":
            return T.Compose(
                [
                    T.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.75, 4 / 3)),
                    T.RandomHorizontalFlip(),
                    *norm,
                ]
            )
        return T.Compose([T.Resize((size, size)), T.RandomAffine(15, translate=(0.15, 0.15)), *norm])
    if augment == "timm":
        from timm.data import create_transform

        return create_transform(
            input_size=data_config.input_size,
            is_training=True,
            interpolation=data_config.interpolation,
            mean=tuple(mean),
            std=tuple(std),
        )
    raise ValueError(f"unknown augment {augment!r}")


def describe(transform: Any) -> str:
    """A stable one-line description of ``transform`` (a feature-cache key part).

    torchvision and timm transforms print their parameters; a plain function prints its qualified
    name; memory addresses are removed so that the text is the same in every process.
    """
    if transform is None:
        return "none"
    if callable(transform) and hasattr(transform, "__qualname__") and not hasattr(transform, "transforms"):
        text = f"{getattr(transform, '__module__', '')}.{transform.__qualname__}"
    else:
        text = repr(transform)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    return " ".join(text.split())


def transform_kind(dataset_name: str) -> str:
    """``"benchmark"`` or ``"real"`` for a registered dataset (``"real"`` when it is not registered)."""
    from neuroinspect.datasets import DATASETS

    if dataset_name not in DATASETS:
        return "real"
    spec = DATASETS.get(dataset_name)
    return "benchmark" if getattr(spec, "kind", "real") == "benchmark" else "real"


__all__ = ["KINDS", "Transform", "describe", "eval_transform", "train_transform", "transform_kind"]
