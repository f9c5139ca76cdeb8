"""Invariants of the pipeline that produces the published tables, end to end on a tiny model.

Each test checks a number the pipeline writes against an independent computation of the same thing:

- the "after" metrics of an edit equal an evaluation of the saved edited checkpoint from its images
  (``bench run`` / ``demo`` and the ``edit`` command); the "before" metrics equal an evaluation of the
  original checkpoint;
- the debugged class is the one with the lowest validation accuracy (a tie goes to the lowest index);
- the edited neurons are the first entries of the configured list of the finder's output;
- γ is the documented formula ``1 + (min_{n∈S} imp[n] − 1)/3`` with ``imp`` on the class-c mean;
- a bench leaderboard's rows are the mean, spread, n and interval of the per-seed records.

The tiny model is the random-init ``tiny_shapes_ckpt`` (conftest); the editors get settings that move
its predictions, so that an "after" measured on the unedited layer could not pass.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPES
from scipy.stats import t as student_t
from torch import nn

from neuroinspect.cli import main
from neuroinspect.harness.checkpoint import load_checkpoint, save_checkpoint
from neuroinspect.harness.evaluation import evaluate_checkpoint
from neuroinspect.harness.features import FeatureCache, FeatureSet
from neuroinspect.harness.records import read_records
from neuroinspect.leaderboards import build_tables, load_records

#: accuracy numbers of a metrics dict that a mitigation record and an evaluation must agree on
COMPARED = (
    "test_acc",
    "class_acc",
    "worst_class_acc",
    "worst_group_acc",
    "mean_acc_train_weighted",
    "macro_acc",
    "per_class_acc",
    "group_acc",
)
# small steps: the edit moves the tiny model's test predictions, differently on each seed
EDIT = '{ epochs = 3, lr = 0.02, batch_size = 4, schedule = "constant" }'
# No dataset_params: a config that loads a checkpoint measures it on the checkpoint's own data.
CONFIG = """
[experiment]
name = "invariants"
dataset = "spurious-shapes"
checkpoint = "{ckpt}"
finders = ["counterfactual"]
editors = ["neuroinspect", "random-neurons"]
editor_settings = {{ neuroinspect = {edit}, random-neurons = {edit} }}
num_neurons = 3
neuron_list = "{neuron_list}"
truth_samples = 2
n_boot = 0
"""


def write_config(path: Path, ckpt: Path, neuron_list: str = "insufficient") -> Path:
    path.write_text(CONFIG.format(ckpt=ckpt, edit=EDIT, neuron_list=neuron_list), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bench(tiny_shapes_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bench run`` of :data:`CONFIG` over seeds 0 and 1 (the output folder)."""
    work = tmp_path_factory.mktemp("invariants")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROINSPECT_CACHE", str(work / "cache"))
        cfg = write_config(work / "tiny.toml", tiny_shapes_ckpt)
        out = work / "bench"
        assert main(["bench", "run", str(cfg), "--seeds", "0,1", "--out", str(out), "--no-progress"]) == 0
    return out


def evaluate(ckpt: Path, split: str, tmp: Path, class_idx: int | None = None) -> tuple[dict, FeatureSet]:
    """Metrics of ``ckpt`` on ``split`` of its own data, from its images, through a fresh feature cache."""
    return evaluate_checkpoint(
        ckpt, split=split, n_boot=0, class_idx=class_idx, cache=FeatureCache(tmp), show_progress=False
    )


def assert_same_metrics(recorded: dict[str, Any], measured: dict[str, Any]) -> None:
    for key in COMPARED:
        assert recorded[key] == pytest.approx(measured[key]), key


#: the neuron set the pipeline edits by default (finder + selector); the controls are other sets
MAIN_SET = "counterfactual+top"


def mitigation(records: list[dict], editor: str, seed: int) -> dict:
    """The editor's record on the main neuron set (an editor without neurons has no set)."""
    (rec,) = [
        r
        for r in records
        if r["task"] == "mitigation"
        and r["method"]["editor"] == editor
        and r["seed"] == seed
        and r["config"].get("source") in (None, MAIN_SET)
    ]
    return rec


