"""Result records: one JSON object per run, in JSON Lines files; the leaderboards' only input.

Schema (DESIGN.md): ``schema_version``, ``run_id``, ``task`` (mitigation | neuron_recovery |
visualization | study | evaluation), ``dataset``, ``model``, ``class_idx`` (int or null), ``method``
(dict of role → name, e.g. ``{"finder": "counterfactual", "editor": "neuroinspect"}``), ``seed``,
``metrics`` (task-specific, below; a ``study`` record's in :data:`STUDY_METRICS`), ``config``
(every hyperparameter used), ``provenance`` (versions, git commit, device, start time, wall seconds).

Optional ``dataset_fingerprint``: the split sizes, group counts and content hash of the data the run
measured on (:mod:`neuroinspect.datasets.fingerprint`); published rows join a measured leaderboard
table only when it shows the official release.

Optional ``source``: ``"reported"`` marks a number copied from a publication (it must carry a
``citation``; metrics the publication does not give are null, and a mitigation record's ``before``
may be null); anything else counts as measured.

Records are validated when written and when read; an invalid record raises :class:`RecordError`
naming the field.
"""

from __future__ import annotations

import json
import math
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
#: metrics every ``study`` record carries (one record per condition of a study; fractions in [0, 1]):
#: ``task_type``; ``accuracy`` (trial-level, null for ratings) with its ``ci_low``/``ci_high`` by
#: ``ci_method`` ("wilson" for measured, "2sem" where a publication gives mean ± 2 SEM);
#: ``participant_mean`` ± ``participant_2sem`` and the bootstrap interval ``boot_low``/``boot_high``
#: over participants; ``n_participants``, ``n_trials`` (main trials), ``n_excluded`` (participants
#: excluded from the study); ``chance`` and the binomial ``p_value`` against it; ``participants``:
#: "human", "simulated" or "mixed".
STUDY_METRICS = (
    "task_type",
    "accuracy",
    "ci_low",
    "ci_high",
    "ci_method",
    "participant_mean",
    "participant_2sem",
    "boot_low",
    "boot_high",
    "n_participants",
    "n_trials",
    "n_excluded",
    "chance",
    "p_value",
    "participants",
)
#: a rating study's records also carry the participant-level mean rating with its t-interval and 2 SEM
RATING_METRICS = ("mean_rating", "rating_ci_low", "rating_ci_high", "rating_2sem")
STUDY_TASK_TYPES = ("2afc", "labelling", "mistake", "rating")
STUDY_PARTICIPANTS = ("human", "simulated", "mixed")
STUDY_CI_METHODS = ("wilson", "2sem")


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
    wall = prov["wall_seconds"]
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or wall < 0:
        _fail(where, f"field 'provenance.wall_seconds' must be a non-negative number, got {wall!r}")
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
        # flat metrics.precision_at_k, or one per neuron list: metrics.lists.<list>.precision_at_k
        lists = metrics.get("lists")
        blocks = {f"lists.{n}.": b for n, b in lists.items()} if isinstance(lists, Mapping) else {}
        if "precision_at_k" in metrics or not blocks:
            blocks[""] = metrics
        for prefix, block in blocks.items():
            pk = block.get("precision_at_k") if isinstance(block, Mapping) else None
            if not isinstance(pk, Mapping):
                _fail(where, f"field 'metrics.{prefix}precision_at_k' must be an object of k -> precision")
                continue
            for k, v in pk.items():
                _check_fraction(where, f"metrics.{prefix}precision_at_k.{k}", v, nullable=False)
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
    elif record["task"] == "study":
        _check_study(where, record, reported)
    if record.get("dataset_fingerprint") is not None:
        from neuroinspect.datasets.fingerprint import validate_fingerprint

        problem = validate_fingerprint(record["dataset_fingerprint"])
        if problem:
            _fail(where, f"field 'dataset_fingerprint' {problem}")
    return dict(record)


def _check_number(where: str, field: str, value: Any, nullable: bool, minimum: float | None = None) -> None:
    if value is None:
        if not nullable:
            _fail(where, f"field '{field}' is null but must be a number")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        _fail(where, f"field '{field}' must be a number (or null where it does not apply), got {value!r}")
    if minimum is not None and value < minimum:
        _fail(where, f"field '{field}' must be at least {minimum:g}, got {value!r}")


def _check_count(where: str, field: str, value: Any, nullable: bool, minimum: int) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(where, f"field '{field}' must be an integer >= {minimum}, got {value!r}")


