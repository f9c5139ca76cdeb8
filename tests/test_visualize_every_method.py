"""Every registered visualizer runs through ``neuroinspect visualize`` on a CNN and on a ViT checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuroinspect.cli import main
from neuroinspect.harness.records import read_records
from neuroinspect.methods.visualizers import VISUALIZERS, load_all

load_all()
METHODS = sorted(VISUALIZERS.names())


@pytest.mark.parametrize("arch", ["cnn", "vit"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_from_the_command_line(
    method: str, arch: str, tiny_shapes_ckpt: Path, tiny_shapes_vit_ckpt: Path, tmp_path: Path
) -> None:
    ckpt = tiny_shapes_ckpt if arch == "cnn" else tiny_shapes_vit_ckpt
    cls = VISUALIZERS.get(method)
    argv = ["visualize", "--method", method, "--ckpt", str(ckpt), "--neurons", "3", "--class-idx", "1"]
    argv += ["--dataset", "spurious-shapes", "--split", "val", "--images-per-pair", "1"]
    if getattr(cls, "kind", "") == "synthetic":
        argv += ["--iters", "2"]
    if method == "clip_illusion":
        argv += ["--set", "use_clip=false"]  # no CLIP weights offline; the CLIP path has its own tests
    argv += ["--no-faithfulness", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    meta = json.loads((tmp_path / "out" / method / "3" / "1" / "meta.json").read_text())
    assert meta["method"] == method and meta["neuron"] == 3 and meta["class_idx"] == 1
    assert meta["files"]["images"] and all(
        (tmp_path / "out" / method / "3" / "1" / f).is_file() for f in meta["files"]["images"]
    )
    (record,) = read_records(tmp_path / "out" / "results.jsonl")
    assert record["task"] == "visualization" and record["method"] == {"visualizer": method}
    assert record["model"].startswith("resnet18" if arch == "cnn" else "vit_tiny_patch16_224")