# -- "before" and "after" against an independent evaluation --------------------------------------------
def test_bench_measures_a_loaded_checkpoint_on_its_own_data(
    bench: Path, tiny_shapes_ckpt: Path, tmp_path: Path
) -> None:
    records = read_records(bench / "results.jsonl")
    assert {json.dumps(r["config"]["dataset_params"], sort_keys=True) for r in records} == {
        json.dumps(TINY_SHAPES, sort_keys=True)
    }
    original, _ = evaluate(tiny_shapes_ckpt, "test", tmp_path, class_idx=records[0]["class_idx"])
    for rec in records:
        if rec["task"] == "mitigation":
            assert_same_metrics(rec["metrics"]["before"], original)


def test_after_equals_an_evaluation_of_the_saved_edited_checkpoint(
    bench: Path, tiny_shapes_ckpt: Path, tmp_path: Path
) -> None:
    records = read_records(bench / "results.jsonl")
    _, original_fs = evaluate(tiny_shapes_ckpt, "test", tmp_path / "orig")
    for seed in (0, 1):
        rec = mitigation(records, "neuroinspect", seed)
        c = rec["class_idx"]
        path = bench / f"seed-{seed}" / "edited" / "neuroinspect.pt"
        edited, edited_fs = evaluate(path, "test", tmp_path / f"e{seed}", class_idx=c)
        # the edit changed test predictions, so "after" measured on the unedited layer would differ
        assert not torch.equal(edited_fs.preds, original_fs.preds)
        assert_same_metrics(rec["metrics"]["after"], edited)
        summary = json.loads((bench / f"seed-{seed}" / "summary.json").read_text())
        assert_same_metrics(summary["after"]["neuroinspect"], edited)
        ckpt = load_checkpoint(path)
        assert ckpt.metrics["after"]["test_acc"] == pytest.approx(edited["test_acc"])
        assert ckpt.extra["neurons"] == rec["config"]["neurons"] and ckpt.extra["class_idx"] == c


