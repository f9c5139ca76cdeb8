"""Before / after measurement, mitigation records, edited checkpoints and the ``neuroinspect edit`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from neuroinspect.cli import main
from neuroinspect.harness.checkpoint import load_checkpoint, save_checkpoint
from neuroinspect.harness.features import FeatureSet
from neuroinspect.harness.mitigation import (
    format_mitigation_table,
    measure,
    mitigation_record,
    save_edited_checkpoint,
)
from neuroinspect.harness.models import create_model
from neuroinspect.harness.records import append_records, read_records, validate_record
from neuroinspect.methods.editors import EDITORS, EditResult
from neuroinspect.runtime import Provenance


def _identity_layer() -> nn.Linear:
    lay = nn.Linear(2, 2)
    with torch.no_grad():
        lay.weight.copy_(torch.eye(2))
        lay.bias.zero_()
    return lay


def _known_test_set() -> FeatureSet:
    # predictions 0,1,1,0,1,0 against labels 0,0,1,1,1,0 → correct 1,0,1,0,1,1
    preds = [0, 1, 1, 0, 1, 0]
    feats = torch.tensor([[1.0, 0.0] if p == 0 else [0.0, 1.0] for p in preds])
    return FeatureSet(
        features=feats,
        logits=torch.zeros(6, 2),
        labels=torch.tensor([0, 0, 1, 1, 1, 0]),
        groups=torch.tensor([0, 1, 2, 3, 3, 1]),
        indices=torch.arange(6),
        paths=[str(i) for i in range(6)],
        meta={"num_groups": 4},
    )


def test_measure_by_hand() -> None:
    lay = _identity_layer()
    w0 = lay.weight.clone()
    m = measure(lay, _known_test_set(), class_idx=1, train_group_counts=[10, 30, 20, 40], n_boot=200, seed=0)
    assert m["test_acc"] == pytest.approx(4 / 6)
    assert m["class_acc"] == pytest.approx(2 / 3) and m["worst_class_acc"] == pytest.approx(2 / 3)
    assert m["group_acc"] == pytest.approx([1.0, 0.5, 1.0, 0.5]) and m["worst_group_acc"] == pytest.approx(
        0.5
    )
    # train-weighted: (10·1 + 30·0.5 + 20·1 + 40·0.5) / 100
    assert m["mean_acc_train_weighted"] == pytest.approx(0.65)
    lo, hi = m["ci"]["test_acc"]
    assert lo <= 4 / 6 <= hi
    assert torch.equal(lay.weight, w0)
    no_groups = _known_test_set()
    no_groups.groups = None
    m2 = measure(lay, no_groups, class_idx=None, n_boot=0)
    assert m2["worst_group_acc"] is None and m2["mean_acc_train_weighted"] is None and m2["class_acc"] is None


def _result(editor: str = "neuroinspect", gamma: float | None = 1.0123, groups: bool = False) -> EditResult:
    settings = (
        {"variant": "flowers_food", "gamma": gamma, "lambda3": 0.01, "lr": 1e-3, "select": "acc"}
        if gamma
        else {"penalty": "l1"}
    )
    return EditResult(
        editor=editor,
        decision=_identity_layer(),
        class_idx=1,
        neurons=[0] if gamma else [],
        selected_epoch=2 if gamma else None,
        history=[],
        settings=settings,
        uses_group_labels=groups,
        info={"seed": 0},
        val_before={"acc": 0.5, "worst_class_acc": 0.4},
        val_after={"acc": 0.6, "worst_class_acc": 0.5},
    )


def test_mitigation_record_validates_and_records_the_settings(tmp_path: Path) -> None:
    test = _known_test_set()
    before = measure(_identity_layer(), test, 1, [10, 30, 20, 40], n_boot=50)
    after = dict(before, test_acc=0.9)
    with Provenance() as prov:
        pass
    rec = mitigation_record(
        _result(),
        before,
        after,
        dataset="spurious-shapes",
        model="resnet18",
        provenance=prov,
        finder="counterfactual",
        seed=3,
        gamma_rule="auto",
        config={"dataset_params": {"n_train": 40}},
    )
    validate_record(rec)
    assert rec["task"] == "mitigation" and rec["method"] == {
        "editor": "neuroinspect",
        "finder": "counterfactual",
    }
    assert rec["class_idx"] == 1 and rec["seed"] == 3
    cfg = rec["config"]
    assert cfg["neurons"] == [0] and cfg["lambda3"] == 0.01 and cfg["variant"] == "flowers_food"
    assert cfg["gamma"] == "auto" and rec["metrics"]["gamma_used"] == pytest.approx(
        1.0123
    )  # a setting, not an outcome
    assert (
        cfg["uses_group_labels"] is False
        and cfg["selection"] == "val_acc"
        and cfg["dataset_params"] == {"n_train": 40}
    )
    assert rec["metrics"]["before"]["mean_acc_train_weighted"] == pytest.approx(0.65)
    assert rec["metrics"]["after"]["test_acc"] == 0.9 and rec["metrics"]["selected_epoch"] == 2
    path = append_records(tmp_path / "r.jsonl", [rec])
    assert read_records(path)[0]["run_id"] == rec["run_id"]

    dfr = mitigation_record(
        _result("dfr", gamma=None, groups=True), before, after, dataset="d", model="m", provenance=prov
    )
    assert dfr["config"]["uses_group_labels"] is True and dfr["config"]["selection"] == "val_worst_group_acc"
    assert dfr["method"]["finder"] == "manual" and "gamma" not in dfr["config"]
    text = format_mitigation_table(before, after, 1, ["a", "b"])
    assert "class accuracy (class 1 b)" in text and "+23.33" in text  # 90.00 − 66.67


def test_save_edited_checkpoint_replaces_only_the_decision_layer(tmp_path: Path) -> None:
    surface = create_model("resnet18", 2, image_size=32)
    orig = save_checkpoint(
        tmp_path / "orig.pt",
        surface,
        ["a", "b"],
        "spurious-shapes",
        dataset_params={"n_train": 8},
        extra={"train_group_counts": [3, 1, 1, 3]},
    )
    ckpt = load_checkpoint(orig)
    new = nn.Linear(surface.num_features, 2)
    path = save_edited_checkpoint(
        tmp_path / "out" / "edited.pt",
        ckpt,
        new,
        editor="neuroinspect",
        neurons=[5, 9],
        class_idx=1,
        settings={"lambda3": 0.01},
    )
    edited = load_checkpoint(path)
    assert torch.equal(edited.surface.decision.weight, new.weight) and torch.equal(
        edited.surface.decision.bias, new.bias
    )
    a, b = ckpt.surface.model.state_dict(), edited.surface.model.state_dict()
    head = {"fc.weight", "fc.bias"}
    assert all(torch.equal(a[k], b[k]) for k in a if k not in head)  # backbone (BN statistics too) untouched
    assert edited.extra["edited_from"] == ckpt.sha256 and edited.extra["neurons"] == [5, 9]
    assert edited.extra["train_group_counts"] == [3, 1, 1, 3] and edited.dataset_params == {"n_train": 8}
    assert not torch.equal(ckpt.surface.decision.weight, new.weight)  # the original model is not modified


# -- the command ----------------------------------------------------------------------------------------
SHAPES = {"n_train": 40, "n_val": 16, "n_test": 16, "image_size": 32}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    surface = create_model("resnet18", 2, image_size=32)
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny.pt",
        surface,
        ["triangle", "square"],
        "spurious-shapes",
        dataset_params=SHAPES,
    )


def test_edit_command_end_to_end(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "edit"
    results = tmp_path / "results.jsonl"
    argv = [
        "edit",
        "--dataset",
        "spurious-shapes",
        "--ckpt",
        str(tiny_ckpt),
        "--class-idx",
        "1",
        "--neurons",
        "3,7",
        "11",
    ]
    argv += [
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--n-boot",
        "50",
        "--out",
        str(out),
        "--results",
        str(results),
        "--no-progress",
        "--seed",
        "1",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "neurons S = [3, 7, 11]" in text and "worst-group accuracy" in text and "gamma = " in text
    (rec,) = read_records(results)
    assert (
        rec["task"] == "mitigation"
        and rec["method"]["editor"] == "neuroinspect"
        and rec["config"]["neurons"] == [3, 7, 11]
    )
    assert rec["config"]["gamma"] == "auto" and rec["metrics"]["gamma_used"] > 0 and rec["seed"] == 1
    assert (
        rec["dataset_fingerprint"]["splits"]["train"] == 40
        and len(rec["dataset_fingerprint"]["groups"]["test"]) == 4
    )
    assert (
        rec["metrics"]["before"]["worst_group_acc"] is not None
        and rec["config"]["dataset_params"]["n_train"] == 40
    )
    edited = load_checkpoint(out / "edited.pt")
    orig = load_checkpoint(tiny_ckpt)
    assert not torch.equal(edited.surface.decision.weight, orig.surface.decision.weight)
    assert edited.extra["edited_from"] == orig.sha256 and edited.extra["editor"] == "neuroinspect"
    summary = json.loads((out / "edit.json").read_text())
    assert len(summary["history"]) == 2 and summary["record_run_id"] == rec["run_id"]
    # a baseline through the same command, appending to the same results file, features from the cache
    argv2 = [
        "edit",
        "--dataset",
        "spurious-shapes",
        "--ckpt",
        str(tiny_ckpt),
        "--class-idx",
        "0",
        "--editor",
        "cw",
    ]
    argv2 += [
        "--epochs",
        "1",
        "--n-boot",
        "0",
        "--out",
        str(tmp_path / "cw"),
        "--results",
        str(results),
        "--no-progress",
    ]
    assert main(argv2) == 0
    recs = read_records(results)
    assert [r["method"]["editor"] for r in recs] == ["neuroinspect", "cw"]
    assert recs[1]["method"]["finder"] == "none" and recs[1]["config"]["neurons"] == []  # cw ignores neurons


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class-idx", "1", "--neurons", "512"], "neuron index 512 is out of range"),
        (["--class-idx", "2", "--neurons", "3"], "--class-idx 2 is out of range"),
        (
            ["--class-idx", "1", "--neurons", "3", "--editor", "cw", "--gamma", "1.1"],
            "--gamma does not apply to --editor cw",
        ),
        (["--class-idx", "1"], "needs --neurons"),
        (["--class-idx", "1", "--neurons", "3", "--editor", "nope"], "unknown editor 'nope'"),
    ],
)
def test_edit_command_user_errors_exit_2(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = [
        "edit",
        "--dataset",
        "spurious-shapes",
        "--ckpt",
        str(tiny_ckpt),
        "--out",
        str(tmp_path),
        "--no-progress",
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "edited.pt").exists()


def test_edit_command_missing_checkpoint_and_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "edit",
                "--dataset",
                "spurious-shapes",
                "--ckpt",
                str(tmp_path / "none.pt"),
                "--class-idx",
                "0",
                "--neurons",
                "1",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    # dfr needs group labels: flowers102 has none (refused before any data is read)
    assert (
        main(
            [
                "edit",
                "--dataset",
                "flowers102",
                "--ckpt",
                str(tmp_path / "none.pt"),
                "--class-idx",
                "0",
                "--editor",
                "dfr",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "needs group labels" in err and "flowers102" in err


def test_editors_are_listed() -> None:
    assert {"neuroinspect", "cw", "focal", "fc", "dfr", "random-neurons"} <= set(EDITORS.names())
