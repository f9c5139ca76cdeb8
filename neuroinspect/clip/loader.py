"""Load a CLIP model for guidance: open_clip name + pretrained tag, a local checkpoint, or a synthetic CLIP.

Spec strings accepted by :func:`load_clip`:

- ``"ViT-B-32:laion2b_s34b_b79k"``: an open_clip architecture and pretrained tag (the reference's
  model), from the hub or the local cache. Offline and uncached it fails at once with a
  :class:`ClipUnavailableError` instead of retrying.
- ``"ViT-B-32:/path/to/open_clip_weights.pt"``: an open_clip architecture and a local weight file.
- ``"/path/to/file.pt"`` or ``"synthetic-clip:/path/to/file.pt"``: a synthetic CLIP written by
  ``neuroinspect clip train`` (:mod:`neuroinspect.clip.synthetic`).
- ``"synthetic-clip:spurious-shapes"``: the synthetic CLIP of a bundled benchmark at its default
  location (``$NEUROINSPECT_CACHE/clip/<dataset>.pt``).
- ``"synthetic-clip:random"`` / ``"ViT-B-32:random"``: random-init weights (benchmarks and tests only:
  such a model gives no meaningful guidance).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import neuroinspect  # noqa: F401  (torchvision fix before open_clip imports torchvision)
from neuroinspect.errors import UserError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: The reference's guidance model (spec §4.2).
DEFAULT_CLIP = "ViT-B-32:laion2b_s34b_b79k"
SYNTHETIC_PREFIX = "synthetic-clip"


class ClipUnavailableError(UserError):
    """CLIP weights cannot be found (offline and not cached, missing file, unknown name)."""


@dataclass
class ClipModel:
    """A CLIP image + text encoder pair with its preprocessing facts.

    - ``model``: an open_clip ``CLIP`` module (``encode_image`` / ``encode_text``).
    - ``tokenizer``: list of N strings → N×L int64 token ids.
    - ``mean`` / ``std``: per-channel normalization of the image encoder's input.
    - ``image_size``: (H, W) the image encoder expects; :meth:`encode_image` resizes to it.
    - ``spec``: the string it was loaded from; ``info``: what to record about it (config, metrics).
    """

    model: nn.Module
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    image_size: tuple[int, int] = (224, 224)
    spec: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> ClipModel:
        self.model.to(device)
        return self

    def freeze(self) -> ClipModel:
        """Eval mode, no parameter gradients (guidance never trains CLIP; spec bug 22)."""
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self

    def preprocess(self, images01: torch.Tensor) -> torch.Tensor:
        """B×3×H×W in [0, 1] → B×3×h×w resized (bilinear) to ``image_size`` and normalized."""
        if tuple(images01.shape[-2:]) != tuple(self.image_size):
            images01 = F.interpolate(images01, size=self.image_size, mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
        return (images01 - mean) / std

    def encode_image(self, images01: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """B×3×H×W images in [0, 1] → B×E embeddings (unit length when ``normalize``). Differentiable."""
        encoder: Any = self.model  # open_clip's CLIP (its encoders are methods, not submodules)
        emb = encoder.encode_image(self.preprocess(images01))
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """N strings → N×E embeddings (unit length when ``normalize``)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        encoder: Any = self.model
        emb = encoder.encode_text(tokens)
        return F.normalize(emb, dim=-1) if normalize else emb

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for result records."""
        return {
            "spec": self.spec,
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            **self.info,
        }


def default_synthetic_path(dataset: str) -> Path:
    """Where ``neuroinspect clip train --dataset NAME`` puts its model unless told otherwise."""
    from neuroinspect.harness.features import default_cache_dir

    return default_cache_dir() / "clip" / f"{dataset}.pt"


def load_clip(
    spec: str, device: str | torch.device = "cpu", cache_dir: str | Path | None = None
) -> ClipModel:
    """Load the CLIP model named by ``spec`` (see the module docstring), frozen, on ``device``.

    ``cache_dir``: where open_clip looks for (and downloads) pretrained weights; default
    ``$NEUROINSPECT_CLIP_CACHE`` if set, else open_clip's own default (the Hugging Face cache).

    Raises :class:`ClipUnavailableError` (a :class:`UserError`) with the fix when the weights
    cannot be had: offline and uncached, missing file, unknown architecture or tag.
    """
    from neuroinspect.clip import synthetic

    spec = spec.strip()
    if not spec:
        raise ClipUnavailableError(
            f"empty CLIP spec. Pass e.g. --clip {DEFAULT_CLIP} or --clip synthetic-clip:PATH."
        )
    if spec.startswith(f"{SYNTHETIC_PREFIX}:") or spec == SYNTHETIC_PREFIX:
        target = spec.split(":", 1)[1] if ":" in spec else ""
        if target in ("", "random"):
            clip = synthetic.random_clip(seed=0)
            clip.spec = spec
            return clip.to(device).freeze()
        path = Path(target).expanduser()
        if not path.is_file() and os.sep not in target and not target.endswith(".pt"):
            path = default_synthetic_path(target)
            if not path.is_file():
                raise ClipUnavailableError(
                    f"no synthetic CLIP for dataset {target!r} at {path}. Train one with "
                    f"`neuroinspect clip train --dataset {target} --out {path}`."
                )
        return synthetic.load_synthetic_clip(path, device=device, spec=spec)
    if ":" not in spec or _is_windows_drive(spec):
        path = Path(spec).expanduser()
        if path.is_file():
            if synthetic.is_synthetic_file(path):
                return synthetic.load_synthetic_clip(path, device=device, spec=spec)
            raise ClipUnavailableError(
                f"{path} is not a synthetic CLIP written by `neuroinspect clip train`. For open_clip weights, "
                f"name the architecture too: --clip ARCH:{path} (e.g. ViT-B-32:{path})."
            )
        if os.sep in spec or spec.endswith(".pt"):
            raise ClipUnavailableError(
                f"CLIP file {path} does not exist. Train one with `neuroinspect clip train` or fix the path."
            )
        raise ClipUnavailableError(
            f"CLIP spec {spec!r} names no pretrained weights. Use ARCH:TAG (e.g. {DEFAULT_CLIP}), ARCH:PATH, "
            "or synthetic-clip:PATH."
        )
    arch, pretrained = spec.split(":", 1)
    cache = cache_dir if cache_dir is not None else os.environ.get("NEUROINSPECT_CLIP_CACHE") or None
    return _load_open_clip(
        arch, pretrained, device, spec, None if cache is None else str(Path(cache).expanduser())
    )


@contextmanager
def _quiet_logging() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def _is_windows_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[0].isalpha() and spec[2] in "\\/"


def _load_open_clip(
    arch: str, pretrained: str, device: str | torch.device, spec: str, cache_dir: str | None
) -> ClipModel:
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    if arch not in open_clip.list_models():
        raise ClipUnavailableError(
            f"open_clip has no architecture {arch!r} (from --clip {spec}). See `open_clip.list_models()`, e.g. ViT-B-32."
        )
    random_init = pretrained.lower() in ("random", "none")
    path = Path(pretrained).expanduser()
    if not random_init and not path.is_file():
        if os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise ClipUnavailableError(
                f"CLIP weight file {path} does not exist. Fix the path in --clip {spec}."
            )
        cfg = get_pretrained_cfg(arch, pretrained)
        if not cfg:
            tags = ", ".join(list_pretrained_tags_by_model(arch)) or "none"
            raise ClipUnavailableError(
                f"open_clip has no pretrained tag {pretrained!r} for {arch} (known tags: {tags})."
            )
        _fail_fast_if_offline(arch, pretrained, cfg, cache_dir)
    try:
        with _quiet_logging():  # open_clip logs the failure at ERROR level before raising it
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch,
                pretrained=None if random_init else (str(path) if path.is_file() else pretrained),
                device=device,
                cache_dir=cache_dir,
            )
    except ClipUnavailableError:
        raise
    except (RuntimeError, OSError, FileNotFoundError, ValueError, KeyError) as err:
        if os.environ.get("HF_HUB_OFFLINE") == "1" and not path.is_file():
            raise ClipUnavailableError(
                f"CLIP weights {arch}:{pretrained} are not available offline: the model hub cannot be reached and they "
                f"are not in the local cache{f' ({cache_dir})' if cache_dir else ''}. Pass a local file with --clip "
                f"{arch}:PATH, fill the cache on a machine that is online, or train a small CLIP for a bundled benchmark "
                "(`neuroinspect clip train --dataset spurious-shapes --out clip.pt`, then --clip synthetic-clip:clip.pt)."
            ) from None
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ClipUnavailableError(
            f"could not load CLIP weights {arch}:{pretrained} ({first}). Pass a local file with --clip {arch}:PATH or "
            "use a synthetic CLIP (`neuroinspect clip train`)."
        ) from None
    size = getattr(model.visual, "image_size", 224)
    size_t = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(pp.get("mean", CLIP_MEAN))
    std = tuple(pp.get("std", CLIP_STD))
    tokenizer = open_clip.get_tokenizer(arch)
    clip = ClipModel(
        model=model,
        tokenizer=tokenizer,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        image_size=size_t,
        spec=spec,
        info={"source": "open_clip", "arch": arch, "pretrained": "random" if random_init else pretrained},
    )
    del preprocess
    return clip.to(device).freeze()


def _fail_fast_if_offline(arch: str, tag: str, cfg: dict[str, Any], cache_dir: str | None = None) -> None:
    """Offline: switch the hub to cache-only at once; URL-only weights must already be on disk."""
    from neuroinspect.harness.models import _hub_reachable, set_hub_offline

    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    if not offline:
        return
    set_hub_offline()
    if cfg.get("hf_hub"):
        return  # open_clip asks the cache and fails at once when the file is absent
    url = cfg.get("url", "")
    cached = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    if url and not cached.is_file():
        raise ClipUnavailableError(
            f"CLIP weights {arch}:{tag} are not available offline (no network, and {cached} is absent). Put the file "
            f"there, pass --clip {arch}:PATH, or use a synthetic CLIP (`neuroinspect clip train`)."
        )


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_CLIP",
    "ClipModel",
    "ClipUnavailableError",
    "default_synthetic_path",
    "load_clip",
]
