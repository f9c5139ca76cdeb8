"""Human-readable outputs of an experiment: PNG figures and a Markdown report.

Everything here takes plain data (dicts, arrays, lists), so the report does not reach back up the
pipeline: the experiment runner computes, this module draws and writes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.fileio import atomic_write_bytes


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def pct(x: float | None, digits: int = 1) -> str:
    """0.8312 → ``"83.1"``; ``None`` → ``"–"``."""
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.{digits}f}"


def plot_group_accuracy(
    before: Sequence[float | None],
    after: Mapping[str, Sequence[float | None]],
    group_names: Sequence[str],
    path: str | Path,
    title: str = "Accuracy per group, before and after each edit",
) -> Path:
    """Grouped bars: one cluster per group, one bar for the original model and one per editor."""
    plt = _pyplot()
    series = {"original": before, **dict(after)}
    n_groups, n_series = len(group_names), len(series)
    width = 0.8 / n_series
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * n_groups + 2), 3.8))
    cmap = plt.get_cmap("tab10")
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else 100 * v for v in values]
        xs = np.arange(n_groups) + (i - (n_series - 1) / 2) * width
        ax.bar(xs, vals, width=width, label=label, color="0.35" if label == "original" else cmap(i % 10))
    ax.set_xticks(np.arange(n_groups))
    ax.set_xticklabels(group_names, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(4, n_series), loc="lower center", bbox_to_anchor=(0.5, 1.08))
    return _save(fig, path)


def plot_image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str | Path,
    title: str = "",
    ncols: int = 6,
) -> Path:
    """A grid of H×W×3 uint8 (or [0, 1] float) images with a caption under each."""
    plt = _pyplot()
    n = max(1, len(images))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows + (0.4 if title else 0)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_neuron_truth(
    spurious_ratio: np.ndarray,
    weight: np.ndarray,
    highlighted: Mapping[str, Sequence[int]],
    path: str | Path,
    class_name: str = "c",
) -> Path:
    """Scatter of every neuron: ground-truth spurious ratio (x) against its decision weight for class c (y);
    the neurons each finder picked are highlighted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.scatter(spurious_ratio, weight, s=6, c="0.7", label="all neurons")
    markers = ["o", "s", "^", "D", "v", "P"]
    cmap = plt.get_cmap("tab10")
    for i, (label, idx) in enumerate(highlighted.items()):
        idx = list(idx)
        if idx:
            ax.scatter(
                spurious_ratio[idx],
                weight[idx],
                s=40,
                marker=markers[i % len(markers)],
                facecolors="none",
                edgecolors=cmap(i),
                linewidths=1.4,
                label=label,
            )
    ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("ground truth: spurious ratio (1 = background only, 0 = shape only)")
    ax.set_ylabel(f"decision weight for class {class_name}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