def test_edit_command_after_equals_an_evaluation_of_its_checkpoint(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, results = tmp_path / "edit", tmp_path / "results.jsonl"
    argv = ["edit", "--dataset", "spurious-shapes", "--ckpt", str(tiny_shapes_ckpt), "--class-idx", "1"]
    argv += ["--neurons", "3", "7", "11", "--epochs", "6", "--lr", "0.1", "--batch-size", "8"]
    argv += ["--schedule", "constant", "--n-boot", "0", "--out", str(out), "--results", str(results)]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    (rec,) = read_records(results)
    original, original_fs = evaluate(tiny_shapes_ckpt, "test", tmp_path / "orig", class_idx=1)
    edited, edited_fs = evaluate(out / "edited.pt", "test", tmp_path / "edited", class_idx=1)
    assert not torch.equal(edited_fs.preds, original_fs.preds)
    assert_same_metrics(rec["metrics"]["before"], original)
    assert_same_metrics(rec["metrics"]["after"], edited)
    assert_same_metrics(json.loads((out / "edit.json").read_text())["after"], edited)
    assert load_checkpoint(out / "edited.pt").metrics["test_after"]["test_acc"] == pytest.approx(
        edited["test_acc"]
    )


# -- the class, the neurons and γ ---------------------------------------------------------------------------
def test_the_debugged_class_has_the_lowest_validation_accuracy(
    bench: Path, tiny_shapes_ckpt: Path, tmp_path: Path
) -> None:
    val, _ = evaluate(tiny_shapes_ckpt, "val", tmp_path)
    acc = val["per_class_acc"]
    assert len(set(acc)) == len(acc)  # no tie here: the best class could not pass for the worst
    worst = min(range(len(acc)), key=lambda k: acc[k])
    summary = json.loads((bench / "seed-0" / "summary.json").read_text())
    assert summary["class_idx"] == worst
    assert {r["class_idx"] for r in read_records(bench / "results.jsonl")} == {worst}


def test_a_tie_for_the_worst_class_goes_to_the_lowest_index(tmp_path: Path) -> None:
    """Three classes; the decision layer always says "circle": triangle and square tie at 0%."""
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.harness.experiment import run_experiment
    from neuroinspect.harness.models import create_model

    params = {**TINY_SHAPES, "n_val": 12, "n_test": 12, "shapes": ["triangle", "square", "circle"]}
    torch.manual_seed(0)
    surface = create_model("test_resnet", num_classes=3, image_size=32)
    with torch.no_grad():
        surface.decision.weight.zero_()
        surface.decision.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    ckpt = save_checkpoint(tmp_path / "c.pt", surface, params["shapes"], "spurious-shapes", params)
    val, _ = evaluate(ckpt, "val", tmp_path / "cache")
    assert val["per_class_acc"] == [0.0, 0.0, 1.0]
    cfg = ExperimentConfig(
        dataset="spurious-shapes",
        checkpoint=str(ckpt),
        finders=["counterfactual"],
        finder_settings={"counterfactual": {"max_steps": 2}},
        editors=[],
        num_neurons=2,
        truth_samples=2,
        n_boot=0,
    )
    result = run_experiment(cfg, 0, tmp_path / "run", show_progress=False, log=lambda _: None)
    assert result.class_idx == 0


def _first(debug: dict[str, Any], which: str, k: int) -> list[int]:
    rows = debug["counterfactual"][which]
    assert len(rows) >= k  # the list itself is long enough: no top-up from the ranking
    return [int(r["neuron"]) for r in rows[:k]]


def test_edited_neurons_are_the_first_of_the_configured_list(bench: Path) -> None:
    records = read_records(bench / "results.jsonl")
    for seed in (0, 1):
        debug = json.loads((bench / f"seed-{seed}" / "debug.json").read_text())
        expected = _first(debug, "insufficient", 3)
        assert not set(expected) & set(_first(debug, "excessive", 3))  # the other list would differ
        assert json.loads((bench / f"seed-{seed}" / "summary.json").read_text())["neurons"] == expected
        assert mitigation(records, "neuroinspect", seed)["config"]["neurons"] == expected
        control = mitigation(records, "random-neurons", seed)["config"]["neurons"]
        assert len(control) == 3 and not set(control) & set(expected)


def test_neuron_list_excessive_edits_the_excessive_neurons(tiny_shapes_ckpt: Path, tmp_path: Path) -> None:
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.harness.experiment import run_experiment

    cfg = ExperimentConfig.from_toml(
        write_config(tmp_path / "exc.toml", tiny_shapes_ckpt, neuron_list="excessive")
    )
    cfg.editors = ["neuroinspect"]
    result = run_experiment(cfg, 0, tmp_path / "run", show_progress=False, log=lambda _: None)
    debug = json.loads((tmp_path / "run" / "debug.json").read_text())
    assert result.neurons == _first(debug, "excessive", 3)
    (rec,) = [r for r in result.records if r["task"] == "mitigation" and r["config"]["source"] == MAIN_SET]
    assert rec["config"]["neurons"] == result.neurons


def gamma_by_hand(decision: nn.Linear, features: np.ndarray, neurons: list[int], c: int) -> float:
    """γ = 1 + (min_{n∈S} imp[n] − 1)/3, imp[n] = p_c(f̄) / p_c(f̄ with f̄_n = 0), f̄ = mean feature of class c."""
    W = decision.weight.detach().double().numpy()
    b = decision.bias.detach().double().numpy()

    def p_c(f: np.ndarray) -> float:
        z = W @ f + b
        e = np.exp(z - z.max())
        return float(e[c] / e.sum())

    imps = []
    for n in neurons:
        knocked = features.copy()
        knocked[n] = 0.0
        imps.append(p_c(features) / p_c(knocked))
    return 1.0 + (min(imps) - 1.0) / 3.0


def test_auto_gamma_is_the_documented_formula_on_a_hand_made_case() -> None:
    """2 classes, 3 neurons; the class-c mean, the all-sample mean and the other class's mean all differ."""
    from neuroinspect.commands.edit import auto_gamma
    from neuroinspect.methods.finders import FINDERS, load_all

    load_all()
    decision = nn.Linear(3, 2)
    with torch.no_grad():
        decision.weight.copy_(torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -0.5]]))
        decision.bias.copy_(torch.tensor([0.1, -0.2]))
    feats = torch.tensor([[1.0, 0.0, 2.0], [0.0, 2.0, 1.0], [3.0, 1.0, 0.0], [0.5, 0.5, 4.0]])
    labels = torch.tensor([1, 1, 0, 0])
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # sample 3: a class-0 mistake
    val = FeatureSet(feats, logits, labels, None, torch.arange(4), ["a", "b", "c", "d"], {"split": "val"})
    c, S = 0, [0, 2]
    class_mean = np.array([1.75, 0.75, 2.0])
    expected = gamma_by_hand(decision, class_mean, S, c)
    assert expected != pytest.approx(gamma_by_hand(decision, feats.mean(0).double().numpy(), S, c))
    assert expected != pytest.approx(gamma_by_hand(decision, np.array([0.5, 1.0, 1.5]), S, c))
    assert auto_gamma(decision, val, c, S) == pytest.approx(expected, rel=1e-12)
    for name in ("counterfactual", "contribution"):
        result = FINDERS.get(name)().find(decision, val, c, show_progress=False)
        assert result.gamma_for(S) == pytest.approx(expected, rel=1e-12)
    # --ref: the reference's all-sample mean
    all_mean = gamma_by_hand(decision, feats.mean(0).double().numpy(), S, c)
    assert auto_gamma(decision, val, c, S, ref=True) == pytest.approx(all_mean, rel=1e-12)


