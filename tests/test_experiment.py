"""The experiment runner behind `neuroinspect demo` and `neuroinspect bench run`, on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuroinspect.cli import main
from neuroinspect.harness.config import ExperimentConfig
from neuroinspect.harness.records import read_records

TINY = """
[experiment]
name = "tiny"
dataset = "spurious-shapes"
dataset_params = {{ n_train = {n_train}, n_val = {n_eval}, n_test = {n_eval} }}
model = "resnet18"
image_size = 32
train = {{ epochs = 1, batch_size = 32 }}
finders = ["counterfactual", "random"]
editors = {editors}
editor_settings = {{ neuroinspect = {{ epochs = 2 }}, fc = {{ epochs = 2 }}, random-neurons = {{ epochs = 2 }}, dfr = {{ c_grid = [1.0], num_retrains = 1 }} }}
num_neurons = 3
truth_samples = 8
n_boot = 20
"""


def write_config(
    tmp_path: Path,
    editors: str = '["neuroinspect", "fc", "dfr", "random-neurons"]',
    n_train: int = 160,
    n_eval: int = 64,
) -> Path:
    """The tiny config; ``n_train`` / ``n_eval`` (val and test): the spurious-shapes split sizes."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(editors=editors, n_train=n_train, n_eval=n_eval))
    return path


