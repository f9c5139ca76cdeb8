"""``neuroinspect visualize`` end to end: files, contact sheet, records, and the exit-2 paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from neuroinspect.cli import main
from neuroinspect.harness.records import read_records


@pytest.fixture(scope="module")
def ckpt(tiny_shapes_ckpt: Path) -> Path:
    return tiny_shapes_ckpt


def test_clip_illusion_end_to_end(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vis"
    argv = [
        "visualize",
        "--method",
        "clip_illusion",
        "--ckpt",
        str(ckpt),
        "--neurons",
        "3,5",
        "--class-idx",
        "1",
    ]
    argv += [
        "--clip",
        "synthetic-clip:random",
        "--iters",
        "2",
        "--images-per-pair",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "contact sheet" in printed and "2 record(s)" in printed
    for n in (3, 5):
        d = out / "clip_illusion" / str(n) / "1"
        for name in (
            "image_0.png",
            "image_1.png",
            "overlay_0.png",
            "overlay_1.png",
            "masked_0.png",
            "meta.json",
        ):
            assert (d / name).is_file(), name
        assert Image.open(d / "image_0.png").size == (32, 32)  # the model's input size
        meta = json.loads((d / "meta.json").read_text())
        assert meta["neuron"] == n and meta["class_idx"] == 1 and meta["class_name"] == "square"
        assert meta["files"]["images"] == [
            "image_0.png",
            "image_1.png",
        ]  # names in the sidecar = names on disk
        assert len(meta["activations"]) == 2 and len(meta["extra"]["loss_curve"]) == 2
        assert meta["settings"]["iters"] == 2 and meta["settings"]["images_per_pair"] == 2
        assert 0.0 <= meta["metrics"]["specificity_mean"] <= 1.0  # faithfulness metrics
    sheet = Image.open(out / "clip_illusion" / "contact_sheet.png")
    assert sheet.size[1] > 2 * 96  # two rows of upscaled cells
    html = (out / "clip_illusion" / "contact_sheet.html").read_text()
    assert "3/1/image_0.png" in html and "5/1/overlay_1.png" in html
    records = read_records(out / "results.jsonl")
    assert [(r["task"], r["neuron"], r["class_idx"]) for r in records] == [
        ("visualization", 3, 1),
        ("visualization", 5, 1),
    ]
    r = records[0]
    assert (
        r["method"] == {"visualizer": "clip_illusion"}
        and r["dataset"] == "spurious-shapes"
        and r["model"] == "resnet18@32px"
    )
    assert r["config"]["iters"] == 2 and r["config"]["checkpoint_sha256"]
    assert "mean_activation" in r["metrics"] and "faithfulness_specificity_mean" in r["metrics"]
    assert r["provenance"]["versions"]["open_clip_torch"]


def test_ablation_settings_and_unconditioned_folder(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "abl"
    argv = ["visualize", "--method", "clip_illusion", "--ckpt", str(ckpt), "--neurons", "7", "--iters", "1"]
    argv += ["--images-per-pair", "1", "--set", "use_clip=false", "--set", "param=pixel", "--no-faithfulness"]
    assert main([*argv, "--out", str(out), "--results", str(tmp_path / "r.jsonl"), "--no-progress"]) == 0
    meta = json.loads((out / "clip_illusion" / "7" / "none" / "meta.json").read_text())
    assert (
        meta["class_idx"] is None
        and meta["settings"]["use_clip"] is False
        and meta["settings"]["param"] == "pixel"
    )
    assert read_records(tmp_path / "r.jsonl")[0]["class_idx"] is None


def test_other_visualizers_go_through_the_same_command(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "ex"
    argv = ["visualize", "--method", "exemplars", "--ckpt", str(ckpt), "--neurons", "3", "--class-idx", "0"]
    argv += [
        "--dataset",
        "spurious-shapes",
        "--split",
        "val",
        "--images-per-pair",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    meta = json.loads((out / "exemplars" / "3" / "0" / "meta.json").read_text())
    assert meta["method"] == "exemplars" and meta["files"]["images"]
    assert meta["metrics"]["activation_percentile_mean"] is not None  # reference activations from the split
    assert (out / "exemplars" / "contact_sheet.png").is_file()
    assert read_records(out / "results.jsonl")[0]["method"] == {"visualizer": "exemplars"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--neurons", "512", "--class-idx", "0"], "neuron index 512 is out of range"),
        (["--neurons", "1", "--class-idx", "2"], "--class-idx 2 is out of range"),
        (["--neurons", "1", "2", "--class-idx", "0", "1", "0"], "3 --class-idx values for 2 neurons"),
        (["--neurons", "1", "--set", "bogus=1"], "no hyperparameter 'bogus'"),
        (
            ["--neurons", "1", "--class-idx", "0", "--clip", "ViT-B-32:laion2b_s34b_b79k"],
            "not available offline",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(
    ckpt: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("NEUROINSPECT_CLIP_CACHE", str(tmp_path / "empty-clip-cache"))
    argv = [
        "visualize",
        "--method",
        "clip_illusion",
        "--ckpt",
        str(ckpt),
        *extra,
        "--iters",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_unknown_method_and_missing_checkpoint_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["visualize", "--method", "dreamer", "--ckpt", "x.pt", "--neurons", "1", "--out", str(tmp_path)])
        == 2
    )
    assert "unknown visualizer 'dreamer'" in capsys.readouterr().err
    assert (
        main(
            [
                "visualize",
                "--method",
                "clip_illusion",
                "--ckpt",
                str(tmp_path / "no.pt"),
                "--neurons",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
