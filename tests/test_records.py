"""Result records: validation names the field, JSON Lines round trip, corrupt lines located."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from neuroinspect.errors import RecordError
from neuroinspect.harness.records import append_records, make_record, read_records, validate_record
from neuroinspect.runtime import Provenance

BLOCK = {
    "test_acc": 0.9,
    "class_acc": 0.6,
    "worst_class_acc": 0.6,
    "worst_group_acc": None,
    "mean_acc_train_weighted": None,
}


@pytest.fixture(scope="module")
def provenance():
    with Provenance(device="cpu") as prov:
        pass
    return prov.as_dict()


@pytest.fixture
def mitigation(provenance):
    return make_record(
        task="mitigation",
        dataset="spurious-shapes",
        model="resnet18",
        method={"finder": "counterfactual", "editor": "neuroinspect"},
        seed=0,
        metrics={"before": dict(BLOCK), "after": {**BLOCK, "class_acc": 0.7}},
        config={"lr": 1e-3, "neurons": [1, 2]},
        provenance=provenance,
        class_idx=1,
    )


def test_make_record_fills_the_schema(mitigation):
    assert mitigation["schema_version"] == 1
    assert mitigation["task"] == "mitigation"
    assert len(mitigation["run_id"]) == 12
    prov = mitigation["provenance"]
    for key in ("versions", "git_commit", "device", "started_at", "wall_seconds"):
        assert key in prov
    assert prov["versions"]["torch"] == __import__("torch").__version__
    assert prov["device"].startswith("cpu")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("seed"), "'seed' is missing"),
        (lambda r: r.update(task="training"), "'task' is 'training'"),
        (lambda r: r.update(class_idx=-1), "'class_idx'"),
        (lambda r: r.update(method={}), "'method'"),
        (lambda r: r["metrics"].pop("after"), "'metrics.after' is missing"),
        (lambda r: r["metrics"]["after"].update(test_acc=91.7), "'metrics.after.test_acc'"),
        (
            lambda r: r["metrics"]["before"].pop("worst_group_acc"),
            "'metrics.before.worst_group_acc' is missing",
        ),
        (
            lambda r: r["metrics"]["before"].update(worst_class_acc=None),
            "'metrics.before.worst_class_acc' is null",
        ),
        (lambda r: r["provenance"]["versions"].pop("timm"), "'provenance.versions.timm' is missing"),
        (lambda r: r["provenance"].update(wall_seconds=-1), "'provenance.wall_seconds'"),
        (lambda r: r.update(schema_version=2), "'schema_version'"),
    ],
)
def test_validation_names_the_field(mitigation, mutate, field):
    bad = copy.deepcopy(mitigation)
    mutate(bad)
    with pytest.raises(
        RecordError, match=f"invalid result record.*{field}".replace("(", r"\(").replace(")", r"\)")
    ):
        validate_record(bad)


def test_evaluation_records_need_the_accuracy_keys(provenance):
    with pytest.raises(RecordError, match="'metrics.class_acc' is missing"):
        make_record(
            "evaluation", "toy", "resnet18", {"evaluator": "accuracy"}, 0, {"test_acc": 0.5}, {}, provenance
        )


def test_append_and_read_round_trip(tmp_path, mitigation):
    path = tmp_path / "results.jsonl"
    second = dict(mitigation, run_id="second", seed=1)
    append_records(path, [mitigation])
    append_records(path, [second])
    back = read_records(path)
    assert back == [mitigation, second]
    assert len(path.read_text().splitlines()) == 2


def test_append_refuses_an_invalid_record_and_keeps_the_file(tmp_path, mitigation):
    path = tmp_path / "results.jsonl"
    append_records(path, [mitigation])
    before = path.read_text()
    with pytest.raises(RecordError, match="new record 1.*'seed'"):
        append_records(path, [mitigation, {k: v for k, v in mitigation.items() if k != "seed"}])
    assert path.read_text() == before


def test_corrupt_line_is_reported_with_its_number(tmp_path, mitigation):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(mitigation) + "\n" + '{"run_id": "x", \n')
    with pytest.raises(RecordError, match=r"results.jsonl:2\): not valid JSON"):
        read_records(path)


def test_invalid_line_names_line_and_field(tmp_path, mitigation):
    bad = copy.deepcopy(mitigation)
    bad["metrics"]["after"]["class_acc"] = 1.5
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (mitigation, mitigation, bad)) + "\n")
    with pytest.raises(RecordError, match=r"results.jsonl:3\).*'metrics.after.class_acc'"):
        read_records(path)


def test_missing_result_file(tmp_path):
    with pytest.raises(RecordError, match="does not exist"):
        read_records(tmp_path / "none.jsonl")


def test_run_key_is_the_identity_of_a_run(mitigation):
    """Two records are the same run (a duplicate for --resume and the leaderboard) exactly when task,
    dataset, its fingerprint, model, method, class, seed, neuron, source and the non-volatile config
    agree; ids, timings, paths and metrics do not count."""
    from neuroinspect.harness.records import run_key

    base = run_key(mitigation)
    differs = {
        "task": "evaluation",
        "dataset": "waterbirds",
        "dataset_fingerprint": {"sha256": "ab" * 32},
        "model": "resnet50",
        "method": {"finder": "random", "editor": "neuroinspect"},
        "class_idx": 2,
        "seed": 1,
        "neuron": 7,
        "source": "reported",
        "config": {**mitigation["config"], "lr": 1e-2},
    }
    for field, value in differs.items():
        assert run_key({**mitigation, field: value}) != base, field
    same = {
        "run_id": "another-id",
        "metrics": {"before": dict(BLOCK), "after": dict(BLOCK)},
        "provenance": {},
        "config": {
            **mitigation["config"],
            "checkpoint": "elsewhere.pt",
            "device": "cuda",
            "started_at": "2030-01-01",
            "features_path": "/tmp/f.pt",
            "work_dir": "/tmp/w",
        },
    }
    for field, value in same.items():
        assert run_key({**mitigation, field: value}) == base, field
    # a record without a config is the run with an empty one; the order of config keys is irrelevant
    assert run_key({**mitigation, "config": None}) == run_key({**mitigation, "config": {}})
    assert run_key({**mitigation, "config": {"neurons": [1, 2], "lr": 1e-3}}) == base
    assert json.loads(base)["config"] == {"lr": 1e-3, "neurons": [1, 2]}
    # records read back from files written by other code: the order of an object's keys and numpy
    # scalars or tuples in place of plain numbers and lists do not make another run
    method = dict(reversed(list(mitigation["method"].items())))
    assert list(method) != list(mitigation["method"])
    assert run_key({**mitigation, "method": method}) == base
    numpy_config = {"lr": np.float64(1e-3), "neurons": (np.int64(1), 2)}
    assert run_key({**mitigation, "seed": np.int64(0), "config": numpy_config}) == base
