"""The plain-language summary that opens report.md: the failing class and group, the attribute, what
each edit changed, and whether the paper's method beat its controls on the run."""

from __future__ import annotations

from types import SimpleNamespace

from neuroinspect.datasets.base import Sample
from neuroinspect.harness.config import ExperimentConfig
from neuroinspect.harness.experiment import ExperimentResult
from neuroinspect.harness.report import compact_leaderboard, plain_summary

GROUPS = ["triangle/water", "triangle/land", "square/water", "square/land"]


def _metrics(test: float, cls: float, groups: list[float], wg_ci: float = 0.05) -> dict:
    return {
        "test_acc": test,
        "class_acc": cls,
        "worst_class_acc": min(cls, test),
        "worst_group_acc": min(groups),
        "group_acc": groups,
        "group_n": [100, 40, 40, 100],
        "train_group_weights": [0.57, 0.03, 0.02, 0.38],  # triangles on water, squares on land (95%)
        "ci": {"worst_group_acc": [min(groups) - wg_ci, min(groups) + wg_ci]},
    }


def _edit(groups: list[float], cls: float, test: float, group_labels: bool = False) -> dict:
    return {
        "after": _metrics(test, cls, groups),
        "result": {"uses_group_labels": group_labels, "neurons": []},
    }


def _result(edits: dict) -> ExperimentResult:
    test = SimpleNamespace(samples=[Sample(f"t{g}", label=g // 2, group=g) for g in range(4)])
    # validation mistakes of class 1 (square): 9 on water (group 2) called triangle, 1 on land
    val = SimpleNamespace(samples=[Sample("v0", 1, 2), Sample("v1", 1, 3)])
    mistakes = [{"index": 0, "pred": 0}] * 9 + [{"index": 1, "pred": 0}]
    return ExperimentResult(
        config=ExperimentConfig(dataset="spurious-shapes"),
        seed=0,
        out_dir=None,  # type: ignore[arg-type]
        checkpoint=None,  # type: ignore[arg-type]
        class_idx=1,
        class_names=["triangle", "square"],
        group_names=GROUPS,
        neurons=[3, 1, 4, 5, 9],
        gamma=1.02,
        before=_metrics(0.88, 0.72, [0.98, 0.80, 0.55, 0.97]),
        edits=edits,
        mistakes=mistakes,
        datasets={"test": test, "val": val},
    )


def test_the_summary_names_the_class_the_group_the_attribute_and_the_confusion() -> None:
    text = "\n".join(plain_summary(_result({})))
    assert "Its weakest class on the validation split is **square** (72.0% correct on test)" in text
    assert "fails most on **square** images whose background is **water**: 55.0% correct (n = 40)" in text
    assert "against 97.0% when it is land" in text
    assert "square images on water are called **triangle**: 9 of the 9 validation mistakes" in text
    # 5% of the squares were on water in training against 95% of the triangles: it uses the background
    assert "only 5% of the square images had background water, while 95% of the triangle images did" in text
    assert "**the model uses the background**, not only the shape" in text


def test_the_summary_says_whether_the_paper_method_beat_its_controls() -> None:
    edits = {
        "neuroinspect": _edit([0.97, 0.85, 0.80, 0.95], 0.86, 0.93),
        "fc": _edit([0.97, 0.85, 0.70, 0.95], 0.83, 0.92),
        "random-neurons": _edit([0.97, 0.85, 0.78, 0.95], 0.85, 0.93),
        "dfr": _edit([0.97, 0.95, 0.95, 0.96], 0.95, 0.96, group_labels=True),
    }
    text = "\n".join(plain_summary(_result(edits)))
    assert "- `neuroinspect` (the paper's method): worst-group 55.0 → **80.0**, square 72.0 → 86.0" in text
    assert "- `dfr` (uses group labels): worst-group 55.0 → **95.0**" in text
    assert "It was **not better than both controls** on worst-group accuracy" in text
    assert "better than `fc` (the same retraining without the neuron term) (+10.0 points)" in text
    assert "no different from `random-neurons` (the same editor on random neurons) (+2.0 points)" in text
    edits["random-neurons"] = _edit([0.97, 0.85, 0.60, 0.95], 0.80, 0.91)
    assert "It was **better than both controls**" in "\n".join(plain_summary(_result(edits)))
    board = "\n".join(compact_leaderboard(_result(edits)))
    rows = [line for line in board.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[2].strip() for r in rows] == [
        "`dfr` †",
        "`neuroinspect`",
        "`fc`",
        "`random-neurons`",
        "original",
    ]


def test_a_report_lists_the_files_the_run_wrote(tmp_path) -> None:  # noqa: ANN001
    """A config that loads a checkpoint trains nothing: no model/best.pt in the file list."""
    from neuroinspect.harness.report import write_experiment_report

    res = _result({})
    res.group_names, res.datasets, res.mistakes = None, {}, []
    res.train_summary = {"checkpoint": "runs/shapes/best.pt", "trained": False}
    text = write_experiment_report(res, tmp_path).read_text()
    assert "Model: the checkpoint `runs/shapes/best.pt` (not trained in this run)." in text
    assert "model/best.pt" not in text and "edited/neuroinspect.pt" not in text
    res.train_summary = {
        "trained": True,
        "preset": "default",
        "train_config": {"epochs": 6, "description": "d"},
        "best_epoch": 4,
        "best_metrics": {"val_acc": 0.9},
        "n_train": 100,
    }
    res.timings = {"train": 12.0}
    text = write_experiment_report(res, tmp_path).read_text()
    assert "`model/best.pt` and `model/train_log.json`" in text and "the best epoch was 4 of 6" in text
    assert "; 12 s." in text and "| train | 12.0 |" in text  # one training time, in the text and the table


def test_the_summary_describes_fc_as_plain_retraining_when_the_pipeline_edits_surgically() -> None:
    """``fc`` is the neuroinspect editor without its neuron term; beside ``surgical`` it is plain retraining."""
    edits = {
        "surgical": _edit([0.97, 0.85, 0.80, 0.95], 0.86, 0.93),
        "fc": _edit([0.97, 0.85, 0.70, 0.95], 0.83, 0.92),
    }
    res = _result(edits)
    res.config = ExperimentConfig(dataset="spurious-shapes", editors=["surgical", "fc"])
    text = "\n".join(plain_summary(res))
    assert "the pipeline (`surgical`)" in text
    assert "better than `fc` (plain retraining of the decision layer) (+10.0 points)" in text
    assert "without the neuron term" not in text
