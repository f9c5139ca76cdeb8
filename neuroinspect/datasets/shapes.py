"""``spurious-shapes``: a Waterbirds-like benchmark rendered procedurally, with known ground truth.

Each image is one object (its **shape** is the class) on a textured scene (its **background** is
the spurious attribute), with nuisance factors drawn per sample: position, scale, rotation, object
colour, background colour / texture phase and pixel noise.

- ``train``: shape ``k`` sits on background ``k % n_backgrounds`` for ``round(align * n_k)`` of
  its ``n_k`` images (``align=0.95`` by default); the rest are spread evenly over the other
  backgrounds (the minority groups). The classes are imbalanced as in Waterbirds
  (``class_ratio=3``: three triangles per square), so the smallest group, squares on water, has 30
  of the 2,400 training images.
- ``val`` / ``test``: group-balanced, ``n // n_groups`` images per group (sizes are rounded down to
  a multiple of the group count).
- ``group = label * n_backgrounds + background``, named ``"<shape>/<background>"``; with the
  default two shapes and two backgrounds that is Waterbirds' ``2 * y + place``:
  0 triangle/water, 1 triangle/land, 2 square/water, 3 square/land.

Shapes are scaled to the same area, so the class is carried by the outline alone. Everything is
drawn from ``numpy.random.Generator`` streams seeded by ``seed`` and the split name, and rendered
with vectorised numpy, so the same parameters give the same bytes. Every sample's nuisance draw is
kept, so :func:`neuroinspect.datasets.groundtruth.counterfactual_grid` can redraw it with every
shape × every background.

Calibration (the defaults): a random-init timm ``resnet18`` trained on the default benchmark at
64 px with the ``default`` preset learns the shapes (average test accuracy >= 85%) but leans on
the background (worst-group accuracy more than 15 points lower), on each of the training seeds
0, 1, 2 and 4; seed 3 learns the shapes early (gap 5 points). ``benchmarks/calibrate_shapes.py``
measures it (figures in the README). The objects are upright,
large and opaque so that the shape is learnable within the preset's 6 epochs; the benchmark's
difficulty comes from the 95% alignment and the class imbalance, not from hiding the object.

Parameters (``--param key=value``): see :attr:`SpuriousShapes.defaults`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from neuroinspect.datasets.base import DATASETS, Sample
from neuroinspect.datasets.groundtruth import (
    SPLIT_CODES,
    BenchmarkDataset,
    BenchmarkSpec,
    aligned_counts,
    assignment_from_table,
    to_uint8,
    weighted_counts,
)

NAME = "spurious-shapes"
_CHUNK = 256  # samples rendered per vectorised batch (bounds memory at ~10 float arrays of CHUNK×H×W)


# -- shapes: radius as a function of angle, for outlines that are star-shaped around the centre -----
def _fold(phi: np.ndarray, period: float) -> np.ndarray:
    """Angle folded onto [0, period/2] by the shape's rotational and mirror symmetry."""
    t = phi - period * np.floor(phi * (1.0 / period))  # np.mod, without its slow float path
    return np.minimum(t, period - t)


def _segment_radius(psi: np.ndarray, p1: tuple[float, float], p2: tuple[float, float]) -> np.ndarray:
    """Distance from the origin, along direction ``psi``, to the line through ``p1`` and ``p2``."""
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    num = p1[0] * dy - p1[1] * dx
    return num / (np.cos(psi) * dy - np.sin(psi) * dx)


def _polygon(n: int) -> Callable[[np.ndarray], np.ndarray]:
    alpha = math.pi / n
    inner = (math.cos(alpha) ** 2, math.cos(alpha) * math.sin(alpha))  # mid-point of an edge
    return lambda phi: _segment_radius(_fold(phi, 2 * alpha), (1.0, 0.0), inner)


def _star(points: int, inner_ratio: float) -> Callable[[np.ndarray], np.ndarray]:
    alpha = math.pi / points
    inner = (inner_ratio * math.cos(alpha), inner_ratio * math.sin(alpha))
    return lambda phi: _segment_radius(_fold(phi, 2 * alpha), (1.0, 0.0), inner)


def _cross(arm: float) -> Callable[[np.ndarray], np.ndarray]:
    # A plus sign of half-length 1 and half-width ``arm``: in the octant [0, pi/4] the outline is
    # the arm's end (x = 1) and then its side (y = arm).
    def radius(phi: np.ndarray) -> np.ndarray:
        psi = _fold(phi, np.pi / 2)
        return np.minimum(1.0 / np.cos(psi), arm / np.maximum(np.sin(psi), 1e-9))

    return radius


SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "triangle": _polygon(3),
    "square": _polygon(4),
    "pentagon": _polygon(5),
    "hexagon": _polygon(6),
    "circle": lambda phi: np.ones_like(phi),
    "star": _star(5, 0.45),
    "cross": _cross(0.38),
}


def _area_scale(radius: Callable[[np.ndarray], np.ndarray]) -> float:
    """Factor that gives the outline the area of the unit circle (pi), so size says nothing about class."""
    phi = (np.arange(8192) + 0.5) * (2 * np.pi / 8192)
    area = 0.5 * float(np.mean(radius(phi) ** 2)) * 2 * np.pi
    return float(np.sqrt(np.pi / area))


_SHAPE_SCALE = {name: _area_scale(fn) for name, fn in SHAPES.items()}
# rotation that stands each shape upright (a vertex or a side at the top; y points down)
_UPRIGHT = {"triangle": -math.pi / 2, "square": math.pi / 4, "pentagon": -math.pi / 2, "star": -math.pi / 2}


# -- backgrounds: two colours mixed by a texture t in [0, 1] -----------------------------------------
# Each texture reads the sample's texture coordinates (u, v rotated by a per-sample angle, in
# [-1, 1]), its phases, its frequency factor and two smooth random fields (low: ~6 blobs across,
# mid: ~12 across), so one sample keeps the same texture draw on every background.
def _tex_water(u, v, ph, f, low, mid):  # noqa: ANN001, ANN202
    waves = np.sin(2 * np.pi * f * 3.5 * (v + 0.10 * np.sin(2 * np.pi * 1.3 * u + ph[..., 0])) + ph[..., 1])
    return np.clip(0.5 + 0.32 * waves + 0.18 * low + 0.08 * mid, 0, 1)


def _tex_land(u, v, ph, f, low, mid):  # noqa: ANN001, ANN202
    blotch = 1.0 / (1.0 + np.exp(-3.0 * (low + 0.6 * mid)))
    return np.clip(blotch + 0.06 * np.sin(2 * np.pi * f * 9 * (u + 0.5 * v) + ph[..., 0]), 0, 1)


def _tex_sky(u, v, ph, f, low, mid):  # noqa: ANN001, ANN202
    clouds = np.clip(0.9 * (low + 0.5 * mid) - 0.2, 0, 1)
    return np.clip(0.25 * (v + 1) * 0.5 + clouds, 0, 1)


def _tex_desert(u, v, ph, f, low, mid):  # noqa: ANN001, ANN202
    dunes = np.sin(2 * np.pi * f * 2.2 * (u + 0.6 * v + 0.12 * low) + ph[..., 0])
    return np.clip(0.5 + 0.4 * dunes + 0.05 * mid, 0, 1)


def _tex_snow(u, v, ph, f, low, mid):  # noqa: ANN001, ANN202
    drift = 0.5 + 0.25 * low + 0.1 * np.sin(2 * np.pi * f * 1.5 * v + ph[..., 0])
    return np.clip(drift + np.where(mid > 1.2, 0.12, 0.0).astype(mid.dtype), 0, 1)


def _tex_forest(u, v, ph, f, low, mid):  # noqa: ANN001, ANN202
    trunks = np.sin(2 * np.pi * f * 4.0 * (u + 0.05 * low) + ph[..., 0])
    return np.clip(1.0 / (1.0 + np.exp(-6.0 * (trunks - 0.55))) + 0.1 * mid, 0, 1)


RGB = tuple[float, float, float]
BACKGROUNDS: dict[str, tuple[RGB, RGB, Callable[..., np.ndarray]]] = {
    "water": ((0.10, 0.28, 0.58), (0.36, 0.62, 0.86), _tex_water),
    "land": ((0.26, 0.44, 0.15), (0.52, 0.38, 0.20), _tex_land),
    "sky": ((0.46, 0.68, 0.92), (0.96, 0.96, 0.98), _tex_sky),
    "desert": ((0.78, 0.62, 0.36), (0.95, 0.86, 0.62), _tex_desert),
    "snow": ((0.78, 0.83, 0.90), (0.98, 0.98, 1.00), _tex_snow),
    "forest": ((0.07, 0.24, 0.09), (0.32, 0.21, 0.10), _tex_forest),
}