def _check_interval(where: str, prefix: str, low: Any, mid: Any, high: Any) -> None:
    """``low <= mid <= high`` where all three are given (a small tolerance for rounding)."""
    if low is None or high is None:
        return
    if low > high + 1e-9:
        _fail(where, f"field '{prefix}' has its lower end {low!r} above its upper end {high!r}")
    if mid is not None and not (low - 1e-9 <= mid <= high + 1e-9):
        _fail(where, f"field '{prefix}' ({low!r}, {high!r}) does not contain its estimate {mid!r}")


def _check_study(where: str, record: Mapping[str, Any], reported: bool) -> None:
    """A ``study`` record: one condition of a human-understanding study (see :data:`STUDY_METRICS`).

    A measured record carries every statistic. A reported record (a publication's number) must
    carry the task type, who the participants were, and the accuracy with its chance level (a mean
    rating for ratings); it may leave out, or null, what the publication does not give.
    """
    if record["class_idx"] is not None:
        _fail(where, "field 'class_idx' must be null for a study record (a study is not about one class)")
    method = record["method"]
    for key in ("condition", "visualizer"):
        if key not in method:
            _fail(
                where, f"field 'method.{key}' is missing (a study record names its condition and visualizer)"
            )
    given = record["metrics"]
    required: tuple[str, ...] = STUDY_METRICS
    if reported:
        required = ("task_type", "participants")
        if given.get("task_type") != "rating":
            required += ("accuracy", "chance")
    for key in required:
        if key not in given:
            _fail(where, f"field 'metrics.{key}' is missing (study records need {', '.join(required)})")
    metrics = {key: given.get(key) for key in (*STUDY_METRICS, *RATING_METRICS)}
    task_type = metrics["task_type"]
    if task_type not in STUDY_TASK_TYPES:
        _fail(
            where,
            f"field 'metrics.task_type' is {task_type!r}; expected one of {', '.join(STUDY_TASK_TYPES)}",
        )
    if metrics["participants"] not in STUDY_PARTICIPANTS:
        _fail(
            where,
            f"field 'metrics.participants' is {metrics['participants']!r}; expected one of "
            f"{', '.join(STUDY_PARTICIPANTS)} (simulated participants are never reported as people)",
        )
    _check_count(where, "metrics.n_participants", metrics["n_participants"], nullable=reported, minimum=1)
    _check_count(where, "metrics.n_trials", metrics["n_trials"], nullable=reported, minimum=1)
    _check_count(where, "metrics.n_excluded", metrics["n_excluded"], nullable=reported, minimum=0)
    _check_fraction(where, "metrics.p_value", metrics["p_value"], nullable=reported or task_type == "rating")
    if task_type == "rating":
        for key in ("accuracy", "chance", "ci_low", "ci_high"):
            if metrics[key] is not None:
                _fail(
                    where,
                    f"field 'metrics.{key}' must be null for a rating study (ratings have no right answer)",
                )
        for key in RATING_METRICS if not reported else ("mean_rating",):
            if key not in given:
                _fail(
                    where,
                    f"field 'metrics.{key}' is missing (rating studies need {', '.join(RATING_METRICS)})",
                )
        _check_number(where, "metrics.mean_rating", metrics["mean_rating"], nullable=False)
        _check_number(where, "metrics.rating_ci_low", metrics["rating_ci_low"], nullable=reported)
        _check_number(where, "metrics.rating_ci_high", metrics["rating_ci_high"], nullable=reported)
        _check_number(where, "metrics.rating_2sem", metrics["rating_2sem"], nullable=True, minimum=0)
        _check_interval(
            where,
            "metrics.rating_ci_low/high",
            metrics["rating_ci_low"],
            metrics["mean_rating"],
            metrics["rating_ci_high"],
        )
        return
    _check_fraction(where, "metrics.accuracy", metrics["accuracy"], nullable=False)
    _check_fraction(where, "metrics.chance", metrics["chance"], nullable=False)
    if metrics["chance"] in (0, 1):
        _fail(where, f"field 'metrics.chance' must be strictly between 0 and 1, got {metrics['chance']!r}")
    if not (reported and metrics["ci_method"] is None) and metrics["ci_method"] not in STUDY_CI_METHODS:
        _fail(
            where,
            f"field 'metrics.ci_method' is {metrics['ci_method']!r}; expected one of {', '.join(STUDY_CI_METHODS)}",
        )
    for key in ("ci_low", "ci_high", "participant_mean", "boot_low", "boot_high"):
        _check_fraction(where, f"metrics.{key}", metrics[key], nullable=reported)
    _check_number(where, "metrics.participant_2sem", metrics["participant_2sem"], nullable=True, minimum=0)
    _check_interval(
        where, "metrics.ci_low/ci_high", metrics["ci_low"], metrics["accuracy"], metrics["ci_high"]
    )
    _check_interval(
        where,
        "metrics.boot_low/boot_high",
        metrics["boot_low"],
        metrics["participant_mean"],
        metrics["boot_high"],
    )


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


