"""The record validator refuses every record the schema rules out, and the leaderboard groups every
record type it reads into the right rows.

The schema is the docstring of :mod:`neuroinspect.harness.records` (and DESIGN.md "Result records").
Each rejection below names the field it must name; each acceptance is the edge the schema allows
(null where a metric does not apply, a published record without a "before" block, ...).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from neuroinspect.errors import RecordError
from neuroinspect.harness.records import (
    ACCURACY_KEYS,
    PROVENANCE_REQUIRED,
    REQUIRED,
    TASKS,
    VERSION_KEYS,
    read_records,
    validate_record,
)
from neuroinspect.leaderboards import build_tables, load_records

PROV = {
    "versions": {k: "1.0" for k in VERSION_KEYS},
    "git_commit": "abc",
    "device": "cpu",
    "started_at": "2026-01-01T00:00:00+00:00",
    "wall_seconds": 1.5,
}


def block(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "test_acc": 0.9,
        "class_acc": 0.7,
        "worst_class_acc": 0.6,
        "worst_group_acc": 0.5,
        "mean_acc_train_weighted": 0.8,
    }
    b.update(kw)
    return b


def study_metrics(accuracy: float = 0.7) -> dict[str, Any]:
    """One condition of a 2AFC study (the study schema itself: ``test_study_records.py``)."""
    return {
        "task_type": "2afc",
        "accuracy": accuracy,
        "ci_low": accuracy - 0.05,
        "ci_high": accuracy + 0.05,
        "ci_method": "wilson",
        "participant_mean": accuracy,
        "participant_2sem": 0.04,
        "boot_low": accuracy - 0.06,
        "boot_high": accuracy + 0.06,
        "n_participants": 20,
        "n_trials": 200,
        "n_excluded": 1,
        "chance": 0.5,
        "p_value": 0.001,
        "participants": "simulated",
    }


#: a valid ``method`` of each task (a study record names its condition and visualizer)
METHOD = {
    "mitigation": {"finder": "counterfactual", "editor": "neuroinspect"},
    "evaluation": {"evaluator": "accuracy"},
    "neuron_recovery": {"finder": "counterfactual"},
    "visualization": {"visualizer": "lucent"},
    "study": {"condition": "synthetic", "visualizer": "clip_illusion"},
}


def base(task: str = "mitigation", **kw: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "mitigation": {"before": block(), "after": block(test_acc=0.92)},
        "evaluation": block(),
        "neuron_recovery": {"precision_at_k": {"5": 0.4, "10": 0.3}},
        "visualization": {"faithfulness": {"deletion_auc": 0.3}, "label": "x"},
        "study": study_metrics(),
    }.get(task, {})
    rec: dict[str, Any] = {
        "schema_version": 1,
        "run_id": "r1",
        "task": task,
        "dataset": "spurious-shapes",
        "model": "resnet18",
        "class_idx": None if task == "study" else 1,
        "method": METHOD.get(task, METHOD["mitigation"]),
        "seed": 0,
        "metrics": metrics,
        "config": {"lr": 0.001},
        "provenance": copy.deepcopy(PROV),
    }
    rec.update(kw)
    return rec


def rejects(record: Any, field: str) -> None:
    with pytest.raises(RecordError, match="invalid result record") as err:
        validate_record(record)
    assert field in str(err.value), str(err.value)


# -- the envelope ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_a_valid_record_of_every_task_passes(task: str) -> None:
    rec = base(task)
    assert validate_record(rec) == rec


@pytest.mark.parametrize("thing", [[1, 2], "record", None, 3])
def test_a_record_must_be_an_object(thing: Any) -> None:
    rejects(thing, "a record must be a JSON object")


@pytest.mark.parametrize("key", REQUIRED)
def test_every_required_field_is_required(key: str) -> None:
    rec = base()
    del rec[key]
    rejects(rec, f"required field '{key}' is missing")


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("schema_version", 2, "'schema_version'"),
        ("schema_version", "1", "'schema_version'"),
        ("run_id", "", "'run_id'"),
        ("run_id", 7, "'run_id'"),
        ("task", "training", "'task'"),
        ("task", None, "'task'"),
        ("dataset", "", "'dataset'"),
        ("dataset", ["a"], "'dataset'"),
        ("model", "", "'model'"),
        ("model", None, "'model'"),
        ("class_idx", -1, "'class_idx'"),
        ("class_idx", 1.0, "'class_idx'"),
        ("class_idx", True, "'class_idx'"),
        ("class_idx", "1", "'class_idx'"),
        ("method", {}, "'method'"),
        ("method", "neuroinspect", "'method'"),
        ("method", {"editor": 3}, "'method'"),
        ("method", {1: "x"}, "'method'"),
        ("seed", 0.5, "'seed'"),
        ("seed", True, "'seed'"),
        ("seed", "0", "'seed'"),
        ("seed", None, "'seed'"),
        ("metrics", [], "'metrics' must be an object"),
        ("config", "lr=1", "'config' must be an object"),
        ("provenance", None, "'provenance' must be an object"),
    ],
)
def test_envelope_field_types_and_ranges(key: str, value: Any, field: str) -> None:
    rejects(base(**{key: value}), f"field {field}")


@pytest.mark.parametrize("value", [None, 0, 5])
def test_class_idx_may_be_null_or_any_non_negative_integer(value: int | None) -> None:
    validate_record(base(class_idx=value))


@pytest.mark.parametrize("key", PROVENANCE_REQUIRED)
def test_every_provenance_field_is_required(key: str) -> None:
    rec = base()
    del rec["provenance"][key]
    rejects(rec, f"'provenance.{key}' is missing")


@pytest.mark.parametrize("key", VERSION_KEYS)
def test_every_package_version_is_required_null_allowed(key: str) -> None:
    rec = base()
    rec["provenance"]["versions"][key] = None  # absent package: null
    validate_record(rec)
    del rec["provenance"]["versions"][key]
    rejects(rec, f"'provenance.versions.{key}' is missing")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(versions=["torch"]), "'provenance.versions' must be an object"),
        (lambda p: p.update(wall_seconds=-0.1), "'provenance.wall_seconds'"),
        (lambda p: p.update(wall_seconds="1"), "'provenance.wall_seconds'"),
        (lambda p: p.update(wall_seconds=None), "'provenance.wall_seconds'"),
        (lambda p: p.update(wall_seconds=True), "'provenance.wall_seconds'"),
        (lambda p: p.update(wall_seconds=math.nan), "'provenance.wall_seconds'"),
        (lambda p: p.update(wall_seconds=math.inf), "'provenance.wall_seconds'"),
    ],
)
def test_provenance_types(mutate: Callable[[dict], None], field: str) -> None:
    rec = base()
    mutate(rec["provenance"])
    rejects(rec, field)


def test_wall_seconds_zero_is_allowed() -> None:
    rec = base()
    rec["provenance"]["wall_seconds"] = 0
    validate_record(rec)


# -- reported records ---------------------------------------------------------------------------------
@pytest.mark.parametrize("citation", [None, "", "   ", 3])
def test_a_reported_record_needs_a_citation(citation: Any) -> None:
    rec = base(source="reported")
    if citation is not None:
        rec["citation"] = citation
    rejects(rec, "'citation' is missing")
    rec["citation"] = "Ju et al. 2023, Table 2"
    validate_record(rec)


def test_published_metrics_may_be_null_measured_ones_may_not() -> None:
    published = base(source="reported", citation="paper")
    published["metrics"] = {"before": None, "after": block(test_acc=None, worst_class_acc=None)}
    validate_record(published)  # a paper may give only some numbers, and no "before"
    measured = dict(published, source="measured")
    rejects(measured, "'metrics.before' must be an object")
    measured["metrics"] = {"before": block(), "after": block(test_acc=None)}
    rejects(measured, "'metrics.after.test_acc' is null")
    published["metrics"] = {"before": block(), "after": None}
    rejects(published, "'metrics.after' must be an object")  # the mitigated number is the point
    evaluation = base("evaluation", source="reported", citation="paper", metrics=block(test_acc=None))
    validate_record(evaluation)


# -- metrics of each task -------------------------------------------------------------------------------
@pytest.mark.parametrize("part", ["before", "after"])
def test_mitigation_needs_before_and_after(part: str) -> None:
    rec = base()
    del rec["metrics"][part]
    rejects(rec, f"'metrics.{part}' is missing")
    rec["metrics"][part] = [0.9]
    rejects(rec, f"'metrics.{part}' must be an object")


@pytest.mark.parametrize("task", ["mitigation", "evaluation"])
@pytest.mark.parametrize("key", ACCURACY_KEYS)
def test_every_accuracy_key_is_required(task: str, key: str) -> None:
    rec = base(task)
    target = rec["metrics"]["after"] if task == "mitigation" else rec["metrics"]
    prefix = "metrics.after" if task == "mitigation" else "metrics"
    del target[key]
    rejects(rec, f"'{prefix}.{key}' is missing")


@pytest.mark.parametrize("task", ["mitigation", "evaluation"])
@pytest.mark.parametrize("key", ACCURACY_KEYS)
@pytest.mark.parametrize("value", [1.0001, -0.01, 91.7, True, "0.9", math.nan, math.inf, [0.9]])
def test_accuracies_are_fractions(task: str, key: str, value: Any) -> None:
    rec = base(task)
    target = rec["metrics"]["before"] if task == "mitigation" else rec["metrics"]
    prefix = "metrics.before" if task == "mitigation" else "metrics"
    target[key] = value
    rejects(rec, f"'{prefix}.{key}' must be a number in [0, 1]")


@pytest.mark.parametrize("task", ["mitigation", "evaluation"])
@pytest.mark.parametrize("key", ACCURACY_KEYS)
def test_which_accuracies_may_be_null(task: str, key: str) -> None:
    """Test and worst-class accuracy always exist; class, group and train-weighted ones may not apply."""
    rec = base(task)
    target = rec["metrics"]["after"] if task == "mitigation" else rec["metrics"]
    target[key] = None
    if key in ("test_acc", "worst_class_acc"):
        rejects(rec, "is null but must be a number in [0, 1]")
    else:
        validate_record(rec)
    for edge in (0, 1, 0.0, 1.0):
        target[key] = edge
        validate_record(rec)


def test_evaluation_metrics_must_be_an_accuracy_block() -> None:
    rejects(base("evaluation", metrics={"accuracy": 0.9}), "'metrics.test_acc' is missing")


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ({}, "'metrics.precision_at_k' must be an object"),
        ({"precision_at_k": [0.4]}, "'metrics.precision_at_k' must be an object"),
        ({"precision_at_k": {"5": 1.2}}, "'metrics.precision_at_k.5'"),
        ({"precision_at_k": {"5": -0.2}}, "'metrics.precision_at_k.5'"),
        ({"precision_at_k": {"5": None}}, "'metrics.precision_at_k.5' is null"),
        ({"precision_at_k": {"10": True}}, "'metrics.precision_at_k.10'"),
    ],
)
def test_neuron_recovery_precision(metrics: dict, field: str) -> None:
    rejects(base("neuron_recovery", metrics=metrics), field)


def test_the_reader_names_file_line_and_field(tmp_path: Path) -> None:
    bad = base("neuron_recovery", run_id="r2", metrics={"precision_at_k": {"5": 2.0}})
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(base()) + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"results.jsonl:3\).*'metrics.precision_at_k.5'"):
        read_records(path)
    with pytest.raises(RecordError, match=r"results.jsonl:3\).*'metrics.precision_at_k.5'"):
        load_records([path])


# -- grouping of every record type the leaderboard reads ------------------------------------------------
#: config keys that vary between runs of one method without changing what was measured
BOOKKEEPING = {
    "checkpoint": "/runs/s{s}/best.pt",
    "ckpt": "/runs/s{s}/best.pt",
    "out_dir": "/runs/s{s}",
    "output": "/runs/s{s}/o",
    "results": "/runs/s{s}/results.jsonl",
    "root": "/data{s}",
    "device": "cuda:{s}",
    "seed": "{s}",
    "name": "run-{s}",
    "started_at": "2026-01-0{s}",
    "git_commit": "c{s}",
    "cache_dir": "/c{s}",
    "num_workers": "{s}",
    "checkpoint_sha256": "h{s}",
    "edited_checkpoint_path": "/runs/s{s}/e.pt",
    "log_dir": "/l{s}",
    "cache_key": "k{s}",
}


def _metrics(task: str, x: float) -> dict[str, Any]:
    if task == "mitigation":
        return {"before": block(test_acc=0.8), "after": block(test_acc=x)}
    if task == "evaluation":
        return block(test_acc=x)
    if task == "neuron_recovery":
        return {"precision_at_k": {"5": x}}
    if task == "study":
        return study_metrics(x)
    return {"score": x}


def _record(task: str, s: int, x: float, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    rec = base(task, run_id=f"{task}-{s}-{x}", seed=s, metrics=_metrics(task, x), config=config)
    rec.update(kw)
    return validate_record(rec)


def _rows(tmp_path: Path, records: list[dict[str, Any]]) -> list:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return [row for table in build_tables(load_records([path])) for row in table.rows]


def _key(task: str) -> str:
    return {
        "mitigation": "after.test_acc",
        "evaluation": "test_acc",
        "neuron_recovery": "precision_at_k.5",
        "study": "accuracy",
    }.get(task, "score")


@pytest.mark.parametrize("task", TASKS)
def test_bookkeeping_and_outcomes_do_not_split_a_row(task: str, tmp_path: Path) -> None:
    """Three seeds whose configs differ only in paths, devices, hashes, names and the neurons a finder
    picked (at the top level and nested) are one row: mean, std and n over the three."""
    values = (0.5, 0.6, 0.8)
    records = []
    for s, x in enumerate(values):
        noise = {k: v.format(s=s) for k, v in BOOKKEEPING.items()}
        config = {"lr": 0.001, **noise, "neurons": [s, s + 1], "train": {"epochs": 3, **noise}}
        config["dataset_params"] = {"n_train": 24}
        records.append(_record(task, s, x, config))
    (row,) = _rows(tmp_path, records)
    stat = row.metrics[_key(task)]
    assert stat.n == 3 and row.n_seeds == 3 and sorted(row.seeds) == [0, 1, 2]
    assert stat.mean == pytest.approx(sum(values) / 3)
    assert stat.std == pytest.approx(math.sqrt(sum((v - sum(values) / 3) ** 2 for v in values) / 2))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "change",
    [
        {"config": {"lr": 0.01}},
        {"config": {"lr": 0.001, "train": {"epochs": 4}}},
        {"config": {"lr": 0.001, "dataset_params": {"n_train": 48}}},
        {"model": "vit_tiny"},
        {"dataset": "waterbirds"},
        {"class_idx": 0},
        {"method": "other"},
        {"source": "reported", "citation": "paper"},
    ],
    ids=["setting", "nested-setting", "dataset-param", "model", "dataset", "class", "method", "source"],
)
def test_a_setting_method_or_source_change_splits_rows(task: str, change: dict, tmp_path: Path) -> None:
    cfg = {"lr": 0.001, "train": {"epochs": 3}, "dataset_params": {"n_train": 24}}
    if task == "study" and "class_idx" in change:  # a study is not about one class
        with pytest.raises(RecordError, match="'class_idx' must be null"):
            _record(task, 0, 0.7, cfg, **change)
        return
    a = [_record(task, s, 0.5, copy.deepcopy(cfg)) for s in (0, 1)]
    extra = {k: v for k, v in change.items() if k != "config"}
    if extra.get("method") == "other":
        extra["method"] = {role: f"other-{name}" for role, name in METHOD[task].items()}
    b_cfg = {**cfg, **change.get("config", {})}
    b = [_record(task, s, 0.7, b_cfg, **extra) for s in (0, 1)]
    rows = _rows(tmp_path, a + b)
    if task == "visualization" and "class_idx" in change:
        # visualization runs are pooled over their (neuron, class) pairs: one row over both classes
        (row,) = rows
        assert row.metrics[_key(task)].mean == pytest.approx(0.6) and row.metrics[_key(task)].n == 4
        return
    expected = 3 if change.get("source") == "reported" else 2  # a published number is a row of its own
    assert len(rows) == expected
    assert sorted(r.metrics[_key(task)].mean for r in rows) == pytest.approx([0.5] + [0.7] * (expected - 1))


def test_hand_picked_neurons_on_one_seed_are_two_rows(tmp_path: Path) -> None:
    records = [_record("mitigation", 0, x, {"neurons": n}) for x, n in ((0.5, [1, 2]), (0.7, [3, 4]))]
    rows = _rows(tmp_path, records)
    assert sorted(r.metrics["after.test_acc"].mean for r in rows) == [0.5, 0.7]


def test_a_protocol_is_a_table_of_its_own(tmp_path: Path) -> None:
    records = [
        _record("evaluation", 0, x, {"dataset_params": {"protocol": p}}, dataset="metashift")
        for x, p in ((0.5, "catdog"), (0.7, "cce"))
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tables = build_tables(load_records([path]))
    assert len(tables) == 2 and sorted(t.dataset_params["protocol"] for t in tables) == ["catdog", "cce"]


# -- the whole message, with where it came from -----------------------------------------------------------
# A user fixes a record from the message alone: each must name the place (file and line, passed as
# ``where`` by the reader), the field and what is expected, word for word.

TASK_LIST = "mitigation, neuron_recovery, visualization, study, evaluation"
KEYS = "test_acc, class_acc, worst_class_acc, worst_group_acc, mean_acc_train_weighted"


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(rec: dict) -> None:
        *parents, leaf = path.split(".")
        node = rec
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value

    return mutate


_DELETE = object()

MESSAGES: list[tuple[str, str, Callable[[dict], None], str]] = [
    ("mitigation", "seed", _set("seed", _DELETE), "required field 'seed' is missing"),
    (
        "mitigation",
        "schema",
        _set("schema_version", 2),
        "field 'schema_version' is 2; this neuroinspect reads version 1",
    ),
    ("mitigation", "run_id", _set("run_id", ""), "field 'run_id' must be a non-empty string"),
    ("mitigation", "task", _set("task", "x"), f"field 'task' is 'x'; expected one of {TASK_LIST}"),
    ("mitigation", "dataset", _set("dataset", ""), "field 'dataset' must be a non-empty string"),
    ("mitigation", "model", _set("model", 3), "field 'model' must be a non-empty string"),
    (
        "mitigation",
        "class_idx",
        _set("class_idx", -1),
        "field 'class_idx' must be a non-negative integer or null, got -1",
    ),
    (
        "mitigation",
        "method",
        _set("method", {}),
        'field \'method\' must be a non-empty object of role -> name strings, e.g. {"editor": "neuroinspect"}',
    ),
    ("mitigation", "seed type", _set("seed", 0.5), "field 'seed' must be an integer, got 0.5"),
    ("mitigation", "config", _set("config", []), "field 'config' must be an object"),
    ("mitigation", "provenance", _set("provenance.device", _DELETE), "field 'provenance.device' is missing"),
    (
        "mitigation",
        "versions",
        _set("provenance.versions", "1.0"),
        "field 'provenance.versions' must be an object of package -> version",
    ),
    (
        "mitigation",
        "version",
        _set("provenance.versions.captum", _DELETE),
        "field 'provenance.versions.captum' is missing (use null when the package is absent)",
    ),
    (
        "mitigation",
        "wall",
        _set("provenance.wall_seconds", math.inf),
        "field 'provenance.wall_seconds' must be a non-negative number, got inf",
    ),
    (
        "mitigation",
        "citation",
        _set("source", "reported"),
        "field 'citation' is missing: a reported record must say where its numbers were published",
    ),
    (
        "mitigation",
        "after",
        _set("metrics.after", _DELETE),
        "field 'metrics.after' is missing (mitigation records need before and after)",
    ),
    (
        "mitigation",
        "block",
        _set("metrics.before", [0.9]),
        f"field 'metrics.before' must be an object with {KEYS}",
    ),
    (
        "mitigation",
        "key",
        _set("metrics.after.class_acc", _DELETE),
        "field 'metrics.after.class_acc' is missing",
    ),
    (
        "mitigation",
        "null",
        _set("metrics.after.test_acc", None),
        "field 'metrics.after.test_acc' is null but must be a number in [0, 1]",
    ),
    (
        "mitigation",
        "worst class",
        _set("metrics.before.worst_class_acc", "0.6"),
        "field 'metrics.before.worst_class_acc' must be a number in [0, 1] (or null where it does not apply), got '0.6'",
    ),
    (
        "evaluation",
        "range",
        _set("metrics.worst_group_acc", 1.5),
        "field 'metrics.worst_group_acc' must be a number in [0, 1] (or null where it does not apply), got 1.5",
    ),
    (
        "neuron_recovery",
        "precision",
        _set("metrics.precision_at_k", [0.4]),
        "field 'metrics.precision_at_k' must be an object of k -> precision",
    ),
    (
        "neuron_recovery",
        "precision value",
        _set("metrics.precision_at_k.5", -0.1),
        "field 'metrics.precision_at_k.5' must be a number in [0, 1] (or null where it does not apply), got -0.1",
    ),
    (
        "study",
        "study",
        _set("class_idx", 0),
        "field 'class_idx' must be null for a study record (a study is not about one class)",
    ),
    (
        "mitigation",
        "fingerprint",
        _set("dataset_fingerprint", {"classes": 2, "splits": {"test": 10}}),
        "field 'dataset_fingerprint' needs 'sha256', the hash of the split contents",
    ),
]


@pytest.mark.parametrize(("task", "case", "mutate", "message"), MESSAGES, ids=[m[1] for m in MESSAGES])
def test_each_rejection_is_one_exact_message(
    task: str, case: str, mutate: Callable[[dict], None], message: str
) -> None:
    rec = base(task)
    mutate(rec)
    with pytest.raises(RecordError) as err:
        validate_record(rec, where=" (results.jsonl:3)")
    assert str(err.value) == f"invalid result record (results.jsonl:3): {message}"


def test_a_non_object_is_named_with_its_place() -> None:
    with pytest.raises(RecordError) as err:
        validate_record([1], where=" (r.jsonl:9)")
    assert str(err.value) == "invalid result record (r.jsonl:9): a record must be a JSON object"
    with pytest.raises(RecordError) as err:
        validate_record([1])  # no place given: none printed
    assert str(err.value) == "invalid result record: a record must be a JSON object"


def test_a_reported_record_without_before_still_has_its_after_checked() -> None:
    rec = base(source="reported", citation="Paper 2024")
    rec["metrics"]["before"] = None
    assert validate_record(rec) == rec
    rec["metrics"]["after"]["test_acc"] = 1.2
    rejects(rec, "field 'metrics.after.test_acc' must be a number in [0, 1]")


def test_precision_lists_are_checked_one_by_one() -> None:
    lists = {"a": {"precision_at_k": {"5": 0.4}}, "b": {"precision_at_k": {"5": 2.0}}}
    rec = base("neuron_recovery", metrics={"lists": lists})
    rejects(rec, "field 'metrics.lists.b.precision_at_k.5' must be a number in [0, 1]")
    lists["b"] = {"precision": 0.4}
    rejects(rec, "field 'metrics.lists.b.precision_at_k' must be an object of k -> precision")
    lists["b"] = 0.4  # not even an object
    rejects(rec, "field 'metrics.lists.b.precision_at_k' must be an object of k -> precision")
    lists["b"] = {"precision_at_k": {"5": 0.3}}
    assert validate_record(rec) == rec
    # a flat block beside the lists is checked too
    rec["metrics"]["precision_at_k"] = {"10": 1.2}
    rejects(rec, "field 'metrics.precision_at_k.10' must be a number in [0, 1]")


def test_group_records_splits_by_source_and_keeps_each_published_number_apart() -> None:
    """group_records' contract beside build_tables (which hands it measured records only): an absent
    source is "measured"; a reported record is a row of its own, even beside another one that
    differs only in its id; a study's participants split its rows."""
    from neuroinspect.leaderboards.aggregate import LocatedRecord, group_records

    cfg = {"lr": 0.001}
    measured = [_record("evaluation", 0, 0.5, cfg), _record("evaluation", 1, 0.6, cfg, source="measured")]
    reported = [
        _record("evaluation", s, 0.7, cfg, source="reported", citation="paper", run_id=f"pub-{s}")
        for s in (0, 1)
    ]
    located = [LocatedRecord(r, "r.jsonl", i + 1) for i, r in enumerate(measured + reported)]
    groups = sorted(([m.line for m in g], split) for g, split in group_records(located))
    assert groups == [([1, 2], False), ([3], False), ([4], False)]

    people = [_record("study", s, 0.7, cfg) for s in (0, 1)]
    people[1]["metrics"]["participants"] = "human"
    located = [LocatedRecord(r, "r.jsonl", i + 1) for i, r in enumerate(people)]
    assert sorted([m.line for m in g] for g, _ in group_records(located)) == [[1], [2]]


