"""Result records → leaderboard tables: validation with file:line, grouping, statistics over seeds.

A *row* is one (task, dataset, model, class_idx, method, relevant config) combination; its cells are
statistics over the seeds of that combination: the mean, the sample standard deviation (ddof=1,
as WILDS reports), the number of seeds and the half-width of a 95% Student-t interval. A *table* is
one (task, dataset, protocol) combination, with its rows sorted by a headline metric.

Task-specific columns:

- ``mitigation``: for every accuracy metric (``test_acc``, ``class_acc``, ``worst_class_acc``,
  ``worst_group_acc``, ``mean_acc_train_weighted``, plus any other number in both blocks): before,
  after and the gain ``after − before``. The gain is computed per seed and then averaged, so its
  spread is that of the paired differences.
- ``neuron_recovery``: ``precision_at_k`` for every k, and any other numeric metric.
- ``evaluation``: the accuracy metrics, then any other numeric metric.
- ``visualization`` / ``study``: every numeric value in ``metrics`` (nested objects flattened with
  dots, e.g. ``faithfulness.deletion_auc``).

``reported`` records (numbers copied from publications, :mod:`neuroinspect.leaderboards.reported`)
are never averaged with anything: each is its own row, with the spread and seed count the
publication gives (``metrics.std`` and ``config.n_seeds``), beside the measured rows.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.errors import RecordError
from neuroinspect.harness.records import ACCURACY_KEYS, validate_record

#: Config keys that never distinguish rows: paths, devices, bookkeeping (they vary between runs of
#: the same method without changing what was measured). Keys ending in ``_path`` / ``_dir`` /
#: ``_file`` / ``_sha256`` / ``_hash`` are ignored as well, at any depth of the config.
IGNORED_CONFIG_KEYS = frozenset(
    {
        "seed",
        "seeds",
        "device",
        "root",
        "data_root",
        "out",
        "out_dir",
        "output",
        "output_dir",
        "ckpt",
        "checkpoint",
        "results",
        "cache",
        "cache_dir",
        "cache_key",
        "num_workers",
        "no_progress",
        "show_progress",
        "progress",
        "run_dir",
        "log_dir",
        "save_dir",
        "name",
        "n_seeds",
        "started_at",
        "wall_seconds",
        "timestamp",
        "git_commit",
        "sha256",
        "hash",
    }
)
#: Config keys that are outcomes of a run rather than settings (a finder picks different neurons on
#: each seed's model). They are ignored when grouping unless two runs of a group share a seed, in
#: which case the group is split by them (e.g. two hand-picked neuron sets on the same model).
OUTCOME_CONFIG_KEYS = frozenset({"neurons", "class_idx"})
#: Dataset parameters that define a different benchmark and so a table of their own (MetaShift's
#: ``protocol``); other dataset parameters only tell rows apart.
TABLE_PARAMS = ("protocol",)
#: Reported-row bookkeeping in ``config`` that is not a setting of the method.
REPORTED_META_KEYS = frozenset({"notes", "n_seeds", "mean_convention", "table", "source_table"})

#: Human descriptions of the model-selection rules the harness writes in ``config.selection``.
SELECTION_RULES = {
    "val_acc": "best validation accuracy",
    "val_worst_class_acc": "best validation worst-class accuracy (no group labels)",
    "val_worst_group_acc": "best validation worst-group accuracy (uses validation group labels)",
    "last": "last epoch (no selection)",
}

METRIC_LABELS = {
    "test_acc": "Test acc",
    "class_acc": "Class acc",
    "worst_class_acc": "Worst-class acc",
    "worst_group_acc": "WGA",
    "mean_acc_train_weighted": "Mean acc (train-weighted)",
    "mean_acc_reported": "Mean acc (as published)",
    "macro_acc": "Macro acc",
    "chance_precision": "Chance P",
    "chance_spurious_precision": "Chance spurious P",
}
#: Metrics that are fractions in [0, 1] and are shown as percentages.
FRACTION_METRICS = frozenset(ACCURACY_KEYS) | {"mean_acc_reported"}
_FRACTION_HINTS = ("acc", "precision", "recall", "rate", "agreement", "fraction", "proportion", "coverage")
#: A nested metrics object with more entries than this (per-class tables) is not made into columns.
MAX_NESTED_ENTRIES = 12
METHOD_ROLE_ORDER = ("finder", "visualizer", "editor")
#: ``{"precision_at_k": {"5": 0.6}}`` → column "P@5".
AT_K_LABELS = {"precision_at_k": "P", "recall_at_k": "R", "spurious_precision_at_k": "spurious P"}


@dataclass(frozen=True)
class LocatedRecord:
    """A validated record and where it came from (``path``:``line``)."""

    record: dict[str, Any]
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Stat:
    """Statistics of one metric over the runs of a row.

    ``mean``; ``std`` (sample standard deviation, ddof=1; ``None`` for one run, or the published
    spread for reported rows); ``ci95`` (half-width of the 95% Student-t interval,
    ``t_{0.975, n-1} · std / √n``; ``None`` when ``n < 2``); ``n`` (number of values; ``None`` when
    a publication does not say over how many seeds).
    """

    mean: float | None
    std: float | None = None
    ci95: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Column:
    """A metric column: ``key`` (e.g. ``after.worst_group_acc``), header ``label``; ``percent``:
    the values are fractions shown as percentages; ``signed``: a difference shown with its sign;
    ``display``: shown in the Markdown / LaTeX / HTML tables (counts, i.e. metrics that are integers
    in every record, such as ``n_relevant``, go to the CSV only)."""

    key: str
    label: str
    percent: bool = True
    signed: bool = False
    display: bool = True


@dataclass
class Row:
    """One line of a table: a method's results over seeds (or one reported result)."""

    task: str
    dataset: str
    model: str
    class_idx: int | None
    method: dict[str, str]
    source: str
    citation: str | None
    uses_group_labels: bool | None
    selection: str | None
    config: dict[str, Any]
    seeds: list[int]
    run_ids: list[str]
    metrics: dict[str, Stat]
    setting: str = ""
    #: metric keys whose value is an integer in every run (counts)
    int_keys: frozenset[str] = frozenset()
    #: the group was split by outcome keys (:data:`OUTCOME_CONFIG_KEYS`), which then tell rows apart
    split_on_outcomes: bool = False

    @property
    def method_label(self) -> str:
        """The method's names, finder first, then visualizer, then editor (``counterfactual + neuroinspect``)."""
        roles = [r for r in METHOD_ROLE_ORDER if r in self.method] + sorted(
            r for r in self.method if r not in METHOD_ROLE_ORDER
        )
        # editors that ignore neurons record finder "none": the label is then just the editor
        names = [self.method[r] for r in roles if self.method[r] not in ("none", "")]
        return " + ".join(names) or " + ".join(self.method[r] for r in roles)

    @property
    def n_seeds(self) -> int | None:
        if self.source == "reported":
            n = self.config.get("n_seeds")
            return n if isinstance(n, int) and not isinstance(n, bool) else None
        return len(set(self.seeds))

    @property
    def n_runs(self) -> int:
        return len(self.run_ids)


