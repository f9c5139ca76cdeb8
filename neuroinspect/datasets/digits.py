"""``colored-digits``: real handwritten digits whose colour tracks the label in train only (Colored MNIST).

The images are scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797
real 8×8 scans from UCI, 0..16 grey levels), upscaled with a cubic spline to ``image_size``
(32 px by default) under a small random affine (shift, scale, rotation), painted in a colour on a
dark noisy background.

- Label (``task="binary"``, the Colored-MNIST protocol): 0 for digits 0-4, 1 for digits 5-9.
  ``task="digits"`` keeps the ten digits as ten classes.
- Colour = the spurious attribute. ``train``: class ``k`` is painted in colour ``k % n_colors`` for
  ``round(align * n_k)`` of its ``n_k`` images (``align=0.9``), the rest spread evenly over the
  other colours. ``val`` / ``test``: colours balanced within every class (independent of the label).
- Split: stratified by digit and seeded (``val_frac``, ``test_frac`` of each digit; the rest is
  train), the same for every split that is loaded with the same ``seed``.
- ``group = label * n_colors + color``, named ``"<class>/<colour>"`` (e.g. ``"0-4/red"``).

:func:`neuroinspect.datasets.groundtruth.counterfactual_grid` re-colours a sample along the spurious
axis and, along the core axis, substitutes a deterministic image of each other class (the same
split's ``i mod n_k``-th image of that class) drawn with the sample's own affine, colour jitter and
noise.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from neuroinspect.datasets.base import DATASETS, Sample
from neuroinspect.datasets.groundtruth import (
    SPLIT_CODES,
    BenchmarkDataset,
    BenchmarkSpec,
    aligned_counts,
    split_counts,
    to_uint8,
)
from neuroinspect.errors import DataError

NAME = "colored-digits"

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.16, 0.12),
    "green": (0.16, 0.80, 0.22),
    "blue": (0.18, 0.38, 0.96),
    "yellow": (0.96, 0.86, 0.12),
    "magenta": (0.90, 0.20, 0.86),
    "cyan": (0.12, 0.84, 0.90),
    "orange": (0.98, 0.56, 0.10),
    "purple": (0.56, 0.26, 0.92),
    "white": (0.95, 0.95, 0.95),
    "pink": (0.98, 0.62, 0.72),
}
TASKS = ("binary", "digits")
_DEFAULT_COLORS = {"binary": ("red", "green"), "digits": tuple(PALETTE)}


@functools.lru_cache(maxsize=1)
def _source() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images (1797, 8, 8) float64 in [0, 1] and digits (1797,) int64 (read-only).

    Read from the file scikit-learn bundles (``sklearn/datasets/data/digits.csv.gz``, what
    ``load_digits`` reads), without importing ``sklearn.datasets`` (seconds of imports); falls back
    to ``load_digits`` if the file is not where it is expected.
    """
    spec = importlib.util.find_spec("sklearn")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if path is not None and path.is_file():
        data = np.loadtxt(path, delimiter=",")
        pixels, target = data[:, :-1], data[:, -1]
    else:  # pragma: no cover - other scikit-learn layouts
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = bunch.data, bunch.target
    images = np.ascontiguousarray(np.asarray(pixels, dtype=np.float64).reshape(-1, 8, 8) / 16.0)
    digits = np.asarray(target, dtype=np.int64).copy()
    if images.shape != (1797, 8, 8) or digits.min() != 0 or digits.max() != 9:
        raise DataError(
            f"scikit-learn's digits file {path} is not the expected 1,797 8x8 images; reinstall scikit-learn."
        )
    images.flags.writeable = False
    digits.flags.writeable = False
    return images, digits


def _colors(params: dict[str, Any]) -> tuple[str, ...]:
    return params["colors"] or _DEFAULT_COLORS.get(params["task"], ())


def _class_names(task: str) -> list[str]:
    return ["0-4", "5-9"] if task == "binary" else [str(d) for d in range(10)]


def _core_names(task: str) -> list[str]:
    return (
        ["digit from 0 to 4", "digit from 5 to 9"] if task == "binary" else [f"digit {d}" for d in range(10)]
    )


