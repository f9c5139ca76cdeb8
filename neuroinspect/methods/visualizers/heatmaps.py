"""Heatmaps over images: channel reduction, optional and recorded normalization, colouring, overlays.

Fixes the complaints users file against Captum's visualization helpers: normalization can be turned
off (``mode="none"`` keeps the raw values), a constant map (e.g. all zeros) never divides by zero
(its scale is recorded as 0 and it renders flat), and signed maps keep their sign.

Modes (``normalize_maps``):

- ``"signed"``: m / s with s = the ``clip_percentile``-th percentile of |m|, clipped to [-1, 1];
- ``"abs"``: |m| / s, clipped to [0, 1];
- ``"positive"``: max(m, 0) / s with s from the positive part, clipped to [0, 1] (Grad-CAM's ReLU);
- ``"none"``: m unchanged (scale 1).

The percentile is taken per map, so each image's heatmap uses its own range; the scales are
returned so a caller can record them (and recover raw values below the clipping point).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NORMALIZATIONS = ("signed", "abs", "positive", "none")
CHANNEL_REDUCTIONS = ("sum", "abs_sum", "l2", "max_abs", "mean")

_EPS = 1e-12


def reduce_channels(attributions: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """n×C×H×W attributions → n×H×W maps.

    ``sum`` keeps the sign (Captum's ``heat_map`` convention); ``abs_sum``, ``l2`` and ``max_abs`` are
    unsigned; ``mean`` is ``sum`` / C. A 3-D input (already n×H×W) is returned as is.
    """
    if attributions.ndim == 3:
        return attributions
    if attributions.ndim != 4:
        raise ValueError(f"expected n×C×H×W attributions, got shape {tuple(attributions.shape)}")
    if how == "sum":
        return attributions.sum(dim=1)
    if how == "mean":
        return attributions.mean(dim=1)
    if how == "abs_sum":
        return attributions.abs().sum(dim=1)
    if how == "l2":
        return attributions.pow(2).sum(dim=1).sqrt()
    if how == "max_abs":
        return attributions.abs().amax(dim=1)
    raise ValueError(f"unknown channel reduction {how!r}; choose one of {', '.join(CHANNEL_REDUCTIONS)}")


def normalize_maps(
    maps: torch.Tensor, mode: str = "signed", clip_percentile: float | None = 99.0
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Normalize each map of ``maps`` (n×H×W) independently.

    Returns ``(normalized n×H×W float32, info)`` where ``info`` records ``mode``, ``clip_percentile``,
    ``scales`` (n floats: the value that maps to 1; 0 for a map with nothing to scale) and
    ``constant`` (n bools: the map had a single value).
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown heatmap normalization {mode!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if maps.ndim != 3:
        raise ValueError(f"expected n×H×W maps, got shape {tuple(maps.shape)}")
    if clip_percentile is not None and not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    m = maps.detach().float()
    n = m.shape[0]
    flat = m.reshape(n, -1)
    constant = [bool(v) for v in (flat.amax(dim=1) - flat.amin(dim=1) <= 0).tolist()] if n else []
    info: dict[str, Any] = {"mode": mode, "clip_percentile": clip_percentile, "constant": constant}
    if mode == "none":
        info["scales"] = [1.0] * n
        return m.clone(), info
    if mode == "signed":
        source = flat.abs()
    elif mode == "abs":
        m = m.abs()
        source = flat.abs()
    else:  # positive
        m = m.clamp(min=0)
        source = flat.clamp(min=0)
    scales = _percentile_scale(source, clip_percentile, positive_only=(mode == "positive"))
    safe = torch.where(scales > _EPS, scales, torch.ones_like(scales))
    out = m / safe.view(n, 1, 1)
    # Nothing to scale (all zeros, or no positive part): the map renders flat at 0, never NaN.
    out = torch.where((scales > _EPS).view(n, 1, 1), out, torch.zeros_like(out))
    lo = -1.0 if mode == "signed" else 0.0
    out = out.clamp(lo, 1.0)
    info["scales"] = [float(s) if s > _EPS else 0.0 for s in scales.tolist()]
    return out, info


def _percentile_scale(values: torch.Tensor, pct: float | None, positive_only: bool) -> torch.Tensor:
    """Per-row percentile of non-negative ``values`` (n×P); with ``positive_only`` over the entries > 0."""
    n = values.shape[0]
    out = torch.zeros(n, dtype=values.dtype)
    for i in range(n):
        row = values[i]
        if positive_only:
            row = row[row > 0]
        if row.numel() == 0:
            continue
        if pct is None or pct >= 100.0:
            out[i] = row.max()
        else:
            out[i] = torch.quantile(row.double(), pct / 100.0).to(values.dtype)
            if out[i] <= _EPS:  # a sparse map whose percentile is 0: fall back to its maximum
                out[i] = row.max()
    return out


def upsample_maps(
    maps: torch.Tensor, size: tuple[int, int] | int, align_corners: bool = True
) -> torch.Tensor:
    """n×h×w → n×H×W, bilinear (spec §4.4 uses ``align_corners=True``)."""
    if isinstance(size, int):
        size = (size, size)
    if maps.ndim != 3:
        raise ValueError(f"expected n×h×w maps, got shape {tuple(maps.shape)}")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=align_corners)[:, 0]


def colorize(
    maps: torch.Tensor, vmin: float | list[float], vmax: float | list[float], cmap: str = "inferno"
) -> torch.Tensor:
    """n×H×W values → n×3×H×W RGB in [0, 1] through a matplotlib colormap over [vmin, vmax].

    A map with vmin == vmax takes the colormap's middle colour instead of dividing by zero.
    """
    from matplotlib import colormaps

    n = maps.shape[0]
    lo = torch.as_tensor(vmin if isinstance(vmin, list) else [vmin] * n, dtype=torch.float32).view(n, 1, 1)
    hi = torch.as_tensor(vmax if isinstance(vmax, list) else [vmax] * n, dtype=torch.float32).view(n, 1, 1)
    span = hi - lo
    x = torch.where(
        span > _EPS,
        (maps.float() - lo) / torch.where(span > _EPS, span, 1.0),
        torch.full_like(maps.float(), 0.5),
    )
    x = x.clamp(0.0, 1.0)
    lut = torch.as_tensor(colormaps[cmap](torch.linspace(0, 1, 256).numpy())[:, :3], dtype=torch.float32)
    idx = (x * 255).round().long()
    return lut[idx].permute(0, 3, 1, 2).contiguous()


def overlay(
    images: torch.Tensor,
    maps: torch.Tensor,
    mode: str = "signed",
    clip_percentile: float | None = 99.0,
    alpha: float = 0.5,
    cmap: str | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Blend heatmaps over images.

    ``images``: n×3×H×W in [0, 1]; ``maps``: n×h×w (upsampled to H×W when smaller).
    Returns ``(n×3×H×W blended images in [0, 1], info)``; ``info`` is :func:`normalize_maps`'s record
    plus ``cmap``, ``alpha``, ``vmin``/``vmax``. With ``mode="none"`` the colour range is each map's own
    min/max (raw values, recorded), since a colormap needs some range.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected n×3×H×W images, got shape {tuple(images.shape)}")
    if maps.shape[0] != images.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps for {images.shape[0]} images")
    maps = upsample_maps(maps, (int(images.shape[-2]), int(images.shape[-1])))
    normed, info = normalize_maps(maps, mode, clip_percentile)
    n = normed.shape[0]
    if mode == "signed":
        vmin: float | list[float] = -1.0
        vmax: float | list[float] = 1.0
        cmap = cmap or "bwr"
    elif mode == "none":
        flat = normed.reshape(n, -1)
        vmin = flat.amin(dim=1).tolist() if n else []
        vmax = flat.amax(dim=1).tolist() if n else []
        cmap = cmap or "inferno"
    else:
        vmin, vmax = 0.0, 1.0
        cmap = cmap or "inferno"
    colours = colorize(normed, vmin, vmax, cmap)
    out = ((1.0 - alpha) * images.float().cpu() + alpha * colours).clamp(0.0, 1.0)
    info.update({"cmap": cmap, "alpha": alpha, "vmin": vmin, "vmax": vmax})
    return out, info


__all__ = [
    "CHANNEL_REDUCTIONS",
    "NORMALIZATIONS",
    "colorize",
    "normalize_maps",
    "overlay",
    "reduce_channels",
    "upsample_maps",
]
