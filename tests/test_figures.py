"""Figures people look at: contact sheets that fit a screen, labelled bars, a readable mistakes grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuroinspect.methods.visualizers.base import Visualization
from neuroinspect.methods.visualizers.output import MAX_SHEET_WIDTH, contact_sheet, save_visualization


def test_a_contact_sheet_is_a_labelled_grid_that_fits_a_screen(tmp_path: Path) -> None:
    """24 exemplars and their maps of one pair (once a 4996-px strip) wrap under the width limit."""
    n = 24
    vis = Visualization(
        method="exemplars",
        neuron=7,
        class_idx=1,
        images=torch.rand(n, 3, 64, 64),
        activations=[float(a) for a in np.linspace(3, 0, n)],
        activation_maps=torch.rand(n, 64, 64),
        extra={"role": ["top"] * 12 + ["bottom"] * 12},
    )
    saved = [save_visualization(vis, tmp_path, ["triangle", "square"])]
    png, html = contact_sheet(saved, tmp_path / "exemplars", title="exemplars | test")
    sheet = Image.open(png)
    assert sheet.size[0] <= MAX_SHEET_WIDTH
    cell = 128  # 64-px images upscaled to at least 96 px by a whole factor
    assert sheet.size[1] >= 4 * cell  # two lines of (images, maps) rows
    grid = np.asarray(sheet.convert("L"))
    # the left column holds the row labels (dark text on white), not images
    assert (grid[:, :100] < 128).any() and (grid[:, :100] > 250).mean() > 0.9
    assert "7/1/image_23.png" in html.read_text()


def test_group_accuracy_bars_carry_their_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuroinspect.harness import report

    figures = []
    real_save = report._save
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path))
    report.plot_group_accuracy(
        [0.98, 0.61, None], {"neuroinspect": [0.97, 0.804, 0.9]}, ["a/x", "a/y", "b/x"], tmp_path / "g.png"
    )
    texts = sorted(t.get_text() for t in figures[0].axes[0].texts)
    assert texts == sorted(["98", "61", "", "97", "80", "90"])
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_the_mistakes_grid_has_a_readable_title(tmp_path: Path) -> None:
    from neuroinspect.harness.report import plot_image_grid

    imgs = [np.full((32, 32, 3), 90, np.uint8)] * 3
    path = plot_image_grid(imgs, ["called square\nsquare/water"] * 3, tmp_path / "m.png", title="title\nsub")
    grid = np.asarray(Image.open(path).convert("L"))
    title_rows = np.nonzero((grid[:40] < 100).any(axis=1))[0]
    assert title_rows.size and title_rows.max() - title_rows.min() >= 20  # two lines of >= 12-px text