def _label_of(digits: np.ndarray, task: str) -> np.ndarray:
    return (digits >= 5).astype(np.int64) if task == "binary" else digits.astype(np.int64)


def _keys_weights(t: np.ndarray) -> list[np.ndarray]:
    """Keys' cubic convolution weights (a = -0.5, "bicubic") of the 4 taps at offsets -1, 0, 1, 2
    for a fractional position ``t`` in [0, 1)."""
    a = -0.5

    def near(d: np.ndarray) -> np.ndarray:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: np.ndarray) -> np.ndarray:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(1 + t), near(t), near(1 - t), far(2 - t)]


def _bicubic(src: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample images ``src`` (n, h, w) at positions ``y``, ``x`` (n, H, W, in source pixel units)
    with bicubic interpolation and zeros outside; returns (n, H, W)."""
    n, h, w = src.shape
    pad = np.zeros((n, h + 6, w + 6))  # 3 zero rows / columns around each digit
    pad[:, 3:-3, 3:-3] = src
    y0, x0 = np.floor(y), np.floor(x)
    wy, wx = _keys_weights(y - y0), _keys_weights(x - x0)
    # taps y0-1 .. y0+2 touch the digit only for y0 in [-2, h]; elsewhere the value is 0
    inside = (y0 >= -2) & (y0 <= h) & (x0 >= -2) & (x0 <= w)
    iy = np.clip(y0, -2, h).astype(np.int64) + 3
    ix = np.clip(x0, -2, w).astype(np.int64) + 3
    base = np.arange(n)[:, None, None] * (h + 6) * (w + 6)
    flat = pad.ravel()
    out = np.zeros(y.shape)
    for m in range(4):
        row = base + (iy + m - 1) * (w + 6)
        acc = np.zeros(y.shape)
        for k in range(4):
            acc += wx[k] * flat[row + ix + k - 1]
        out += wy[m] * acc
    out *= inside
    return out


def _noise(seeds: np.ndarray, size: int) -> np.ndarray:
    """Uniform pixel noise of unit variance, (n, H, W, 3), each sample's from its own seed."""
    out = np.empty((len(seeds), size, size, 3))
    for i, seed in enumerate(seeds):
        out[i] = np.random.default_rng(int(seed)).random((size, size, 3))
    out -= 0.5
    out *= np.sqrt(12.0)
    return out


@DATASETS.register(NAME)
class ColoredDigits(BenchmarkSpec):
    """Colored digits: real handwritten digits, colour = spurious attribute (90% aligned in train)."""

    name = NAME
    domain = "digit"
    default_image_size = 32
    caption_template = "a photo of a {spurious} handwritten {core}"
    core_factor = "digit"
    spurious_factor = "color"
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,  # seeds the split, the colour assignment, the nuisance and the noise
        "image_size": 32,  # pixels per side (the source digits are 8×8)
        "task": "binary",  # binary: digit < 5 vs >= 5 (Colored MNIST); digits: ten classes
        "colors": (),  # the spurious attribute's values; empty: red,green (binary) or ten colours (digits)
        "align": 0.9,  # fraction of a class's training images in the class's own colour
        "val_frac": 0.2,  # fraction of each digit in val
        "test_frac": 0.2,  # fraction of each digit in test
        "digit_size": 0.8,  # side of the digit's 8×8 frame, as a fraction of the image side
        "shift": 0.1,  # translation (uniform ±, fraction of half the image)
        "scale_jitter": 0.1,  # relative size change (uniform ±)
        "rotation": 12.0,  # degrees (uniform ±)
        "color_jitter": 0.06,  # per-channel std of the colour draw
        "background": 0.06,  # background brightness
        "noise": 0.04,  # std of the (uniform) pixel noise
    }
    fixture_sizes: ClassVar[dict[str, Any]] = {"image_size": 16}
    fixture_per_group: ClassVar[int | None] = 6

    @classmethod
    def problems(cls, params: dict[str, Any]) -> list[str]:
        p = params
        out: list[str] = []
        if p["task"] not in TASKS:
            out.append(f"task must be one of {', '.join(TASKS)} (got {p['task']!r}).")
            return out
        colors = _colors(p)
        bad = [c for c in colors if c not in PALETTE]
        if bad:
            out.append(f"unknown colour {bad[0]!r}; choose from {', '.join(PALETTE)}.")
        if len(colors) < 2:
            out.append(f"colors needs at least 2 names (got {','.join(colors)}).")
        if len(set(colors)) != len(colors):
            out.append(f"colors must not repeat a name (got {','.join(colors)}).")
        if not 8 <= p["image_size"] <= 512:
            out.append(f"image_size must be between 8 and 512 pixels (got {p['image_size']}).")
        if p["seed"] < 0:
            out.append(f"seed must be a non-negative integer (got {p['seed']}).")
        if not (p["val_frac"] > 0 and p["test_frac"] > 0 and p["val_frac"] + p["test_frac"] <= 0.8):
            out.append(
                f"val_frac and test_frac must be > 0 and leave at least 20% for train (got {p['val_frac']} and {p['test_frac']})."
            )
        for key, lo, hi in (
            ("align", 0.0, 1.0),
            ("digit_size", 0.2, 1.5),
            ("shift", 0.0, 0.5),
            ("scale_jitter", 0.0, 0.5),
            ("rotation", 0.0, 180.0),
            ("color_jitter", 0.0, 0.5),
            ("background", 0.0, 0.5),
            ("noise", 0.0, 0.5),
        ):
            if not lo <= p[key] <= hi:
                out.append(f"{key} must be between {lo} and {hi} (got {p[key]}).")
        return out

    # -- generation -------------------------------------------------------------------------------
    @classmethod
    def split_indices(cls, params: dict[str, Any]) -> dict[str, np.ndarray]:
        """Source indices (into ``load_digits``) of every split: stratified by digit, sorted, disjoint."""
        _, digits = _source()
        rng = np.random.default_rng([int(params["seed"]), 0xD1617, 99])
        parts: dict[str, list[np.ndarray]] = {s: [] for s in cls.splits}
        for d in range(10):
            idx = rng.permutation(np.nonzero(digits == d)[0])
            n_test = int(round(params["test_frac"] * len(idx)))
            n_val = int(round(params["val_frac"] * len(idx)))
            parts["test"].append(idx[:n_test])
            parts["val"].append(idx[n_test : n_test + n_val])
            parts["train"].append(idx[n_test + n_val :])
        return {s: np.sort(np.concatenate(v)) for s, v in parts.items()}

    @classmethod
    def draw_split(
        cls, split: str, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The split's (label (N,), colour (N,), factors) without rendering; ``factors["source"]`` holds
        the index of each sample's digit image in ``load_digits``."""
        _, digits = _source()
        colors = _colors(params)
        n_colors = len(colors)
        rng = np.random.default_rng([int(params["seed"]), 0xD1617, SPLIT_CODES[split]])
        source = rng.permutation(cls.split_indices(params)[split])
        label = _label_of(digits[source], params["task"])
        n_classes = len(_class_names(params["task"]))
        class_sizes = np.bincount(label, minlength=n_classes)
        if split == "train":
            table = aligned_counts(class_sizes, n_colors, params["align"])
        else:
            table = np.stack([split_counts(int(n_k), n_colors) for n_k in class_sizes])
        color = np.empty(len(source), dtype=np.int64)
        for k in range(n_classes):
            members = rng.permutation(np.nonzero(label == k)[0])
            color[members] = np.repeat(np.arange(n_colors), table[k])
        n = len(source)
        shift, rot = params["shift"], np.deg2rad(params["rotation"])
        factors = {
            "source": source,
            "dx": rng.uniform(-shift, shift, n),
            "dy": rng.uniform(-shift, shift, n),
            "scale": params["digit_size"]
            * rng.uniform(1 - params["scale_jitter"], 1 + params["scale_jitter"], n),
            "theta": rng.uniform(-rot, rot, n),
            "color_jitter": rng.normal(0, params["color_jitter"], (n, 3)),
            "noise_seed": rng.integers(0, 2**63 - 1, n, dtype=np.int64),
        }
        return label, color, factors

    @classmethod
    def render(
        cls, params: dict[str, Any], source: np.ndarray, color: np.ndarray, factors: dict[str, np.ndarray]
    ) -> np.ndarray:
        """Images (n, H, W, 3) uint8 of the digit images ``source`` (n,) in colours ``color`` (n,)
        with the nuisance ``factors`` (each (n, ...)).

        Vectorised over samples and pixels with element-wise operations only, so a sample's pixels
        never depend on the other samples of the batch.
        """
        images, _ = _source()
        size, n = int(params["image_size"]), len(source)
        coords = (np.arange(size) + 0.5) / size * 2 - 1  # output pixel centres in [-1, 1]
        gx, gy = coords[None, None, :], coords[None, :, None]

        def col(key: str) -> np.ndarray:
            return factors[key][:, None, None]

        # inverse affine: output pixel → source position on the 8×8 grid (pixel centres at 0..7)
        c, s = np.cos(col("theta")), np.sin(col("theta"))
        px, py = gx - col("dx"), gy - col("dy")
        sx = ((c * px + s * py) / col("scale") + 1) * 4 - 0.5
        sy = ((c * py - s * px) / col("scale") + 1) * 4 - 0.5
        ink = _bicubic(images[source], sy, sx)
        np.clip(ink, 0.0, 1.0, out=ink)

        palette = np.array([PALETTE[name] for name in _colors(params)], dtype=np.float64)
        rgb = np.clip(palette[color] + factors["color_jitter"], 0.0, 1.0)  # (n, 3)
        bg = params["background"]
        out = np.empty((n, size, size, 3), dtype=np.float64)
        for ch in range(3):
            out[..., ch] = bg + (rgb[:, ch, None, None] - bg) * ink
        out += params["noise"] * _noise(factors["noise_seed"], size)
        return to_uint8(out)

    @classmethod
    def generate(
        cls, split: str, params: dict[str, Any], transform: Callable[[Image.Image], Any] | None
    ) -> BenchmarkDataset:
        _, digits = _source()
        label, color, factors = cls.draw_split(split, params)
        images = cls.render(params, factors["source"], color, factors)
        classes = _class_names(params["task"])
        colors = list(_colors(params))
        n_colors = len(colors)
        samples = [
            Sample(
                path=f"{NAME}/{split}/{i:05d}",
                label=int(label[i]),
                group=int(label[i]) * n_colors + int(color[i]),
                attrs={"digit": int(digits[factors["source"][i]]), "color": colors[color[i]]},
            )
            for i in range(len(label))
        ]
        resolved = dict(params, colors=tuple(colors))
        return BenchmarkDataset(
            images,
            core=label,
            spurious=color,
            factors=factors,
            core_names=_core_names(params["task"]),
            spurious_names=colors,
            name=NAME,
            split=split,
            samples=samples,
            classes=classes,
            prompts=[f"handwritten {c}" for c in _core_names(params["task"])],
            group_names=[f"{k}/{c}" for k in classes for c in colors],
            transform=transform,
            params=resolved,
        )

    @classmethod
    def render_grid(cls, dataset: BenchmarkDataset, indices: np.ndarray) -> np.ndarray:
        params = dataset.params
        n_classes, n_colors = len(dataset.classes), len(dataset.spurious_names)
        size = int(params["image_size"])
        label = dataset.core
        pools = [np.nonzero(label == k)[0] for k in range(n_classes)]
        out = np.empty((len(indices), n_classes, n_colors, size, size, 3), dtype=np.uint8)
        part = {key: v[indices] for key, v in dataset.factors.items()}
        for k in range(n_classes):
            # the sample's own image for its class; otherwise the (i mod n_k)-th image of class k
            partner = np.array(
                [i if label[i] == k else pools[k][i % len(pools[k])] for i in indices], dtype=np.int64
            )
            source = dataset.factors["source"][partner]
            for c in range(n_colors):
                out[:, k, c] = cls.render(params, source, np.full(len(indices), c), part)
        return out
