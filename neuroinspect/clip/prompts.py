"""Class text embeddings for CLIP guidance (spec §4.2): 32 prompt templates, averaged.

Each template is formatted with the *full* class string (e.g. ``"food, steak"``), encoded,
L2-normalized, and the normalized embeddings are averaged over the templates. As in the reference
the mean is **not** re-normalized (its norm is below 1); ``renormalize=True`` makes it a unit vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from neuroinspect.clip.loader import ClipModel

_PHOTO = (
    "a photo of a part of a {}.",
    "a clear photo of a {}.",
    "a photo of a {}.",
    "a photo of many {}.",
    "a photo of a clean {}.",
    "a photo of my {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "a zoomed-in photo of a {}.",
    "a zoomed-out photo of a {}.",
)

#: The 32 templates of the reference, in its order: 10 "photo" templates, the same 10 with
#: "picture", then 12 more.
TEMPLATES: tuple[str, ...] = (
    _PHOTO
    + tuple(t.replace("photo", "picture") for t in _PHOTO)
    + (
        "a photo of the nice {}.",
        "a photo of the small {}.",
        "a photo of the weird {}.",
        "a photo of a cool {}.",
        "a photo of a small {}.",
        "the toy {}.",
        "a rendition of the {}.",
        "a photo of a large {}.",
        "a good photo of the {}.",
        "a cropped photo of the {}.",
        "a photo of one {}.",
        "a bright photo of the {}.",
    )
)
assert len(TEMPLATES) == 32


def prompts_for(class_string: str, templates: Sequence[str] = TEMPLATES) -> list[str]:
    """The templated sentences for one class string."""
    return [t.format(class_string) for t in templates]


@torch.no_grad()
def class_text_embeddings(
    clip: ClipModel,
    class_strings: Sequence[str],
    templates: Sequence[str] = TEMPLATES,
    renormalize: bool = False,
) -> torch.Tensor:
    """Text embeddings of ``class_strings``: K×E float32 on the CLIP model's device.

    Row k = mean over templates of the L2-normalized embedding of ``template.format(class_strings[k])``.
    ``renormalize=False`` (the reference) leaves the mean with norm < 1; ``True`` rescales it to 1.
    """
    if not class_strings:
        raise ValueError("class_text_embeddings needs at least one class string")
    rows = []
    for name in class_strings:
        emb = clip.encode_text(prompts_for(name, templates))  # T×E, unit rows
        mean = emb.mean(dim=0)
        if renormalize:
            mean = mean / mean.norm().clamp_min(1e-12)
        rows.append(mean)
    return torch.stack(rows).float()


__all__ = ["TEMPLATES", "prompts_for", "class_text_embeddings"]