def test_demo_with_config_writes_report_records_and_leaderboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    cfg = write_config(tmp_path, n_train=64, n_eval=32)
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    records = read_records(out / "results.jsonl")
    recovery = [r for r in records if r["task"] == "neuron_recovery"]
    # one record per finder and list, and one per edited set (2 finders x top, the two controls)
    lists = sorted((r["method"].get("finder"), r["config"]["list"]) for r in recovery)
    assert lists == sorted(
        [(f, w) for f in ("counterfactual", "random") for w in ("insufficient", "excessive")]
        + [
            ("counterfactual", "edited"),
            ("random", "edited"),
            ("oracle-neurons", "edited"),
            ("random-neurons", "edited"),
        ]
    )
    # every record names the data it measured on and how the class was chosen (no class_idx: the worst)
    assert all(r["dataset_fingerprint"]["splits"] == {"train": 64, "val": 32, "test": 32} for r in records)
    assert {r["config"]["class_rule"] for r in records} == {"worst_val"}
    editors = {r["method"]["editor"] for r in records if r["task"] == "mitigation"}
    assert editors == {"neuroinspect", "fc", "dfr", "random-neurons"}
    summary = json.loads((out / "summary.json").read_text())
    neurons = summary["neurons"]
    assert len(neurons) == 3 and len(set(neurons)) == 3
    assert summary["main_set"] == "counterfactual+top"
    # the neuroinspect editor runs on every neuron set; fc, dfr and the legacy random-neurons editor once
    ni = [r for r in records if r["task"] == "mitigation" and r["method"]["editor"] == "neuroinspect"]
    assert sorted(r["config"]["source"] for r in ni) == sorted(
        ["counterfactual+top", "random+top", "oracle-neurons", "random-neurons"]
    )
    oracle = next(r for r in recovery if r["method"]["finder"] == "oracle-neurons")
    main_edit = next(r for r in ni if r["config"]["source"] == "counterfactual+top")
    assert main_edit["method"] == {"editor": "neuroinspect", "finder": "counterfactual", "selector": "top"}
    assert main_edit["config"]["neurons"] == neurons
    edited = next(
        r for r in recovery if r["config"]["list"] == "edited" and r["method"]["finder"] == "counterfactual"
    )
    assert edited["config"]["neurons"] == neurons and "core_let_through" in edited["metrics"]
    # the oracle's set carries at least as much of the causal margin as any other set of the same size
    shares = [r["metrics"]["margin_share_at_k"]["3"] for r in recovery if r["config"]["list"] == "edited"]
    assert oracle["metrics"]["margin_share_at_k"]["3"] == max(shares)
    for r in records:
        if r["task"] != "mitigation":
            continue
        # every editor starts from the same original model, so the "before" block is identical
        assert r["metrics"]["before"]["test_acc"] == summary["before"]["test_acc"]
        if r["method"]["editor"] == "neuroinspect":  # each neuron set's own neurons
            src = r["config"]["source"]
            expect = (
                neurons
                if src == "counterfactual+top"
                else next(x["config"]["neurons"] for x in recovery if x["config"].get("source") == src)
            )
            assert r["config"]["neurons"] == expect
        # every edit is also reported against plain retraining (fc)
        fc_after = next(x for x in records if x["method"].get("editor") == "fc")["metrics"]["after"]
        assert r["metrics"]["after_minus_fc"]["test_acc"] == pytest.approx(
            r["metrics"]["after"]["test_acc"] - fc_after["test_acc"]
        )
        if r["method"]["editor"] == "random-neurons":
            assert not set(r["config"]["neurons"]) & set(neurons)
        if r["method"]["editor"] == "dfr":
            assert r["config"]["uses_group_labels"] is True
    report = (out / "report.md").read_text()
    # the plain-language summary opens the report and names the class and the failing group's background
    cname = summary["class_name"]
    groups = ["triangle/water", "triangle/land", "square/water", "square/land"]
    own = [g for g in range(4) if groups[g].startswith(cname + "/")]
    worst = min(own, key=lambda g: summary["before"]["group_acc"][g])
    assert report.index("## In short") < report.index("## The model before editing")
    assert (
        f"is **{cname}**" in report
        and f"images whose background is **{groups[worst].split('/')[1]}**" in report
    )
    for needle in (
        "## The model before editing",
        "## Editing the decision layer",
        "insufficient P@5",
        "### The edited neurons of class",
        "figures/edited_neurons.png",
        "Every editor on every neuron set",
        "figures/group_accuracy.png",
    ):
        assert needle in report
    for fig in ("group_accuracy.png", "mistakes.png", "neuron_truth.png", "edited_neurons.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    assert (out / "edited" / "neuroinspect.pt").is_file()
    assert "neuroinspect" in (out / "leaderboard.md").read_text()
    # a second run into the same folder must not overwrite results
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert "already holds a previous run" in capsys.readouterr().err


def test_bench_run_aggregates_seeds_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # what is checked here is the seeds' bookkeeping, not a number: a third of the demo test's data
    cfg = write_config(tmp_path, editors='["neuroinspect"]', n_train=48, n_eval=24)
    out = tmp_path / "bench"
    assert main(["bench", "run", str(cfg), "--seeds", "0,1", "--out", str(out), "--no-progress"]) == 0
    records = read_records(out / "results.jsonl")
    assert sorted({r["seed"] for r in records}) == [0, 1]
    assert (out / "seed-0" / "report.md").is_file() and (out / "seed-1" / "report.md").is_file()
    n = len(records)
    capsys.readouterr()
    # the used folder is refused; --resume skips the seeds already recorded: nothing recomputed or duplicated
    assert main(["bench", "run", str(cfg), "--seeds", "0,1", "--out", str(out), "--no-progress"]) == 2
    assert "--resume to continue it" in capsys.readouterr().err
    args = ["bench", "run", str(cfg), "--seeds", "0,1", "--out", str(out), "--no-progress", "--resume"]
    assert main(args) == 0
    assert "already in" in capsys.readouterr().err
    assert len(read_records(out / "results.jsonl")) == n


def test_config_errors_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nname = "x"\nepochs = 3\n')
    assert main(["bench", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) epochs" in err and "Traceback" not in err
    bad.write_text("[experiment\n")
    assert main(["bench", "run", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["bench", "run", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(Exception, match="neuron_list"):
        ExperimentConfig(neuron_list="all")


def test_unknown_method_in_config_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, editors='["neuroinspect", "no-such-editor"]')
    assert main(["demo", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown editor 'no-such-editor'" in err
    assert not (tmp_path / "o" / "model").exists()


def test_bundled_demo_configs_parse() -> None:
    from neuroinspect.commands.demo import demo_config

    for name in ("spurious-shapes", "colored-digits"):
        cfg = demo_config(name, "cpu")
        # the best pipeline of the neuron-choice table (README), with fc, dfr and the controls beside it
        assert cfg.dataset == name and "dfr" in cfg.editors and "fc" in cfg.editors
        assert (cfg.finder, cfg.selector, cfg.neuron_list, cfg.num_neurons) == (
            "margin-deficit",
            "top",
            "both",
            50,
        )
        assert cfg.editors[0] == "surgical" and set(cfg.controls) == {"oracle-neurons", "random-neurons"}
        cfg.check_methods()
        # --ref: the paper's pipeline
        ref = demo_config(name, "cpu", ref=True)
        assert (ref.finder, ref.selector, ref.neuron_list, ref.num_neurons) == (
            "counterfactual",
            "top",
            "insufficient",
            5,
        )
        assert ref.editors[0] == "neuroinspect" and ref.dataset == name and ref.name.endswith("-ref")
        ref.check_methods()


def _experiment_configs() -> list[Path]:
    from neuroinspect.sweeps.config import is_sweep_file  # sweep files are checked in test_sweeps.py

    root = Path(__file__).resolve().parent.parent.joinpath("configs")
    # study specs (configs/studies/) are another format, checked in test_study_spec.py
    return sorted(p for p in root.rglob("*.toml") if not is_sweep_file(p) and p.parent.name != "studies")


@pytest.mark.parametrize("path", _experiment_configs(), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    """Every experiment config under configs/ parses, names registered methods and gives editors settings they accept."""
    from neuroinspect.datasets import get_dataset
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.methods.editors import load_all as load_editors
    from neuroinspect.methods.finders import FINDERS
    from neuroinspect.methods.finders import load_all as load_finders

    load_editors()
    load_finders()
    from neuroinspect.harness.choice import make_selectors, resolve_pipelines, split_variant

    cfg = ExperimentConfig.from_toml(path)
    get_dataset(cfg.dataset)
    for name in cfg.finders:
        FINDERS.get(split_variant(name)[0])(**cfg.finder_settings.get(name, {}))
    for name in cfg.editors:
        EDITORS.get(split_variant(name)[0])(**cfg.editor_settings.get(name, {}))
    assert set(cfg.editor_settings) <= set(cfg.editors)
    assert set(cfg.selector_settings) <= set(cfg.selectors)
    make_selectors(cfg, interactive=False)
    resolve_pipelines(cfg)


def test_demo_ref_with_a_config_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert main(["demo", "--ref", "--config", str(write_config(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ref and --config" in err[0] and "Drop --ref" in err[0]
    assert not out.exists()


def test_demo_refuses_dataset_beside_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dataset was silently ignored under --config; now it is one clear refusal, before any output."""
    cfg = write_config(tmp_path)
    out = tmp_path / "o"
    args = ["demo", "--config", str(cfg), "--dataset", "colored-digits", "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--dataset colored-digits and --config" in err and "Drop --dataset" in err
    assert "Traceback" not in err and not out.exists()
