"""CLIP for guidance: loading (open_clip tags, local files, synthetic CLIPs), prompts, offline training.

``load_clip(spec, device)`` is the one entry point; see :mod:`neuroinspect.clip.loader` for the
accepted specs and :mod:`neuroinspect.clip.synthetic` for ``neuroinspect clip train``.
"""

from __future__ import annotations

from neuroinspect.clip.loader import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_CLIP,
    ClipModel,
    ClipUnavailableError,
    default_synthetic_path,
    load_clip,
)
from neuroinspect.clip.prompts import TEMPLATES, class_text_embeddings, prompts_for

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_CLIP",
    "TEMPLATES",
    "ClipModel",
    "ClipUnavailableError",
    "class_text_embeddings",
    "default_synthetic_path",
    "load_clip",
    "prompts_for",
]
