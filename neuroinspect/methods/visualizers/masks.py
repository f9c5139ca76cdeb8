"""Activation maps and masks of a neuron on an image (spec §4.4).

The neuron's spatial map (h×w: a CNN channel, or a ViT's patch tokens on their grid) is upsampled
bilinearly (``align_corners=True``) to the image, z-scored over the image's pixels (unbiased
std), and thresholded:

- 1 where z ≥ τ and the map is > 0;
- ``reduction`` where z < τ or the map is exactly 0;
- 0 where z ≥ τ and the map is < 0;

then clamped to [0, 1]. The reference's two uses: ``thresholding=True`` returns image ⊙ mask(τ,
reduction); ``thresholding=False`` keeps the image and reports the binary mask(τ = 0.25, 0), and
saves image ⊙ max(mask, 0.5) for display (:func:`display_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def neuron_maps(spatial: torch.Tensor, neurons: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Pick each sample's neuron from B×D×h×w spatial maps: → B×h×w."""
    idx = torch.as_tensor(neurons, dtype=torch.long, device=spatial.device).view(-1)
    if idx.numel() != spatial.shape[0]:
        raise ValueError(f"{idx.numel()} neurons for a batch of {spatial.shape[0]}")
    return spatial[torch.arange(spatial.shape[0], device=spatial.device), idx]


def upsample_maps(maps: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """B×h×w → B×H×W, bilinear with ``align_corners=True`` (the reference's choice)."""
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return F.interpolate(maps.unsqueeze(1).float(), size=hw, mode="bilinear", align_corners=True).squeeze(1)


def zscore(maps: torch.Tensor) -> torch.Tensor:
    """Per-image z-score over the pixels of B×H×W maps (unbiased std); a constant map gives zeros."""
    flat = maps.flatten(1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=True, keepdim=True) if flat.shape[1] > 1 else torch.zeros_like(mean)
    z = torch.where(std > 0, (flat - mean) / std.clamp_min(1e-12), torch.zeros_like(flat))
    return z.view_as(maps)


def threshold_mask(maps: torch.Tensor, tau: float, reduction: float) -> torch.Tensor:
    """The §4.4 mask of B×H×W activation maps (already upsampled): B×H×W in [0, 1]."""
    z = zscore(maps)
    hot = z >= tau
    mask = torch.full_like(maps, float(reduction))
    mask = torch.where(hot & (maps > 0), torch.ones_like(mask), mask)
    mask = torch.where(hot & (maps < 0), torch.zeros_like(mask), mask)
    return mask.clamp(0.0, 1.0)


def activation_masks(
    spatial: torch.Tensor,
    neurons: torch.Tensor | Sequence[int],
    size: int | Sequence[int],
    tau: float,
    reduction: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(maps, masks)``: the neurons' maps upsampled to ``size`` (B×H×W) and their §4.4 masks (B×H×W)."""
    maps = upsample_maps(neuron_maps(spatial, neurons), size)
    return maps, threshold_mask(maps, tau, reduction)


def apply_mask(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """B×3×H×W images ⊙ B×H×W masks."""
    return images * masks.unsqueeze(1).to(images.dtype)


def display_mask(masks: torch.Tensor, floor: float = 0.5) -> torch.Tensor:
    """max(mask, floor): the reference's display weighting for unthresholded images (B×H×W)."""
    return masks.clamp_min(float(floor))


__all__ = [
    "activation_masks",
    "apply_mask",
    "display_mask",
    "neuron_maps",
    "threshold_mask",
    "upsample_maps",
    "zscore",
]