def _interp_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) weights that upsample a grid×grid field to size×size with smoothstep blending."""
    pos = (np.arange(size) + 0.5) / size * (grid - 1)
    i0 = np.minimum(np.floor(pos).astype(int), grid - 2)
    frac = pos - i0
    w = frac * frac * (3 - 2 * frac)
    m = np.zeros((size, grid))
    m[np.arange(size), i0] = 1 - w
    m[np.arange(size), i0 + 1] = w
    return m


def _random_fields(seeds: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-sample random fields: ``low`` and ``mid`` (n, H, W) smooth textures of roughly unit
    variance, and ``noise`` (3, n, H, W) pixel noise, uniform with unit variance. Each sample's fields
    come from its own seed, one sample at a time, so they never depend on the batch it is rendered in."""
    m_low, m_mid = _interp_matrix(size, 6), _interp_matrix(size, 12)
    n = len(seeds)
    low = np.empty((n, size, size), dtype=np.float32)
    mid = np.empty((n, size, size), dtype=np.float32)
    noise = np.empty((3, n, size, size), dtype=np.float32)
    for i, s in enumerate(seeds):
        rng = np.random.default_rng(int(s))
        low[i] = m_low @ rng.standard_normal((6, 6)) @ m_low.T
        mid[i] = m_mid @ rng.standard_normal((12, 12)) @ m_mid.T
        noise[:, i] = rng.random((3, size, size), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(np.sqrt(12.0))
    return low, mid, noise


@DATASETS.register(NAME)
class SpuriousShapes(BenchmarkSpec):
    """Synthetic Waterbirds: shape = class, background = spurious attribute (95% aligned in train)."""

    name = NAME
    domain = "shape"
    default_image_size = 64
    caption_template = "a photo of a {core} on {spurious}"
    core_factor = "shape"
    spurious_factor = "background"
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,  # seeds every draw (split assignment, nuisance, noise)
        "image_size": 64,  # pixels per side
        "n_train": 2400,
        "n_val": 600,  # rounded down to a multiple of the group count
        "n_test": 2000,  # rounded down to a multiple of the group count
        "align": 0.95,  # fraction of a class's training images on its own background
        "class_ratio": 3.0,  # train only: images of the first class per image of the last (1: balanced)
        "shapes": ("triangle", "square"),  # the classes, in label order
        # the spurious attribute's values; shape k's own background is backgrounds[k % n]
        "backgrounds": ("water", "land"),
        "shape_size": 0.45,  # radius of the object's equal-area circle, as a fraction of half the image
        "size_jitter": 0.25,  # relative spread of the object's size (uniform ±)
        "position_jitter": 0.25,  # object centre offset from the image centre (uniform ±, fraction of half the image)
        "rotation": 0.0,  # object rotation from upright (uniform ±, degrees; 180: any angle)
        "contrast": 1.0,  # mean object opacity over the background (0 invisible .. 1 opaque)
        "contrast_jitter": 0.0,  # per-sample opacity spread (uniform ±, clipped to [0, 1])
        "dark_objects": 0.5,  # fraction of dark objects (the rest are light)
        "color_jitter": 0.06,  # per-channel std of the object and background colour draws
        "background_strength": 1.0,  # 1: full scene; 0: neutral grey (removes the spurious cue)
        "noise": 0.06,  # std of the (uniform) pixel noise, in [0, 1] intensity units
    }
    fixture_sizes: ClassVar[dict[str, Any]] = {"n_train": 20, "n_val": 8, "n_test": 8, "image_size": 32}

    @classmethod
    def problems(cls, params: dict[str, Any]) -> list[str]:
        out: list[str] = []
        p = params
        bad_shapes = [s for s in p["shapes"] if s not in SHAPES]
        if bad_shapes:
            out.append(f"unknown shape {bad_shapes[0]!r}; choose from {', '.join(SHAPES)}.")
        bad_bgs = [b for b in p["backgrounds"] if b not in BACKGROUNDS]
        if bad_bgs:
            out.append(f"unknown background {bad_bgs[0]!r}; choose from {', '.join(BACKGROUNDS)}.")
        for key in ("shapes", "backgrounds"):
            if len(set(p[key])) != len(p[key]):
                out.append(f"{key} must not repeat a name (got {','.join(p[key])}).")
            if len(p[key]) < 2:
                out.append(f"{key} needs at least 2 names (got {','.join(p[key])}).")
        if not 16 <= p["image_size"] <= 512:
            out.append(f"image_size must be between 16 and 512 pixels (got {p['image_size']}).")
        groups = len(p["shapes"]) * len(p["backgrounds"])
        if p["n_train"] < len(p["shapes"]):
            out.append(
                f"n_train must be at least the number of shapes, {len(p['shapes'])} (got {p['n_train']})."
            )
        for key in ("n_val", "n_test"):
            if p[key] < groups:
                out.append(
                    f"{key} must be at least the number of groups, {groups}, for group-balanced splits (got {p[key]})."
                )
        if p["seed"] < 0:
            out.append(f"seed must be a non-negative integer (got {p['seed']}).")
        for key, lo, hi in (
            ("align", 0.0, 1.0),
            ("contrast", 0.0, 1.0),
            ("contrast_jitter", 0.0, 1.0),
            ("dark_objects", 0.0, 1.0),
            ("background_strength", 0.0, 1.0),
            ("size_jitter", 0.0, 0.9),
            ("color_jitter", 0.0, 0.5),
            ("noise", 0.0, 0.5),
            ("position_jitter", 0.0, 0.9),
            ("rotation", 0.0, 180.0),
        ):
            if not lo <= p[key] <= hi:
                out.append(f"{key} must be between {lo} and {hi} (got {p[key]}).")
        if not 1.0 <= p["class_ratio"] <= 20.0:
            out.append(f"class_ratio must be between 1 and 20 (got {p['class_ratio']}).")
        if not 0.05 <= p["shape_size"] <= 0.6:
            out.append(f"shape_size must be between 0.05 and 0.6 of half the image (got {p['shape_size']}).")
        return out

    # -- generation -------------------------------------------------------------------------------
    @classmethod
    def split_size(cls, split: str, params: dict[str, Any]) -> int:
        n = int(params[f"n_{split}"])
        if split == "train":
            return n
        groups = len(params["shapes"]) * len(params["backgrounds"])
        return n // groups * groups

    @classmethod
    def draw_split(
        cls, split: str, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The split's (shape (N,), background (N,), factors) without rendering any pixel."""
        k, b = len(params["shapes"]), len(params["backgrounds"])
        rng = np.random.default_rng([int(params["seed"]), 0x5A9E5, SPLIT_CODES[split]])
        n = cls.split_size(split, params)
        if split == "train":
            # class k gets a share proportional to class_ratio ** (-k / (K - 1)): class 0 has
            # class_ratio times as many training images as the last class
            shares = params["class_ratio"] ** (-np.arange(k) / (k - 1))
            table = aligned_counts(weighted_counts(n, shares), b, params["align"])
        else:
            table = np.full((k, b), n // (k * b), dtype=np.int64)
        shape, background = assignment_from_table(table, rng)
        size_j, pos_j, col_j = params["size_jitter"], params["position_jitter"], params["color_jitter"]
        rot = math.radians(params["rotation"])
        light = rng.random(n) >= params["dark_objects"]  # light or dark object, independent of class
        base = np.where(light[:, None], 0.88, 0.14)
        factors = {
            "cx": rng.uniform(-pos_j, pos_j, n),
            "cy": rng.uniform(-pos_j, pos_j, n),
            "scale": params["shape_size"] * rng.uniform(1 - size_j, 1 + size_j, n),
            "theta": rng.uniform(-rot, rot, n)
            + np.array([_UPRIGHT.get(name, 0.0) for name in params["shapes"]])[shape],
            "object_rgb": np.clip(base + rng.normal(0, col_j, (n, 3)), 0, 1),
            "bg_tint": rng.normal(0, col_j, (n, 3)),
            "bg_phase": rng.uniform(0, 2 * np.pi, (n, 2)),
            "bg_freq": rng.uniform(0.85, 1.15, n),
            "bg_angle": rng.uniform(-0.35, 0.35, n),
            "noise_seed": rng.integers(0, 2**63 - 1, n, dtype=np.int64),
            "opacity": np.clip(params["contrast"] + rng.uniform(-1, 1, n) * params["contrast_jitter"], 0, 1),
        }
        return shape, background, factors

    @classmethod
    def render(
        cls,
        params: dict[str, Any],
        shape: np.ndarray,
        background: np.ndarray,
        factors: dict[str, np.ndarray],
        fields: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Images (n, H, W, 3) uint8 for shape ids (n,), background ids (n,), the factors (each (n, ...))
        and the random fields from :func:`_random_fields`.

        Computed in float32, channel-first (3, n, H, W) so that every operation is element-wise on
        contiguous planes; a sample's pixels depend only on its own factors and fields.
        """
        f32 = np.float32
        size = int(params["image_size"])
        low, mid, noise = fields
        n = len(shape)
        coords = ((np.arange(size) + 0.5) / size * 2 - 1).astype(f32)
        x, y = coords[None, None, :], coords[None, :, None]

        def col(key: str, channel: int | None = None) -> np.ndarray:
            # a per-sample factor (or one channel of it) as (n, 1, 1) float32
            arr = factors[key] if channel is None else factors[key][:, channel]
            return arr.astype(f32)[:, None, None]

        # background: texture in rotated coordinates, mixing two colours; tint; strength
        ca_, sa_ = np.cos(col("bg_angle")), np.sin(col("bg_angle"))
        u = ca_ * x + sa_ * y
        v = ca_ * y - sa_ * x
        ph = factors["bg_phase"].astype(f32)[:, None, None, :]
        freq = col("bg_freq")
        scene = np.empty((3, n, size, size), dtype=f32)
        for b_id, b_name in enumerate(params["backgrounds"]):
            sel = background == b_id
            if not sel.any():
                continue
            c0, c1, texture = BACKGROUNDS[b_name]
            t = texture(u[sel], v[sel], ph[sel], freq[sel], low[sel], mid[sel]).astype(f32)
            for ch in range(3):
                scene[ch, sel] = f32(c0[ch]) + f32(c1[ch] - c0[ch]) * t
        beta = f32(params["background_strength"])
        for ch in range(3):
            scene[ch] += col("bg_tint", ch)
            if beta != 1:
                scene[ch] *= beta
                scene[ch] += f32(0.5) * (1 - beta)

        # object: radial outline in the object's frame, ~1 px anti-aliased edge, opacity `contrast`
        px = x - col("cx")
        py = y - col("cy")
        ct, st = np.cos(col("theta")), np.sin(col("theta"))
        lx = ct * px + st * py
        ly = ct * py - st * px
        r = np.hypot(lx, ly)
        phi = np.arctan2(ly, lx)
        outline = np.empty((n, size, size), dtype=f32)
        for s_id, s_name in enumerate(params["shapes"]):
            sel = shape == s_id
            if sel.any():
                outline[sel] = SHAPES[s_name](phi[sel]) * f32(_SHAPE_SCALE[s_name])
        outline *= col("scale")
        mask = r
        mask -= outline
        mask *= f32(-size / 2)
        mask += f32(0.5)
        np.clip(mask, 0, 1, out=mask)
        mask *= col("opacity")
        amp = f32(params["noise"])
        for ch in range(3):
            plane = scene[ch]
            plane += (col("object_rgb", ch) - plane) * mask
            plane += noise[ch] * amp
        return to_uint8(scene).transpose(1, 2, 3, 0)

    @classmethod
    def generate(
        cls, split: str, params: dict[str, Any], transform: Callable[[Image.Image], Any] | None
    ) -> BenchmarkDataset:
        shape, background, factors = cls.draw_split(split, params)
        n, size = len(shape), int(params["image_size"])
        images = np.empty((n, size, size, 3), dtype=np.uint8)  # filled chunk by chunk
        for start in range(0, n, _CHUNK):
            sl = slice(start, start + _CHUNK)
            part = {k: v[sl] for k, v in factors.items()}
            fields = _random_fields(part["noise_seed"], size)
            images[sl] = cls.render(params, shape[sl], background[sl], part, fields)
        shapes, bgs = list(params["shapes"]), list(params["backgrounds"])
        nb = len(bgs)
        samples = [
            Sample(
                path=f"{NAME}/{split}/{i:05d}",
                label=int(shape[i]),
                group=int(shape[i]) * nb + int(background[i]),
                attrs={"shape": shapes[shape[i]], "background": bgs[background[i]]},
            )
            for i in range(n)
        ]
        return BenchmarkDataset(
            images,
            core=shape,
            spurious=background,
            factors=factors,
            core_names=shapes,
            spurious_names=bgs,
            name=NAME,
            split=split,
            samples=samples,
            classes=shapes,
            prompts=shapes,
            group_names=[f"{s}/{b}" for s in shapes for b in bgs],
            transform=transform,
            params=params,
        )

    @classmethod
    def render_grid(cls, dataset: BenchmarkDataset, indices: np.ndarray) -> np.ndarray:
        params = dataset.params
        k, b = len(params["shapes"]), len(params["backgrounds"])
        size = int(params["image_size"])
        out = np.empty((len(indices), k, b, size, size, 3), dtype=np.uint8)
        for start in range(0, len(indices), _CHUNK):
            idx = indices[start : start + _CHUNK]
            part = {key: v[idx] for key, v in dataset.factors.items()}
            fields = _random_fields(part["noise_seed"], size)
            for c in range(k):
                for s in range(b):
                    ids = np.full(len(idx), c), np.full(len(idx), s)
                    out[start : start + len(idx), c, s] = cls.render(params, ids[0], ids[1], part, fields)
        return out
