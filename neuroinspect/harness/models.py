"""One model surface for every timm classifier, CNN or ViT.

A :class:`ModelSurface` splits a timm model through timm's own interface into

- ``forward_features(x)``: the backbone, B×3×H×W → B×D×h×w (CNN) or B×T×D tokens (ViT);
- ``pool(feats)``: ``forward_head(feats, pre_logits=True)``, → B×D, the *neurons* of this package;
- ``decision``: ``get_classifier()``, the ``nn.Linear(D, K)`` that finders read and editors rewrite.

There is no ``layer4`` / ``fc`` hard-coding (spec bug 29): neuron n is input n of the decision layer.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import neuroinspect  # noqa: F401  (applies the torchvision fix before timm is imported)
from neuroinspect.errors import CheckpointError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """How images are fed to the model: input size, normalization and resize rules (timm's data config)."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    crop_mode: str = "center"

    @property
    def image_size(self) -> int:
        return int(self.input_size[-1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        return cls(
            input_size=tuple(d["input_size"]),  # type: ignore[arg-type]
            mean=tuple(d["mean"]),  # type: ignore[arg-type]
            std=tuple(d["std"]),  # type: ignore[arg-type]
            interpolation=d.get("interpolation", "bilinear"),
            crop_pct=float(d.get("crop_pct", 0.875)),
            crop_mode=d.get("crop_mode", "center"),
        )

    @classmethod
    def from_timm(cls, model: nn.Module, image_size: int | None = None) -> DataConfig:
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        out = cls(
            input_size=tuple(cfg["input_size"]),  # type: ignore[arg-type]
            mean=tuple(cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(cfg["std"]),  # type: ignore[arg-type]
            interpolation=str(cfg.get("interpolation", "bilinear")),
            crop_pct=float(cfg.get("crop_pct", 0.875)),
            crop_mode=str(cfg.get("crop_mode", "center")),
        )
        if image_size is not None:
            out.input_size = (3, image_size, image_size)
        return out


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model: the timm name, class count and extra timm kwargs."""

    arch: str
    num_classes: int
    image_size: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def timm_kwargs(self) -> dict[str, Any]:
        kw = dict(self.kwargs)
        if self.image_size is not None and _accepts_img_size(self.arch):
            kw.setdefault("img_size", self.image_size)
        return kw


def _accepts_img_size(arch: str) -> bool:
    # Transformers and other fixed-grid models take img_size; CNNs reject unknown kwargs.
    name = arch.lower()
    return any(
        key in name
        for key in (
            "vit",
            "deit",
            "beit",
            "eva",
            "swin",
            "cait",
            "xcit",
            "mixer",
            "pit",
            "tnt",
            "levit",
            "mvit",
            "dino",
        )
    )


class ModelSurface(nn.Module):
    """A timm classifier seen as backbone ▸ pool ▸ decision layer.

    ``forward(x)`` (B×3×H×W) returns logits B×K and equals the timm model's own forward in eval mode.
    """

    model: Any  # a timm model: forward_features / forward_head / get_classifier

    def __init__(self, model: nn.Module, spec: ModelSpec, data_config: DataConfig | None = None) -> None:
        super().__init__()
        for attr in ("forward_features", "forward_head", "get_classifier"):
            if not hasattr(model, attr):
                raise UserError(
                    f"model {spec.arch!r} does not expose timm's `{attr}`; use a timm classifier."
                )
        self.model = model
        self.spec = spec
        self.data_config = data_config or DataConfig.from_timm(model, spec.image_size)
        head = self.model.get_classifier()
        if not isinstance(head, nn.Linear):
            raise UserError(
                f"the decision layer of {spec.arch!r} is {type(head).__name__}, not nn.Linear; "
                "neuron-level editing needs a linear classifier (num_classes > 0)."
            )

    # -- the three parts --------------------------------------------------------------------------
    @property
    def decision(self) -> nn.Linear:
        """The decision layer, ``nn.Linear(D, K)``: weight K×D, bias K."""
        head = self.model.get_classifier()
        assert isinstance(head, nn.Linear)
        return head

    @property
    def num_features(self) -> int:
        """D, the number of neurons (inputs of the decision layer)."""
        return int(self.decision.in_features)

    @property
    def num_classes(self) -> int:
        return int(self.decision.out_features)

    @property
    def num_prefix_tokens(self) -> int:
        return int(getattr(self.model, "num_prefix_tokens", 0))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output: B×D×h×w for CNNs, B×T×D for token models."""
        return self.model.forward_features(x)

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, B×D (timm's ``forward_head(pre_logits=True)``)."""
        return self.model.forward_head(feats, pre_logits=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W images (normalized) → B×D pooled features."""
        return self.pool(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decision(self.features(x))

    def spatial_maps(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-neuron spatial activation maps from backbone output: B×D×h×w.

        CNNs: the backbone tensor itself. Token models: the patch tokens (prefix tokens dropped)
        reshaped to a square grid; a token's channel n stands for neuron n.
        """
        if feats.ndim == 4:
            return feats
        if feats.ndim == 3:
            tokens = feats[:, self.num_prefix_tokens :, :]
            n = tokens.shape[1]
            side = int(round(n**0.5))
            if side * side != n:
                raise ValueError(f"cannot arrange {n} patch tokens on a square grid")
            return tokens.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], side, side)
        raise ValueError(f"unexpected backbone output of shape {tuple(feats.shape)}")

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """B×3×H×W images in [0, 1] → normalized with this model's mean/std."""
        mean = torch.tensor(self.data_config.mean, device=images01.device, dtype=images01.dtype).view(
            1, 3, 1, 1
        )
        std = torch.tensor(self.data_config.std, device=images01.device, dtype=images01.dtype).view(
            1, 3, 1, 1
        )
        return (images01 - mean) / std

    def freeze(self) -> ModelSurface:
        """Eval mode and no parameter gradients (finders, visualizers, feature extraction)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


def model_name(surface: ModelSurface) -> str:
    """The model's name in result records: architecture and input size, e.g. ``resnet18@64px``.

    Every command writes the same name for the same checkpoint, so a leaderboard never splits one
    model into two rows (the input size is part of it: a ResNet-18 at 64 px and at 224 px differ).
    """
    return f"{surface.spec.arch}@{surface.data_config.image_size}px"


def create_model(
    arch: str,
    num_classes: int,
    pretrained: bool | str = False,
    image_size: int | None = None,
    **kwargs: Any,
) -> ModelSurface:
    """A timm model as a :class:`ModelSurface`.

    ``pretrained``: ``False`` (random init), ``True`` or a timm tag such as ``"resnet50.a1_in1k"``
    (hub or local cache), or a path to a local weight file (``.pth``/``.bin``/``.safetensors``).
    Offline and uncached, it fails at once with a :class:`UserError` instead of retrying for a minute.
    """
    import timm

    name = arch
    overlay: dict[str, Any] | None = None
    use_pretrained = bool(pretrained)
    if isinstance(pretrained, str) and pretrained not in ("true", "True", "1"):
        if _looks_like_path(pretrained):
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise UserError(
                    f"pretrained weight file {path} does not exist. Pass a timm tag or an existing file."
                )
            overlay = {"file": str(path)}
        else:
            name = (
                pretrained
                if "." in pretrained or pretrained.startswith(arch.split(".")[0])
                else f"{arch}.{pretrained}"
            )
    if not timm.is_model(name.split(".")[0]):
        raise UserError(
            f"timm has no model called {name.split('.')[0]!r}; see `timm.list_models()` for valid names."
        )
    spec = ModelSpec(
        arch=name.split(".")[0], num_classes=num_classes, image_size=image_size, kwargs=dict(kwargs)
    )
    kw = spec.timm_kwargs()
    if use_pretrained and overlay is None:
        _fail_fast_if_offline(name)
    try:
        model = timm.create_model(
            name, pretrained=use_pretrained, num_classes=num_classes, pretrained_cfg_overlay=overlay, **kw
        )
    except UserError:
        raise
    except (OSError, RuntimeError, ValueError) as err:
        if use_pretrained:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"could not load pretrained weights for {name!r} (the hub is unreachable and they are not in the local "
                f"cache: {first[:160]}). Pass --pretrained PATH to a local weight file, or fill the Hugging Face cache "
                "on a machine that is online."
            ) from None
        raise
    return ModelSurface(model, spec, DataConfig.from_timm(model, image_size))


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or value.endswith((".pth", ".pt", ".bin", ".safetensors", ".npz"))
        or Path(value).expanduser().exists()
    )


def _hub_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _fail_fast_if_offline(name: str) -> None:
    """Without network and without ``HF_HUB_OFFLINE``, timm retries for ~50 s; switch to cache-only at once."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return
    if not _hub_reachable():
        set_hub_offline()


def set_hub_offline() -> None:
    """Make huggingface_hub cache-only for this process (it reads the variable once, at import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hf_constants

        hf_constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - timm always brings huggingface_hub
        pass


__all__ = ["DataConfig", "ModelSpec", "ModelSurface", "create_model", "CheckpointError"]