@dataclass
class Table:
    """All rows of one (task, dataset, protocol), with the columns they fill. ``dataset_params`` holds the
    parameters that define the benchmark (:data:`TABLE_PARAMS`), empty for most datasets."""

    task: str
    dataset: str
    dataset_params: dict[str, Any]
    columns: list[Column]
    rows: list[Row]
    sort_key: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.dataset_params.items()))
        name = f"{self.dataset} ({params})" if params else self.dataset
        return f"{self.task.replace('_', ' ').capitalize()} — {name}"

    @property
    def slug(self) -> str:
        params = "-".join(f"{k}-{_short(v)}" for k, v in sorted(self.dataset_params.items()))
        raw = f"{self.task}-{self.dataset}" + (f"-{params}" if params else "")
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in raw).strip("-").lower()

    @property
    def selection_rules(self) -> list[str]:
        return sorted({r.selection for r in self.rows if r.selection})

    @property
    def varying_selection(self) -> bool:
        return len({r.selection for r in self.rows}) > 1


# ----------------------------------------------------------------------------------------- input


def read_located(path: str | Path) -> list[LocatedRecord]:
    """Every record of a JSON Lines file, validated, with its line number.

    A line that is not JSON or does not follow the schema raises :class:`RecordError` naming
    ``file:line`` and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(
            f"result file {path} does not exist. Pass the results.jsonl files written by `neuroinspect bench run`."
        )
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
        out.append(LocatedRecord(validate_record(obj, where=f" ({path}:{lineno})"), str(path), lineno))
    return out


def check_unique_run_ids(records: Iterable[LocatedRecord]) -> None:
    """Raise :class:`RecordError` if two records share a ``run_id`` (a file passed or appended twice)."""
    seen: dict[str, LocatedRecord] = {}
    for rec in records:
        rid = rec.record["run_id"]
        if rid in seen:
            raise RecordError(
                f"duplicate run_id {rid!r} at {seen[rid].where} and {rec.where}: every run needs its own run_id, "
                "so the same result would be counted twice. Remove the repeated line (or pass each results file once)."
            )
        seen[rid] = rec


def load_records(paths: Sequence[str | Path]) -> list[LocatedRecord]:
    """Records of all ``paths``, validated, with duplicate ``run_id`` rejected."""
    records = [rec for p in paths for rec in read_located(p)]
    check_unique_run_ids(records)
    return records


# ---------------------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float | None]) -> Stat:
    """Mean, sample std (ddof=1), n and 95% t-interval half-width of ``values`` (``None`` entries dropped)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return Stat(None, None, None, 0)
    mean = math.fsum(vals) / n
    if n == 1:
        return Stat(mean, None, None, 1)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    return Stat(mean, std, t_quantile_975(n - 1) * std / math.sqrt(n), n)


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def flatten_numeric(metrics: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, int | float]:
    """Numeric leaves of ``metrics`` as ``{"a.b": value}``; lists, strings, booleans and nulls are
    skipped, and so are nested objects with more than :data:`MAX_NESTED_ENTRIES` entries. Integers stay
    integers (counts; see :attr:`Column.display`)."""
    out: dict[str, int | float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if _is_number(value):
            out[name] = value
        elif isinstance(value, Mapping) and depth < 3 and len(value) <= MAX_NESTED_ENTRIES:
            out.update(flatten_numeric(value, prefix=f"{name}.", depth=depth + 1))
    return out


def _block_numbers(block: Any) -> dict[str, float | None]:
    if not isinstance(block, Mapping):
        return {}
    return {k: (float(v) if _is_number(v) else None) for k, v in block.items() if _is_number(v) or v is None}


def record_values(record: Mapping[str, Any]) -> dict[str, int | float | None]:
    """The numbers of one record that become columns, keyed by column key."""
    task, metrics = record["task"], record["metrics"]
    out: dict[str, int | float | None] = {}
    if task == "mitigation":
        before, after = _block_numbers(metrics.get("before")), _block_numbers(metrics.get("after"))
        for key in sorted(set(before) | set(after), key=metric_order):
            b, a = before.get(key), after.get(key)
            out[f"before.{key}"] = b
            out[f"after.{key}"] = a
            out[f"gain.{key}"] = a - b if a is not None and b is not None else None
    elif task == "neuron_recovery":
        for k, v in metrics.get("precision_at_k", {}).items():
            out[f"precision_at_k.{k}"] = float(v)
        out.update({k: v for k, v in flatten_numeric(metrics).items() if not k.startswith("precision_at_k.")})
    elif task == "evaluation":
        for key in ACCURACY_KEYS:
            v = metrics.get(key)
            out[key] = float(v) if _is_number(v) else None
        out.update({k: v for k, v in flatten_numeric(metrics).items() if k not in out})
    else:
        out.update(flatten_numeric(metrics))
    return out


def _reported_spread(record: Mapping[str, Any]) -> dict[str, float]:
    """Published spreads: ``metrics.std`` mirrors the metric layout (``{"after": {"worst_group_acc": 0.002}}``)."""
    std = record["metrics"].get("std")
    if not isinstance(std, Mapping):
        return {}
    return {k: float(v) for k, v in flatten_numeric(std).items()}


def metric_order(key: str) -> tuple[int, str]:
    """Sort key of accuracy metric names: the schema's order, then the rest alphabetically."""
    order = (*ACCURACY_KEYS, "mean_acc_reported")
    return (order.index(key), key) if key in order else (len(order), key)


# ------------------------------------------------------------------------------------------ grouping


def _ignored(key: str) -> bool:
    return key in IGNORED_CONFIG_KEYS or key.endswith(("_path", "_dir", "_file", "_sha256", "_hash"))


def _clean(obj: Any, drop_outcomes: bool) -> Any:
    """``obj`` without ignored keys (and outcome keys when ``drop_outcomes``), at every depth."""
    if isinstance(obj, Mapping):
        return {
            k: _clean(v, drop_outcomes)
            for k, v in obj.items()
            if not _ignored(str(k)) and not (drop_outcomes and k in OUTCOME_CONFIG_KEYS)
        }
    return obj


def _config_part(config: Mapping[str, Any], drop_outcomes: bool) -> dict[str, Any]:
    return {k: v for k, v in _clean(config, drop_outcomes).items() if k != "dataset_params"}


def _dataset_params(config: Mapping[str, Any]) -> dict[str, Any]:
    params = config.get("dataset_params")
    return dict(params) if isinstance(params, Mapping) else {}


def _protocol(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the dataset parameters that makes a different benchmark (its own table)."""
    params = _dataset_params(config)
    return {k: params[k] for k in TABLE_PARAMS if k in params}


def _fingerprint(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _base_key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    source = rec.get("source", "measured")
    return (
        rec["task"],
        rec["dataset"],
        _fingerprint(_dataset_params(rec["config"])),
        rec["model"],
        rec["class_idx"],
        _fingerprint(rec["method"]),
        source,
        # a published number is one row of its own
        rec["run_id"] if source == "reported" else "",
    )


def group_records(records: Sequence[LocatedRecord]) -> list[tuple[list[LocatedRecord], bool]]:
    """Records grouped into rows: same task, dataset, dataset params, model, class, method, source and
    relevant config (all config keys except :data:`IGNORED_CONFIG_KEYS` and path-like ones).

    Outcome keys (:data:`OUTCOME_CONFIG_KEYS`, e.g. the neurons a finder picked on each seed) are
    left out unless two runs of a group share a seed; then the group is split by them. Returns
    ``(members, split_on_outcomes)`` pairs.
    """
    coarse: dict[tuple[Any, ...], list[LocatedRecord]] = defaultdict(list)
    for lr in records:
        key = (*_base_key(lr.record), _fingerprint(_config_part(lr.record["config"], drop_outcomes=True)))
        coarse[key].append(lr)
    groups: list[tuple[list[LocatedRecord], bool]] = []
    for members in coarse.values():
        seeds = [m.record["seed"] for m in members]
        if len(seeds) == len(set(seeds)):
            groups.append((members, False))
            continue
        fine: dict[str, list[LocatedRecord]] = defaultdict(list)
        for m in members:
            fine[_fingerprint(_config_part(m.record["config"], drop_outcomes=False))].append(m)
        groups.extend((g, True) for g in fine.values())
    return groups


def _selection_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return SELECTION_RULES.get(value, value)
    return _fingerprint(value)


def _make_row(members: Sequence[LocatedRecord], split_on_outcomes: bool = False) -> Row:
    first = members[0].record
    source = first.get("source", "measured") or "measured"
    per_run = [record_values(m.record) for m in members]
    keys: list[str] = []
    for values in per_run:
        keys.extend(k for k in values if k not in keys)
    if source == "reported":
        spread = _reported_spread(first)
        n = first["config"].get("n_seeds")
        n = n if isinstance(n, int) and not isinstance(n, bool) else None
        stats = {}
        for k in keys:
            v = per_run[0][k]
            sd = spread.get(k)
            ci = t_quantile_975(n - 1) * sd / math.sqrt(n) if sd is not None and n and n > 1 else None
            stats[k] = Stat(v, sd, ci, n if v is not None else 0)
    else:
        stats = {k: summarize([values.get(k) for values in per_run]) for k in keys}
    int_keys = frozenset(
        k
        for k in keys
        if any(values.get(k) is not None for values in per_run)
        and all(isinstance(values.get(k), int) for values in per_run if values.get(k) is not None)
    )
    ugl = first["config"].get("uses_group_labels")
    return Row(
        task=first["task"],
        dataset=first["dataset"],
        model=first["model"],
        class_idx=first["class_idx"],
        method=dict(first["method"]),
        source=source,
        citation=first.get("citation"),
        uses_group_labels=ugl if isinstance(ugl, bool) else None,
        selection=_selection_text(first["config"].get("selection")),
        config=dict(first["config"]),
        seeds=[m.record["seed"] for m in members],
        run_ids=[m.record["run_id"] for m in members],
        metrics=stats,
        split_on_outcomes=split_on_outcomes,
        int_keys=int_keys,
    )


# -------------------------------------------------------------------------------------------- tables


def _column(key: str, rows: Sequence[Row]) -> Column:
    head, _, metric = key.partition(".")
    if head in ("before", "after", "gain"):
        label = METRIC_LABELS.get(metric, metric)
        label = f"Δ {label}" if head == "gain" else f"{label} {head}"
        # a gain is in the units of its before/after values (a difference may be negative)
        probe = f"after.{metric}" if head == "gain" else key
        return Column(
            key,
            label,
            percent=metric in FRACTION_METRICS or _looks_fraction(metric, probe, rows),
            signed=head == "gain",
        )
    if head in AT_K_LABELS and metric:
        return Column(key, f"{AT_K_LABELS[head]}@{metric}", percent=True)
    label = METRIC_LABELS.get(key, key)
    counts = all(key in r.int_keys for r in rows if key in r.metrics)
    return Column(
        key, label, percent=key in FRACTION_METRICS or _looks_fraction(key, key, rows), display=not counts
    )


def _looks_fraction(name: str, key: str, rows: Sequence[Row]) -> bool:
    if not any(h in name.lower() for h in _FRACTION_HINTS):
        return False
    means = [m for r in rows if key in r.metrics and (m := r.metrics[key].mean) is not None]
    return bool(means) and all(0.0 <= m <= 1.0 for m in means)


_SORT_PREFERENCE = {
    "mitigation": ("after.worst_group_acc", "after.worst_class_acc", "after.class_acc", "after.test_acc"),
    "evaluation": ("worst_group_acc", "worst_class_acc", "test_acc"),
}


def _sort_key_for(task: str, keys: Sequence[str], rows: Sequence[Row]) -> str | None:
    def filled(k: str) -> bool:
        return any(k in r.metrics and r.metrics[k].mean is not None for r in rows)

    if task in _SORT_PREFERENCE:
        for k in _SORT_PREFERENCE[task]:
            if filled(k):
                return k
    if task == "neuron_recovery":
        pk = sorted(
            (k for k in keys if k.startswith("precision_at_k.")),
            key=lambda k: _num_or_inf(k.split(".", 1)[1]),
        )
        pk = [k for k in pk if filled(k)]
        if pk:
            return next((k for k in pk if k == "precision_at_k.5"), pk[0])
    return next((k for k in keys if filled(k)), None)


def _at_k_order(key: str) -> tuple[int, float, str]:
    """P@k, then R@k, then spurious P@k (k ascending), then the other metrics by name."""
    families = list(AT_K_LABELS)
    head, _, tail = key.partition(".")
    if head in AT_K_LABELS and tail:
        return (families.index(head), _num_or_inf(tail), key)
    return (len(families), 0.0, key)


def _num_or_inf(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _short(v: Any) -> str:
    return v if isinstance(v, str) else _fingerprint(v)


def _flat_config(config: Mapping[str, Any], outcomes: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _clean(config, drop_outcomes=not outcomes).items():
        if k in ("selection", "uses_group_labels") or k in REPORTED_META_KEYS:
            continue
        if k == "dataset_params" and isinstance(v, Mapping):
            v = {k2: v2 for k2, v2 in v.items() if k2 not in TABLE_PARAMS}
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = _short(v2)
        else:
            out[k] = _short(v)
    return out


def _assign_settings(rows: Sequence[Row]) -> None:
    """Rows that would look identical (same method, model, class, source) get the config values that
    tell them apart, e.g. ``gamma=1.02``."""
    clusters: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in rows:
        clusters[(r.method_label, r.model, r.class_idx, r.source)].append(r)
    for members in clusters.values():
        if len(members) < 2:
            continue
        flats = [_flat_config(r.config, outcomes=r.split_on_outcomes) for r in members]
        keys = sorted({k for f in flats for k in f})
        differing = [k for k in keys if len({f.get(k) for f in flats}) > 1]
        for r, f in zip(members, flats, strict=True):
            r.setting = ", ".join(f"{k}={f.get(k, '—')}" for k in differing)


def build_tables(records: Sequence[LocatedRecord]) -> list[Table]:
    """Group ``records`` into rows and rows into one :class:`Table` per (task, dataset, protocol).

    Tables come in a fixed order (task, then dataset); rows are sorted by the table's headline metric
    (mitigation: WGA after, else worst-class, class or test accuracy after; evaluation likewise;
    neuron recovery: P@5 or the smallest k), best first, rows without it last.
    """
    rows = [_make_row(g, split) for g, split in group_records(records)]
    by_table: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in rows:
        by_table[(r.task, r.dataset, _fingerprint(_protocol(r.config)))].append(r)
    task_order = ("mitigation", "neuron_recovery", "evaluation", "visualization", "study")
    tables: list[Table] = []
    for (task, dataset, params_fp), trows in sorted(
        by_table.items(),
        key=lambda kv: (task_order.index(kv[0][0]) if kv[0][0] in task_order else 99, kv[0][1], kv[0][2]),
    ):
        keys: list[str] = []
        for r in trows:
            keys.extend(k for k in r.metrics if k not in keys)
        if task == "mitigation":
            keys.sort(
                key=lambda k: (
                    metric_order(k.partition(".")[2]),
                    ("before", "after", "gain").index(k.partition(".")[0]),
                )
            )
        elif task == "neuron_recovery":
            keys.sort(key=_at_k_order)
        keys = [k for k in keys if any(k in r.metrics and r.metrics[k].mean is not None for r in trows)]
        sort_key = _sort_key_for(task, keys, trows)

        def order(r: Row, sk: str | None = sort_key) -> tuple[Any, ...]:
            v = r.metrics[sk].mean if sk and sk in r.metrics else None
            return (
                v is None,
                -(v or 0.0),
                r.source != "measured",
                r.method_label,
                r.model,
                -1 if r.class_idx is None else r.class_idx,
                r.setting,
            )

        _assign_settings(trows)
        trows.sort(key=order)
        table = Table(
            task, dataset, json.loads(params_fp), [_column(k, trows) for k in keys], trows, sort_key
        )
        table.notes = _notes(table)
        tables.append(table)
    return tables


def _notes(table: Table) -> list[str]:
    notes = []
    rules = table.selection_rules
    if not rules:
        if table.task in ("mitigation", "evaluation"):
            notes.append("Model selection: not recorded in these records (config.selection).")
    elif len(rules) == 1 and not table.varying_selection:
        notes.append(f"Model selection: {rules[0]}.")
    else:
        notes.append(
            "Model selection differs between rows (see the Selection column): " + "; ".join(rules) + "."
        )
    if any(r.uses_group_labels for r in table.rows):
        notes.append("† uses group labels (for training or model selection); unmarked methods use none.")
    collisions = [r for r in table.rows if r.source != "reported" and r.n_runs > len(set(r.seeds))]
    if collisions:
        names = ", ".join(sorted({r.method_label for r in collisions}))
        notes.append(
            f"Some runs share a seed ({names}): n counts distinct seeds, the statistics use every run."
        )
    return notes


def references(tables: Sequence[Table]) -> list[str]:
    """Distinct citations of the reported rows, in order of first appearance (numbered [1], [2], ...)."""
    refs: list[str] = []
    for t in tables:
        for r in t.rows:
            if r.source == "reported" and r.citation and r.citation not in refs:
                refs.append(r.citation)
    return refs