def test_published_spreads_are_read_from_metrics_std(tmp_path: Path) -> None:
    from neuroinspect.leaderboards.aggregate import _reported_spread

    rec = base("mitigation", source="reported", citation="paper")
    rec["metrics"]["std"] = {"after": {"worst_group_acc": 0.002, "test_acc": 1}, "note": "sd over 5 seeds"}
    assert _reported_spread(rec) == {"after.worst_group_acc": 0.002, "after.test_acc": 1.0}
    assert isinstance(_reported_spread(rec)["after.test_acc"], float)
    rec["metrics"]["std"] = [0.1]
    assert _reported_spread(rec) == {}


def test_record_values_give_every_column_of_each_task() -> None:
    from neuroinspect.leaderboards.aggregate import MAX_NESTED_ENTRIES, record_values

    # mitigation: before, after and gain per metric, in the schema's order; a metric only "after"
    # (a published record without its before block) still has its column, with no gain
    rec = base("mitigation")
    rec["metrics"]["before"] = block(worst_group_acc=None, mean_acc_train_weighted=None)
    rec["metrics"]["after"]["mean_acc_reported"] = 0.75
    values = record_values(rec)
    assert list(values)[:6] == [
        "before.test_acc",
        "after.test_acc",
        "gain.test_acc",
        "before.class_acc",
        "after.class_acc",
        "gain.class_acc",
    ]
    assert list(values)[-3:] == [
        "before.mean_acc_reported",
        "after.mean_acc_reported",
        "gain.mean_acc_reported",
    ]
    assert values["gain.test_acc"] == pytest.approx(0.02)
    assert values["before.mean_acc_reported"] is None and values["gain.mean_acc_reported"] is None
    assert values["gain.worst_group_acc"] is None and values["after.worst_group_acc"] == 0.5
    reported = base("mitigation", source="reported", citation="paper")
    reported["metrics"]["before"] = None
    values = record_values(reported)
    assert values["after.test_acc"] == 0.92 and values["before.test_acc"] is None
    assert values["gain.test_acc"] is None

    # evaluation: every accuracy key is a column, null where it does not apply, then other numbers
    ev = base("evaluation", metrics={**block(worst_group_acc=None), "ece": 0.04, "n": 120})
    values = record_values(ev)
    assert list(values)[:5] == list(ACCURACY_KEYS)
    assert values["worst_group_acc"] is None and values["ece"] == 0.04 and values["n"] == 120

    # neuron recovery: every k of a precision curve, however many (beyond the nesting limit of
    # other objects), as floats
    curve = {str(k): 1 for k in range(1, MAX_NESTED_ENTRIES + 3)}
    values = record_values(base("neuron_recovery", metrics={"precision_at_k": curve}))
    assert values == {f"precision_at_k.{k}": 1.0 for k in curve}
    assert all(isinstance(v, float) for v in values.values())


def test_summarize_counts_what_it_averaged() -> None:
    from neuroinspect.leaderboards.aggregate import Stat, summarize

    assert summarize([]) == Stat(None, None, None, 0)
    assert summarize([None, float("nan")]) == Stat(None, None, None, 0)  # nothing to average: n is 0
    assert summarize([0.5, None]) == Stat(0.5, None, None, 1)


def test_visualization_pairs_on_one_seed_are_pooled_not_split(tmp_path: Path) -> None:
    # a visualization run per (neuron, class) pair shares the seed by design: one row over the pairs
    records = [_record("visualization", 0, x, {"neurons": [n]}) for x, n in ((0.5, 1), (0.7, 2))]
    (row,) = _rows(tmp_path, records)
    assert row.metrics["score"].n == 2 and row.metrics["score"].mean == pytest.approx(0.6)
