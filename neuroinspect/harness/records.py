"""Result records: one JSON object per run, in JSON Lines files; the leaderboards' only input.

Schema (DESIGN.md): ``schema_version``, ``run_id``, ``task`` (mitigation | neuron_recovery |
visualization | study | evaluation), ``dataset``, ``model``, ``class_idx`` (int or null), ``method``
(dict of role → name, e.g. ``{"finder": "counterfactual", "editor": "neuroinspect"}``), ``seed``,
``metrics`` (task-specific, below), ``config`` (every hyperparameter used), ``provenance``
(versions, git commit, device, start time, wall seconds).

Optional ``source``: ``"reported"`` marks a number copied from a publication (it must carry a
``citation``; metrics the publication does not give are null, and a mitigation record's ``before``
may be null); anything else counts as measured.

Records are validated when written and when read; an invalid record raises :class:`RecordError`
naming the field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from neuroinspect.errors import RecordError
from neuroinspect.fileio import atomic_write_text

SCHEMA_VERSION = 1
TASKS = ("mitigation", "neuron_recovery", "visualization", "study", "evaluation")
REQUIRED = (
    "schema_version",
    "run_id",
    "task",
    "dataset",
    "model",
    "class_idx",
    "method",
    "seed",
    "metrics",
    "config",
    "provenance",
)
PROVENANCE_REQUIRED = ("versions", "git_commit", "device", "started_at", "wall_seconds")
VERSION_KEYS = ("torch", "timm", "open_clip_torch", "captum", "torch-lucent")
RECOVERY_LISTS = ("insufficient", "excessive", "edited")
ACCURACY_KEYS = ("test_acc", "class_acc", "worst_class_acc", "worst_group_acc", "mean_acc_train_weighted")


def _fail(where: str, msg: str) -> None:
    raise RecordError(f"invalid result record{where}: {msg}")


def _check_fraction(where: str, field: str, value: Any, nullable: bool) -> None:
    if value is None:
        if not nullable:
            _fail(where, f"field '{field}' is null but must be a number in [0, 1]")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        _fail(
            where,
            f"field '{field}' must be a number in [0, 1] (or null where it does not apply), got {value!r}",
        )


def _check_accuracy_block(where: str, prefix: str, block: Any, reported: bool = False) -> None:
    if not isinstance(block, Mapping):
        _fail(where, f"field '{prefix}' must be an object with {', '.join(ACCURACY_KEYS)}")
    for key in ACCURACY_KEYS:
        if key not in block:
            _fail(where, f"field '{prefix}.{key}' is missing")
    # A published number is copied as published: papers leave out some metrics (null here).
    _check_fraction(where, f"{prefix}.test_acc", block["test_acc"], nullable=reported)
    _check_fraction(where, f"{prefix}.worst_class_acc", block["worst_class_acc"], nullable=reported)
    for key in ("class_acc", "worst_group_acc", "mean_acc_train_weighted"):
        _check_fraction(where, f"{prefix}.{key}", block[key], nullable=True)


def validate_record(record: Any, where: str = "") -> dict[str, Any]:
    """Return ``record`` if it follows the schema, else raise :class:`RecordError` naming the field."""
    if not isinstance(record, Mapping):
        _fail(where, "a record must be a JSON object")
    for key in REQUIRED:
        if key not in record:
            _fail(where, f"required field '{key}' is missing")
    if record["schema_version"] != SCHEMA_VERSION:
        _fail(
            where,
            f"field 'schema_version' is {record['schema_version']!r}; this neuroinspect reads version {SCHEMA_VERSION}",
        )
    if not isinstance(record["run_id"], str) or not record["run_id"]:
        _fail(where, "field 'run_id' must be a non-empty string")
    if record["task"] not in TASKS:
        _fail(where, f"field 'task' is {record['task']!r}; expected one of {', '.join(TASKS)}")
    for key in ("dataset", "model"):
        if not isinstance(record[key], str) or not record[key]:
            _fail(where, f"field '{key}' must be a non-empty string")
    ci = record["class_idx"]
    if ci is not None and (isinstance(ci, bool) or not isinstance(ci, int) or ci < 0):
        _fail(where, f"field 'class_idx' must be a non-negative integer or null, got {ci!r}")
    method = record["method"]
    if (
        not isinstance(method, Mapping)
        or not method
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in method.items())
    ):
        _fail(
            where,
            'field \'method\' must be a non-empty object of role -> name strings, e.g. {"editor": "neuroinspect"}',
        )
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        _fail(where, f"field 'seed' must be an integer, got {seed!r}")
    for key in ("metrics", "config", "provenance"):
        if not isinstance(record[key], Mapping):
            _fail(where, f"field '{key}' must be an object")
    prov = record["provenance"]
    for key in PROVENANCE_REQUIRED:
        if key not in prov:
            _fail(where, f"field 'provenance.{key}' is missing")
    if not isinstance(prov["versions"], Mapping):
        _fail(where, "field 'provenance.versions' must be an object of package -> version")
    for key in VERSION_KEYS:
        if key not in prov["versions"]:
            _fail(
                where, f"field 'provenance.versions.{key}' is missing (use null when the package is absent)"
            )
    if not isinstance(prov["wall_seconds"], (int, float)) or prov["wall_seconds"] < 0:
        _fail(where, "field 'provenance.wall_seconds' must be a non-negative number")
    reported = record.get("source") == "reported"
    if reported and (not isinstance(record.get("citation"), str) or not record["citation"].strip()):
        _fail(
            where, "field 'citation' is missing: a reported record must say where its numbers were published"
        )
    metrics = record["metrics"]
    if record["task"] == "mitigation":
        for key in ("before", "after"):
            if key not in metrics:
                _fail(where, f"field 'metrics.{key}' is missing (mitigation records need before and after)")
            if reported and key == "before" and metrics[key] is None:
                continue  # peers publish only the mitigated model's numbers
            _check_accuracy_block(where, f"metrics.{key}", metrics[key], reported=reported)
    elif record["task"] == "evaluation":
        _check_accuracy_block(where, "metrics", metrics, reported=reported)
    elif record["task"] == "neuron_recovery":
        if "precision_at_k" not in metrics or not isinstance(metrics["precision_at_k"], Mapping):
            _fail(where, "field 'metrics.precision_at_k' must be an object of k -> precision")
        for k, v in metrics["precision_at_k"].items():
            _check_fraction(where, f"metrics.precision_at_k.{k}", v, nullable=False)
        # per-list scoring against causal truth (methods.causal_truth): which list, and margin shares
        if "list" in metrics and metrics["list"] not in RECOVERY_LISTS:
            _fail(
                where,
                f"field 'metrics.list' is {metrics['list']!r}; expected one of {', '.join(RECOVERY_LISTS)}",
            )
        shares = metrics.get("margin_share_at_k")
        if shares is not None:
            if not isinstance(shares, Mapping):
                _fail(where, "field 'metrics.margin_share_at_k' must be an object of k -> margin share")
            for k, v in shares.items():
                # a set can carry a negative share (its neurons oppose the gain), never more than all of it
                if (
                    isinstance(v, bool)
                    or not isinstance(v, (int, float))
                    or not -1e9 < float(v) <= 1.0 + 1e-9
                ):
                    _fail(where, f"field 'metrics.margin_share_at_k.{k}' must be a number <= 1, got {v!r}")
    return dict(record)


def make_record(
    task: str,
    dataset: str,
    model: str,
    method: Mapping[str, str],
    seed: int,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    provenance: Mapping[str, Any],
    class_idx: int | None = None,
    run_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A validated record. Extra keyword fields (e.g. ``source="reported"``) are kept as they are."""
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id or uuid.uuid4().hex[:12],
        "task": task,
        "dataset": dataset,
        "model": model,
        "class_idx": class_idx,
        "method": dict(method),
        "seed": int(seed),
        "metrics": json.loads(json.dumps(metrics, default=_jsonable)),
        "config": json.loads(json.dumps(config, default=_jsonable)),
        "provenance": json.loads(json.dumps(provenance, default=_jsonable)),
    }
    record.update(extra)
    return validate_record(record)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def append_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Validate ``records`` and append them to the JSON Lines file ``path`` (rewritten atomically)."""
    path = Path(path)
    new = [validate_record(r, where=f" (new record {i})") for i, r in enumerate(records)]
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    lines = "".join(json.dumps(r, sort_keys=False, default=_jsonable) + "\n" for r in new)
    return atomic_write_text(path, existing + lines)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON Lines file, each validated; :class:`RecordError` names the line and field."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"result file {path} does not exist. Pass a results.jsonl written by neuroinspect.")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(
                f"invalid result record ({path}:{lineno}): not valid JSON ({err.msg})."
            ) from None
        out.append(validate_record(obj, where=f" ({path}:{lineno})"))
    return out