#: Config keys that say where a run wrote or read things, or how it was run, not what it measured:
#: two runs that differ only in them are the same run (keys ending in ``_path`` / ``_dir`` count too).
VOLATILE_CONFIG_KEYS = frozenset(
    {"checkpoint", "out", "results", "device", "num_workers", "started_at", "wall_seconds", "cache_dir"}
)


def _identity(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): _identity(v)
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            if k not in VOLATILE_CONFIG_KEYS and not str(k).endswith(("_path", "_dir"))
        }
    if isinstance(value, (list, tuple)):
        return [_identity(v) for v in value]
    return value


def run_key(record: Mapping[str, Any]) -> str:
    """What makes two records the same run: task, dataset (and its fingerprint, when recorded), model,
    method, class, seed, neuron and config (without :data:`VOLATILE_CONFIG_KEYS`), as one canonical
    JSON string."""
    ident = {
        k: record.get(k)
        for k in (
            "task",
            "dataset",
            "dataset_fingerprint",
            "model",
            "method",
            "class_idx",
            "seed",
            "neuron",
            "source",
        )
    }
    ident["config"] = _identity(record.get("config") or {})
    return json.dumps(ident, sort_keys=True, default=_jsonable)


def describe_run(record: Mapping[str, Any]) -> str:
    """``mitigation editor=neuroinspect on spurious-shapes / resnet18@64px, class 1, seed 0``."""
    method = ", ".join(f"{k}={v}" for k, v in (record.get("method") or {}).items())
    cls = "" if record.get("class_idx") is None else f", class {record['class_idx']}"
    neuron = "" if record.get("neuron") is None else f", neuron {record['neuron']}"
    return f"{record.get('task')} {method} on {record.get('dataset')} / {record.get('model')}{cls}{neuron}, seed {record.get('seed')}"


def check_new_runs(
    path: str | Path, records: Iterable[Mapping[str, Any]], *, replace: bool = False
) -> list[str]:
    """The lines of ``path`` that :func:`append_records` keeps when it appends ``records``.

    A record whose run (:func:`run_key`) is already in the file raises a :class:`RecordError` naming
    the run, its line and the fix, unless ``replace`` (``--overwrite``): then the old lines of those
    runs are left out. Call it before writing a run's other outputs to refuse early.
    """
    path = Path(path)
    keys = {run_key(r) for r in records}
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    kept: list[str] = []
    for lineno, line in enumerate(existing.splitlines(), start=1):
        if line.strip():
            try:
                old = json.loads(line)
            except json.JSONDecodeError:
                old = None
            if isinstance(old, Mapping) and run_key(old) in keys:
                if not replace:
                    raise RecordError(
                        f"{path}:{lineno} already holds this run ({describe_run(old)}); the new record was not "
                        "appended. Pass --overwrite to replace it, or change the seed or settings."
                    )
                continue
        kept.append(line + "\n")
    return kept


def append_records(path: str | Path, records: Iterable[Mapping[str, Any]], *, replace: bool = False) -> Path:
    """Validate ``records`` and append them to the JSON Lines file ``path`` (rewritten atomically).

    A record whose run (:func:`run_key`) is already in the file is never appended a second time (a
    leaderboard would count it as another seed): a :class:`RecordError` names the run and the fix,
    and nothing is written. With ``replace`` the old records of those runs are dropped instead
    (``--overwrite``); records of other runs are always kept.
    """
    new = [validate_record(r, where=f" (new record {i})") for i, r in enumerate(records)]
    kept = check_new_runs(path, new, replace=replace)
    lines = "".join(json.dumps(r, sort_keys=False, default=_jsonable) + "\n" for r in new)
    return atomic_write_text(path, "".join(kept) + lines)


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