def test_recorded_gamma_is_the_formula_on_the_validation_features(
    bench: Path, tiny_shapes_ckpt: Path, tmp_path: Path
) -> None:
    records = read_records(bench / "results.jsonl")
    rec = mitigation(records, "neuroinspect", 0)
    c, S = rec["class_idx"], rec["config"]["neurons"]
    _, val = evaluate(tiny_shapes_ckpt, "val", tmp_path)
    class_mean = val.features[val.labels == c].double().mean(0).numpy()
    decision = load_checkpoint(tiny_shapes_ckpt).surface.decision
    expected = gamma_by_hand(decision, class_mean, S, c)
    # γ is within 1e-4 of 1 on this random-init model: compare γ − 1, which the choice of mean changes
    all_mean = gamma_by_hand(decision, val.features.double().mean(0).numpy(), S, c)
    assert abs((all_mean - 1) / (expected - 1) - 1) > 0.1
    assert rec["config"]["gamma"] == "auto"
    assert rec["metrics"]["gamma_used"] - 1 == pytest.approx(expected - 1, rel=1e-6)
    summary = json.loads((bench / "seed-0" / "summary.json").read_text())
    assert summary["gamma"] - 1 == pytest.approx(expected - 1, rel=1e-6)


# -- the leaderboard over seeds ---------------------------------------------------------------------------
def test_bench_leaderboard_rows_are_mean_and_spread_of_the_seed_records(bench: Path) -> None:
    records = read_records(bench / "results.jsonl")
    tables = build_tables(load_records([bench / "results.jsonl"]))
    (mit,) = [t for t in tables if t.task == "mitigation"]
    t975 = float(student_t.ppf(0.975, 1))
    # the random control draws other neurons on each seed: still one row per editor and neuron set
    # (neuroinspect also on the oracle-neurons and random-neurons control sets)
    assert sorted((r.method["editor"], r.method["finder"]) for r in mit.rows) == [
        ("neuroinspect", "counterfactual"),
        ("neuroinspect", "oracle-neurons"),
        ("neuroinspect", "random-neurons"),
        ("random-neurons", "counterfactual"),
    ]
    checked = 0
    for row in [r for r in mit.rows if r.method["finder"] == "counterfactual"]:
        runs = [mitigation(records, row.method["editor"], s) for s in (0, 1)]
        assert sorted(row.seeds) == [0, 1] and row.n_seeds == 2
        for key in ("test_acc", "worst_class_acc", "worst_group_acc", "class_acc"):
            for part in ("before", "after", "gain"):
                if part == "gain":
                    vals = [r["metrics"]["after"][key] - r["metrics"]["before"][key] for r in runs]
                else:
                    vals = [r["metrics"][part][key] for r in runs]
                stat = row.metrics[f"{part}.{key}"]
                sd = statistics.stdev(vals)
                assert stat.mean == pytest.approx(statistics.mean(vals), abs=1e-12)
                assert stat.std == pytest.approx(sd, abs=1e-12) and stat.n == 2
                assert stat.ci95 == pytest.approx(t975 * sd / math.sqrt(2), abs=1e-12)
                checked += sd > 0
    assert checked > 0  # the seeds' edits differ, so a wrong spread would show
    checked = 0
    # one row per finder and list (insufficient, excessive) and per edited set; the random-neurons
    # control draws other neurons on each seed, so its scores differ and a wrong spread would show
    # (the causal truth itself is the same on both seeds: same checkpoint, same mistakes)
    rec_tables = [t for t in tables if t.task == "neuron_recovery"]
    for finder, which, ks in (
        ("counterfactual", "insufficient", ("5", "10", "20")),
        ("random-neurons", "edited", ("3",)),
    ):
        (rec_table,) = [t for t in rec_tables if t.neuron_list == which]  # one table per list
        (row,) = [r for r in rec_table.rows if r.method["finder"] == finder and r.config.get("list") == which]
        assert sorted(row.seeds) == [0, 1]
        for family in ("precision_at_k", "margin_share_at_k"):
            for k in ks:
                vals = [
                    r["metrics"][family][k]
                    for r in records
                    if r["task"] == "neuron_recovery"
                    and r["method"]["finder"] == finder
                    and r["config"]["list"] == which
                ]
                stat, sd = row.metrics[f"{family}.{k}"], statistics.stdev(vals)
                assert stat.mean == pytest.approx(statistics.mean(vals), abs=1e-12) and stat.n == 2
                assert stat.std == pytest.approx(sd, abs=1e-12)
                assert stat.ci95 == pytest.approx(t975 * sd / math.sqrt(2), abs=1e-12)
                checked += sd > 0
    assert checked > 0


def test_demo_seed_reproduces_that_seed_of_the_bench(
    bench: Path, tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "tiny.toml", tiny_shapes_ckpt)
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(cfg), "--seed", "1", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    demo = read_records(out / "results.jsonl")
    bench_records = read_records(bench / "results.jsonl")
    assert {r["seed"] for r in demo} == {1}
    assert json.loads((out / "summary.json").read_text())["seed"] == 1
    for editor in ("neuroinspect", "random-neurons"):
        got, same, other = (
            mitigation(demo, editor, 1),
            mitigation(bench_records, editor, 1),
            mitigation(bench_records, editor, 0),
        )
        assert got["config"]["neurons"] == same["config"]["neurons"]
        assert got["metrics"]["after"] == same["metrics"]["after"]
        assert got["metrics"]["edit_info"]["seed"] == 1 and other["metrics"]["edit_info"]["seed"] == 0
    # the seed reaches the random control: seed 1 draws other neurons than seed 0
    assert (
        mitigation(demo, "random-neurons", 1)["config"]["neurons"]
        != mitigation(bench_records, "random-neurons", 0)["config"]["neurons"]
    )
