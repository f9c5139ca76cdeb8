"""The README's command-line promises, run (not only parsed) on tiny settings.

``evaluate --ci``, ``edit --gamma X | auto``, ``--ref`` (debug and edit), ``--variant waterbirds`` on the
Waterbirds layout, ``demo`` on ``colored-digits``, leaderboards built from ``evaluation`` records, a
corrupt image met by a command, and the counterfactual's step cap. (``demo --seed`` and a bench config
that loads a checkpoint: ``test_pipeline_invariants.py``; the benchmark scripts:
``test_benchmark_smoke.py``.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPES
from test_pipeline_invariants import gamma_by_hand

from neuroinspect.cli import main
from neuroinspect.harness.checkpoint import load_checkpoint, save_checkpoint
from neuroinspect.harness.evaluation import evaluate_checkpoint
from neuroinspect.harness.features import FeatureCache
from neuroinspect.harness.records import read_records
from neuroinspect.leaderboards import build_tables, load_records

MIXED = {**TINY_SHAPES, "n_test": 32}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def mixed_ckpts(tiny_shapes_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two "seeds" of a tiny model whose predictions are mixed inside every (group, class) cell.

    The random-init model says one class for everything, which gives a zero-width bootstrap; here the
    decision layer thresholds a random projection of the features at its median (seeded per model).
    """
    work = tmp_path_factory.mktemp("mixed")
    ckpt = load_checkpoint(tiny_shapes_ckpt)
    _, fs = evaluate_checkpoint(
        ckpt, split="test", params=MIXED, n_boot=0, cache=FeatureCache(work / "cache"), show_progress=False
    )
    paths = []
    for seed in (0, 1):
        v = torch.randn(fs.num_features, generator=torch.Generator().manual_seed(seed))
        proj = fs.features @ v
        surface = ckpt.surface
        with torch.no_grad():
            surface.decision.weight.zero_()
            surface.decision.weight[1] = v
            surface.decision.bias.copy_(torch.tensor([0.0, -float(proj.median())]))
        paths.append(
            save_checkpoint(
                work / f"s{seed}.pt",
                surface,
                ckpt.classes,
                "spurious-shapes",
                MIXED,
                train_config={"seed": seed, "epochs": 1},
            )
        )
    return paths


# -- evaluate --------------------------------------------------------------------------------------------
def test_evaluate_ci_sets_the_interval_level(
    mixed_ckpts: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = {}
    for level in ("0.5", "0.95"):
        argv = ["evaluate", "--ckpt", str(mixed_ckpts[0]), "--n-boot", "400", "--ci", level]
        rc, out, _ = run([*argv, "--json", str(tmp_path / f"{level}.json"), "--no-progress"], capsys)
        assert rc == 0 and f"{round(100 * float(level))}% CI" in out
        metrics[level] = json.loads((tmp_path / f"{level}.json").read_text())
        assert metrics[level]["ci_level"] == float(level)
    acc = metrics["0.5"]["test_acc"]
    (lo50, hi50), (lo95, hi95) = metrics["0.5"]["ci"]["test_acc"], metrics["0.95"]["ci"]["test_acc"]
    assert 0 < acc < 1 and lo95 <= lo50 <= acc <= hi50 <= hi95
    assert hi50 - lo50 < hi95 - lo95  # a 50% interval is narrower than a 95% one
    rc, _, err = run(["evaluate", "--ckpt", str(mixed_ckpts[0]), "--ci", "95"], capsys)
    assert rc == 2 and "--ci 95.0 must be between 0 and 1" in err


def test_leaderboard_from_evaluation_records(
    mixed_ckpts: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two models trained with seeds 0 and 1, each evaluated with `evaluate --out`: one row over two seeds."""
    results = tmp_path / "evaluation.jsonl"
    accs = []
    for path in mixed_ckpts:
        argv = ["evaluate", "--ckpt", str(path), "--n-boot", "0", "--out", str(results), "--no-progress"]
        assert run(argv, capsys)[0] == 0
    for rec in read_records(results):
        accs.append(rec["metrics"]["test_acc"])
    assert accs[0] != accs[1]
    rc, out, _ = run(["leaderboard", "build", str(results), "--out", str(tmp_path / "lb")], capsys)
    assert rc == 0 and "Evaluation" in out
    (table,) = [t for t in build_tables(load_records([results])) if t.task == "evaluation"]
    (row,) = table.rows
    assert row.n_seeds == 2 and sorted(row.seeds) == [0, 1]
    assert row.metrics["test_acc"].mean == pytest.approx(sum(accs) / 2)
    assert row.metrics["test_acc"].std == pytest.approx(abs(accs[0] - accs[1]) / np.sqrt(2))


# -- edit: γ, --ref, --variant ------------------------------------------------------------------------------
def _edit(ckpt: Path, out: Path, *extra: str) -> list[str]:
    argv = ["edit", "--dataset", "spurious-shapes", "--ckpt", str(ckpt), "--class-idx", "1"]
    argv += ["--neurons", "3", "7", "11", "--epochs", "2", "--lr", "0.05", "--batch-size", "8"]
    return [*argv, "--n-boot", "0", "--out", str(out), "--no-progress", *extra]


def _val_mean(ckpt: Path, tmp: Path, class_idx: int | None) -> np.ndarray:
    _, val = evaluate_checkpoint(ckpt, split="val", n_boot=0, cache=FeatureCache(tmp), show_progress=False)
    feats = val.features if class_idx is None else val.features[val.labels == class_idx]
    return feats.double().mean(0).numpy()


def test_edit_gamma_number_and_auto(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records: dict[str, dict[str, Any]] = {}
    for name, gamma in (("x", "1.25"), ("auto", "auto")):
        out = tmp_path / name
        rc, printed, _ = run(_edit(tiny_shapes_ckpt, out, "--gamma", gamma, "--seed", "0"), capsys)
        assert rc == 0
        (records[name],) = read_records(out / "results.jsonl")
        if gamma != "auto":
            assert f"gamma = {float(gamma):.4f}," in printed
    x = records["x"]
    assert x["config"]["gamma"] == 1.25 and x["metrics"]["gamma_used"] == 1.25
    assert load_checkpoint(tmp_path / "x" / "edited.pt").extra["edit_settings"]["gamma"] == 1.25
    auto = records["auto"]
    assert auto["metrics"]["gamma_used"] != pytest.approx(1.25)
    # the target reaches the loss: same seed and data, another γ, another layer
    wx = load_checkpoint(tmp_path / "x" / "edited.pt").surface.decision.weight
    wa = load_checkpoint(tmp_path / "auto" / "edited.pt").surface.decision.weight
    assert not torch.allclose(wx, wa)
    decision = load_checkpoint(tiny_shapes_ckpt).surface.decision
    expected = gamma_by_hand(decision, _val_mean(tiny_shapes_ckpt, tmp_path / "c", 1), [3, 7, 11], 1)
    other = gamma_by_hand(decision, _val_mean(tiny_shapes_ckpt, tmp_path / "c", None), [3, 7, 11], 1)
    # γ is within 1e-5 of 1 on this random-init model: compare γ − 1, which the choice of mean changes
    assert abs((other - 1) / (expected - 1) - 1) > 0.1
    assert auto["config"]["gamma"] == "auto"
    assert auto["metrics"]["gamma_used"] - 1 == pytest.approx(expected - 1, rel=1e-6)
    for bad, message in (("abc", "neither a number nor 'auto'"), ("0", "--gamma must be positive")):
        rc, _, err = run(_edit(tiny_shapes_ckpt, tmp_path / f"bad{bad}", "--gamma", bad), capsys)
        assert rc == 2 and message in err and "Traceback" not in err


def test_edit_ref_uses_the_references_rules(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_edit(tiny_shapes_ckpt, tmp_path / "ref", "--ref"), capsys)[0] == 0
    (rec,) = read_records(tmp_path / "ref" / "results.jsonl")
    assert rec["config"]["ref"] is True
    assert rec["metrics"]["edit_info"]["selection"]["first_epoch"] == 1  # epoch 0 is never kept
    assert rec["metrics"]["selected_epoch"] != 1  # epochs count from 1: the first is never kept
    # γ from the reference's all-class mean (γ − 1 compared: γ is within 1e-5 of 1 here)
    decision = load_checkpoint(tiny_shapes_ckpt).surface.decision
    expected = gamma_by_hand(decision, _val_mean(tiny_shapes_ckpt, tmp_path / "c", None), [3, 7, 11], 1)
    own_class = gamma_by_hand(decision, _val_mean(tiny_shapes_ckpt, tmp_path / "c", 1), [3, 7, 11], 1)
    assert abs((own_class - 1) / (expected - 1) - 1) > 0.1
    assert rec["metrics"]["gamma_used"] - 1 == pytest.approx(expected - 1, rel=1e-6)


def test_debug_ref_votes_and_imp_like_the_reference(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["debug", "--dataset", "spurious-shapes", "--ckpt", str(tiny_shapes_ckpt), "--class-idx", "1"]
    found = {}
    for name, extra in (("default", []), ("ref", ["--ref"])):
        assert run([*argv, "--out", str(tmp_path / name), "--no-progress", *extra], capsys)[0] == 0
        found[name] = json.loads((tmp_path / name / "debug.json").read_text())
    ref, default = found["ref"], found["default"]
    assert ref["settings"]["ref"] is True and ref["imp_reference"] == "all_mean"
    assert default["imp_reference"] == "class_mean" and ref["settings"]["denominator"] == "rows"
    # imp (and so γ) on the all-class mean differs from imp on the class's own mean; compared per
    # neuron, since γ over debug's first 5 neurons can be 1 for both when one of them is dead (imp = 1)
    ref_imp = {r["neuron"]: r["imp"] for r in ref["insufficient"]}
    own_imp = {r["neuron"]: r["imp"] for r in default["insufficient"]}
    shared = [n for n in ref_imp if n in own_imp and own_imp[n] != 1.0]
    assert shared and any(ref_imp[n] != pytest.approx(own_imp[n], abs=1e-9) for n in shared)


@pytest.fixture(scope="module")
def waterbirds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The Waterbirds fixture tree (the official layout) and a random-init 32 px resnet18 for it."""
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.models import create_model

    work = tmp_path_factory.mktemp("waterbirds")
    root = get_dataset("waterbirds").make_fixture(work / "data")
    classes = get_dataset("waterbirds").load(root, "val", None).classes
    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=2, image_size=32)
    return root, save_checkpoint(work / "wb.pt", surface, classes, "waterbirds", {})


def test_edit_variant_waterbirds_on_the_waterbirds_layout(
    waterbirds: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, ckpt = waterbirds
    argv = ["edit", "--dataset", "waterbirds", "--root", str(root), "--ckpt", str(ckpt), "--class-idx", "1"]
    argv += ["--neurons", "6", "15", "149", "--variant", "waterbirds", "--epochs", "3", "--n-boot", "0"]
    argv += ["--results", str(tmp_path / "results.jsonl"), "--out", str(tmp_path / "wb"), "--no-progress"]
    rc, out, _ = run(argv, capsys)
    assert rc == 0 and "variant = waterbirds" in out
    (rec,) = read_records(tmp_path / "results.jsonl")
    cfg, after = rec["config"], rec["metrics"]["after"]
    assert cfg["variant"] == "waterbirds" and cfg["selection"] == "val_worst_class_acc"
    assert cfg["neurons"] == [6, 15, 149] and after["worst_group_acc"] is not None
    assert after["mean_acc_train_weighted"] is not None  # Waterbirds' convention: train group weights
    # the selected epoch is the one with the best validation worst-class accuracy (then accuracy)
    history = json.loads((tmp_path / "wb" / "edit.json").read_text())["history"]
    best = max(history, key=lambda h: (h["val_worst_class_acc"], h["val_acc"], -h["epoch"]))
    assert rec["metrics"]["selected_epoch"] == best["epoch"]
    assert all(h["ratio"] is not None for h in history)


def test_a_corrupt_image_stops_a_command_with_one_line_naming_it(
    waterbirds: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroinspect.datasets import get_dataset

    root, ckpt = waterbirds
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    broken = get_dataset("waterbirds").load(copy, "test", None).samples[3].path
    Path(broken).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    argv = ["evaluate", "--dataset", "waterbirds", "--root", str(copy), "--ckpt", str(ckpt), "--no-progress"]
    rc, _, err = run(argv, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert broken in err and "corrupt" in err


# -- debug: the step cap -------------------------------------------------------------------------------------
def test_the_counterfactual_step_cap(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["debug", "--dataset", "spurious-shapes", "--ckpt", str(tiny_shapes_ckpt), "--class-idx", "1"]
    found = {}
    for cap in ("1", "1000"):
        out = tmp_path / cap
        rc, printed, _ = run([*argv, "--max-steps", cap, "--out", str(out), "--no-progress"], capsys)
        assert rc == 0
        found[cap] = (printed, json.loads((out / "debug.json").read_text()))
    printed, capped = found["1"]
    _, free = found["1000"]
    assert free["counts"]["never_flipped"] == 0 and max(s["steps"] for s in free["samples"]) > 1
    assert capped["settings"]["max_steps"] == 1 and max(s["steps"] for s in capped["samples"]) <= 1
    never = [s["path"] for s in capped["samples"] if s["status"] == "never_flipped"]
    assert never and capped["counts"]["never_flipped"] == len(never) and capped["never_flipped"] == never
    assert "Never flipped within the step cap" in printed
    rc, _, err = run([*argv, "--max-steps", "-1"], capsys)
    assert rc == 2 and "--max-steps must be >= 0" in err


# -- demo on colored-digits -----------------------------------------------------------------------------------
def test_demo_runs_on_colored_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real 8×8 digits at their native size, a small random-init timm CNN (no training), one finder,
    one editor: the whole demo pipeline and report on this benchmark's 1,797 images."""
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.models import create_model

    classes = get_dataset("colored-digits").load(None, "val", None, image_size=8).classes
    torch.manual_seed(0)
    surface = create_model("test_resnet", num_classes=len(classes), image_size=16)
    ckpt = save_checkpoint(tmp_path / "cd.pt", surface, classes, "colored-digits", {"image_size": 8})
    cfg = tmp_path / "digits.toml"
    cfg.write_text(
        f'[experiment]\nname = "digits"\ndataset = "colored-digits"\ncheckpoint = "{ckpt}"\n'
        'finders = ["counterfactual"]\neditors = ["neuroinspect"]\n'
        "editor_settings = { neuroinspect = { epochs = 1 } }\nnum_neurons = 3\ntruth_samples = 2\n"
        "n_boot = 0\nbatch_size = 512\n",
        encoding="utf-8",
    )
    out = tmp_path / "demo"
    rc, printed, _ = run(["demo", "--config", str(cfg), "--out", str(out), "--no-progress"], capsys)
    assert rc == 0 and "report:" in printed
    records = read_records(out / "results.jsonl")
    assert {r["dataset"] for r in records} == {"colored-digits"}
    assert {r["task"] for r in records} == {"mitigation", "neuron_recovery"}
    # the counterfactual's pick and the two control sets, each edited by neuroinspect
    mits = [r for r in records if r["task"] == "mitigation"]
    assert sorted(r["config"]["source"] for r in mits) == [
        "counterfactual+top",
        "oracle-neurons",
        "random-neurons",
    ]
    (mit,) = [r for r in mits if r["config"]["source"] == "counterfactual+top"]
    # colour groups of the digits: worst-group accuracy exists on this benchmark
    assert mit["metrics"]["before"]["worst_group_acc"] is not None
    assert len(mit["metrics"]["before"]["group_acc"]) == 4
    assert "colored-digits" in (out / "report.md").read_text()
