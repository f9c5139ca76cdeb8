"""Result records → leaderboard tables: validation with file:line, grouping, statistics over seeds.

A *row* is one (task, dataset, data, model, class, method, relevant config) combination; its cells
are statistics over the seeds of that combination: the mean, the sample standard deviation (ddof=1,
as WILDS reports), the number of seeds and the half-width of a 95% Student-t interval.

A *table* holds rows that compare like with like. Tables belong to four tracks
(:data:`TRACK_TITLES`) and are split so that every row of a table was measured on the same data
(dataset, MetaShift protocol, dataset fingerprint) with the same model and, for the tracks that
debug a class, the same class (or the same rule for choosing it, ``config.class_rule``):

- *Mitigation* (``task="mitigation"``): before, after and the gain ``after − before`` of every
  accuracy metric; the gain is computed per seed and then averaged, so its spread is that of the
  paired differences. Headline: WGA after, Δ WGA, test accuracy after, Δ test, class accuracy after.
- *Neuron recovery* (``neuron_recovery``): precision@k of the finder's ranking, per list
  (``metrics.lists.<list>.precision_at_k``, ``margin_share``, ``chance_at_k``) or flat
  (``metrics.precision_at_k``, ``margin_share_at_k``, ``chance_precision``,
  ``chance_margin_share_at_k``). Flat records of one list (``config.list``: ``insufficient``,
  ``excessive``; ``edited``, the set a pipeline edited, scored at k = its size) make a table per list,
  and edited sets one per set size. Headline: P@k, margin share@k and their chance rates, with k = 5
  for a finder's lists and k = the set size for edited sets.
- *Visualization faithfulness* (``visualization``): the automatic metrics of
  :mod:`neuroinspect.methods.visualizers.faithfulness` and concept recovery, averaged over the
  method's (neuron, class) pairs; one table per (dataset, model), whatever class each neuron is
  conditioned on.
- *Human understanding* (``study``): one table per (task type, dataset, model) with the accuracy per
  condition and its interval, participants, trials and chance; rows from simulated participants are
  marked as such.
- ``evaluation`` records get a table of their own after the tracks.

Every metric of every record goes to the CSV and to ``--columns all``; the compact default shows the
headline columns (:attr:`Column.headline`).

``reported`` records (numbers copied from publications, :mod:`neuroinspect.leaderboards.reported`)
are never averaged with anything: each is its own row, with the spread and seed count the
publication gives (``metrics.std`` and ``config.n_seeds``). They join a measured table only when
the measured records' dataset fingerprint matches the official release
(:func:`neuroinspect.datasets.fingerprint.compare_to_official`); otherwise they go to a *published*
table of their own beside it, with the reason. Published human studies (other networks, other
images) always sit in a published table beside the measured study tables of the same task type.
"""

from __future__ import annotations

import dataclasses
import functools
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
#: ``_file`` / ``_sha256`` / ``_hash`` / ``_cache_key`` are ignored as well, at any depth of the
#: config: a cache key names the inputs of one run (``exemplars`` records ``feature_cache_key``, a
#: hash of the seed's checkpoint and of the data's file paths), so it differs per seed and per output
#: folder for the same method and settings.
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
        "class_rule",
    }
)
#: Suffixes of config keys that are ignored like :data:`IGNORED_CONFIG_KEYS`.
IGNORED_SUFFIXES = ("_path", "_dir", "_file", "_sha256", "_hash", "_cache_key")
#: Config keys that are outcomes of a run rather than settings (a finder picks different neurons on
#: each seed's model). They are ignored when grouping unless two runs of a group share a seed, in
#: which case the group is split by them (e.g. two hand-picked neuron sets on the same model).
OUTCOME_CONFIG_KEYS = frozenset({"neurons", "class_idx", "classes"})
#: Dataset parameters that define a different benchmark and so a table of their own (MetaShift's
#: ``protocol``); other dataset parameters only tell rows apart.
TABLE_PARAMS = ("protocol",)
#: Where a record's config keeps the variant label of a method role, per task (the sweep's
#: ``"neuroinspect:l1"`` entries, :func:`neuroinspect.harness.choice.split_variant`): the label is
#: part of the method's name, not a setting.
VARIANT_KEYS = {
    "mitigation": {"editor": "variant", "finder": "finder_variant"},
    "evaluation": {"editor": "variant", "finder": "finder_variant"},
    "neuron_recovery": {"finder": "variant"},
}
#: Reported-row bookkeeping in ``config`` that is not a setting of the method.
REPORTED_META_KEYS = frozenset({"notes", "n_seeds", "mean_convention", "table", "source_table"})
#: The record field with the dataset fingerprint (:mod:`neuroinspect.datasets.fingerprint`).
FINGERPRINT_FIELD = "dataset_fingerprint"

TRACK_ORDER = ("mitigation", "neuron_recovery", "visualization", "study", "evaluation")
TRACK_TITLES = {
    "mitigation": "Mitigation",
    "neuron_recovery": "Neuron recovery",
    "visualization": "Visualization faithfulness",
    "study": "Human understanding",
    "evaluation": "Evaluation",
}

#: Human descriptions of the model-selection rules the harness writes in ``config.selection``.
SELECTION_RULES = {
    "val_acc": "best validation accuracy",
    "val_worst_class_acc": "best validation worst-class accuracy (no group labels)",
    "val_worst_group_acc": "best validation worst-group accuracy (uses validation group labels)",
    "last": "last epoch (no selection)",
}
#: The same, short, for a table column.
SELECTION_SHORT = {
    "val_acc": "val acc",
    "val_worst_class_acc": "val worst-class",
    "val_worst_group_acc": "val WGA",
    "last": "last epoch",
}
#: ``config.class_rule`` values and how a table names them. ``fixed`` (the configured class) keeps
#: the class index as the table's class.
CLASS_RULES = {
    "worst_val": "worst class per seed (on the finder split)",
    "worst": "worst class per seed",
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
    "margin_share": "Margin share",
    # visualization faithfulness (flat keys of the visualize command's records)
    "concept_recovered": "Recovery",
    "concept_recovered.spurious": "Recovery spurious",
    "concept_recovered.core": "Recovery core",
    "faithfulness_activation_percentile_mean": "Act. pct",
    "faithfulness_specificity_mean": "Specificity",
    "faithfulness_class_prob_mean": "Class p",
    "faithfulness_clip_score_mean": "CLIP",
    "faithfulness_diversity_feature": "Diversity",
    "faithfulness_deletion_auc": "Deletion AUC",
    "faithfulness_deletion_auc_random": "Deletion AUC random",
    # study
    "accuracy": "Accuracy [95% CI]",
    "participant_mean": "Mean ± 2 SEM",
    "n_participants": "Participants",
    "n_trials": "Trials",
    "n_excluded": "Excluded",
    "chance": "Chance",
    "p_value": "p vs chance",
}
#: One-line explanations of the headline columns (the HTML page shows them on hover; the Markdown
#: notes name the ones that need it).
METRIC_HELP = {
    "concept_recovered": "share of (neuron, class) pairs whose images show the attribute the neuron encodes",
    "faithfulness_activation_percentile_mean": "the neuron's activation on the images as a percentile of the split (100: beyond every natural image)",
    "faithfulness_specificity_mean": "1 − (rank − 1)/(D − 1) of the neuron among all D neurons on the images",
    "faithfulness_class_prob_mean": "the classifier's probability of the conditioned class on the images",
    "faithfulness_diversity_feature": "mean pairwise 1 − cosine of the images' features",
    "faithfulness_deletion_auc": "target as the most-attributed pixels are deleted; lower = more faithful",
    "faithfulness_deletion_auc_random": "the same with a random pixel order (the control)",
    "margin_share": "share of the class margin deficit carried by the list's neurons",
    "margin_share_at_k": "the first k neurons' share (an edited set: all its neurons') of all neurons' positive effect on the class margin over the mistakes",
    "chance_margin_share_at_k": "the margin share of k random neurons",
    "chance_precision": "the precision of random neurons: the share of all neurons that are in the truth",
}
#: Metrics that are fractions in [0, 1] and are shown as percentages.
FRACTION_METRICS = frozenset(ACCURACY_KEYS) | {
    "mean_acc_reported",
    "margin_share",
    "concept_recovered",
    "concept_recovered.spurious",
    "concept_recovered.core",
    "accuracy",
    "ci_low",
    "ci_high",
    "participant_mean",
    "participant_2sem",
    "boot_low",
    "boot_high",
    "chance",
}
_FRACTION_HINTS = ("acc", "precision", "recall", "rate", "agreement", "fraction", "proportion", "coverage")
#: A nested metrics object with more entries than this (per-class tables) is not made into columns.
MAX_NESTED_ENTRIES = 12
METHOD_ROLE_ORDER = ("finder", "selector", "visualizer", "editor")
#: ``{"precision_at_k": {"5": 0.6}}`` → column "P@5".
AT_K_LABELS = {
    "precision_at_k": "P",
    "recall_at_k": "R",
    "spurious_precision_at_k": "spurious P",
    "chance_at_k": "Chance@",
    "margin_share_at_k": "Margin share@",
    "chance_margin_share_at_k": "Chance margin share@",
}
AT_K_FAMILIES = tuple(AT_K_LABELS)
#: Neuron lists in the order their columns appear (others follow alphabetically).
LIST_ORDER = ("insufficient", "excessive", "edited")
VIS_HEADLINE = (
    "concept_recovered",
    "concept_recovered.spurious",
    "concept_recovered.core",
    "faithfulness_activation_percentile_mean",
    "faithfulness_specificity_mean",
    "faithfulness_class_prob_mean",
    "faithfulness_clip_score_mean",
    "faithfulness_diversity_feature",
    "faithfulness_deletion_auc",
    "faithfulness_deletion_auc_random",
)
#: Metrics where lower is better (sorting puts the smallest first).
LOWER_IS_BETTER = frozenset({"faithfulness_deletion_auc", "p_value"})


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
    ``display``: shown in ``--columns all`` (counts, i.e. metrics that are integers in every record,
    go to the CSV only, unless they are headline columns); ``headline``: shown in the compact view.

    ``kind``: ``"stat"`` (mean ± spread over seeds), ``"int"`` (a count), ``"interval"`` (the mean
    of ``key`` with the interval ``[low_key, high_key]`` that the record itself carries, e.g. a Wilson
    interval) or ``"pm"`` (the mean of ``key`` ± the value of ``spread_key``, e.g. ± 2 SEM). Rows
    aggregated over several runs fall back to mean ± spread over the runs. ``decimals``: digits after
    the point for percentages. ``help``: what the column means, in a sentence.
    """

    key: str
    label: str
    percent: bool = True
    signed: bool = False
    display: bool = True
    headline: bool = False
    kind: str = "stat"
    low_key: str | None = None
    high_key: str | None = None
    spread_key: str | None = None
    decimals: int = 2
    help: str = ""


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
    #: ``config.selection`` as written (``val_acc``, ...), for the short Selection column
    selection_raw: str | None = None
    #: ``config.class_rule`` when the class was chosen by a rule (``worst_val``), else ``None``
    class_rule: str | None = None
    #: the classes the runs debugged (several under a class rule)
    classes: tuple[int, ...] = ()
    #: the dataset fingerprint of the runs (``None`` for records without one)
    fingerprint: dict[str, Any] | None = None
    #: study rows: ``metrics.task_type`` and ``metrics.participants`` (human | simulated | mixed)
    task_type: str | None = None
    participants: str | None = None
    #: neuron-recovery records of one list (``config.list``: insufficient, excessive, edited)
    neuron_list: str | None = None
    #: edited sets: the set size k their P@k is scored at (``config.k``)
    set_size: int | None = None
    #: variant labels of the method's roles (``{"editor": "l1"}``: :data:`VARIANT_KEYS`)
    variants: dict[str, str] = field(default_factory=dict)

    @property
    def method_label(self) -> str:
        """The method's names, finder first, then selector, visualizer, editor
        (``counterfactual + neuroinspect``), each with its variant label as the config names it
        (``neuroinspect:l1``); a study condition reads ``natural (exemplars)``."""
        if "condition" in self.method:
            cond = self.method["condition"]
            vis = self.method.get("visualizer", "none")
            return cond if vis in ("none", "", cond) else f"{cond} ({vis})"
        roles = [r for r in METHOD_ROLE_ORDER if r in self.method] + sorted(
            r for r in self.method if r not in METHOD_ROLE_ORDER
        )

        # editors that ignore neurons record finder "none": the label is then just the editor
        def name(role: str) -> str:
            label = self.variants.get(role)
            return f"{self.method[role]}:{label}" if label else self.method[role]

        names = [name(r) for r in roles if self.method[r] not in ("none", "")]
        return " + ".join(names) or " + ".join(name(r) for r in roles)

    @property
    def n_seeds(self) -> int | None:
        if self.source == "reported":
            n = self.config.get("n_seeds")
            return n if isinstance(n, int) and not isinstance(n, bool) else None
        return len(set(self.seeds))

    @property
    def n_runs(self) -> int:
        return len(self.run_ids)

    @property
    def class_text(self) -> str:
        """``"1"``, ``"all"`` (no class), or the class rule with the classes it picked."""
        if self.class_rule:
            picked = ", ".join(str(c) for c in self.classes)
            return f"worst ({picked})" if picked else "worst"
        return "all" if self.class_idx is None else str(self.class_idx)

    @property
    def simulated(self) -> bool:
        return self.participants in ("simulated", "mixed")


@dataclass
class Table:
    """Rows that compare like with like, with the columns they fill.

    ``kind``: ``"measured"`` (measured rows, and the published rows that were measured on the same
    data) or ``"published"`` (published rows only, beside the measured tables, ``reason`` says why
    they are apart). ``dataset_params`` holds the parameters that define the benchmark
    (:data:`TABLE_PARAMS`), empty for most datasets; ``model`` / ``class_text`` / ``task_type`` the
    model, class (or class rule) and study task type every measured row shares (``None`` where rows
    differ or it does not apply); ``fingerprint`` the measured records' dataset fingerprint and
    ``official`` whether it is the official release (``None``: unknown); ``benchmark_seeds`` the
    number of distinct seeds measured on this data (a row with fewer is marked).
    """

    task: str
    dataset: str
    dataset_params: dict[str, Any]
    columns: list[Column]
    rows: list[Row]
    sort_key: str | None
    notes: list[str] = field(default_factory=list)
    kind: str = "measured"
    model: str | None = None
    class_text: str | None = None
    task_type: str | None = None
    fingerprint: dict[str, Any] | None = None
    official: bool | None = None
    reason: str = ""
    benchmark_seeds: int | None = None
    #: ``"data 1a2b3c4d"`` when one dataset has tables on different data in this build
    data_tag: str = ""
    #: neuron recovery: the list every row scores (``None``: rows hold every list, or no list)
    neuron_list: str | None = None
    #: neuron recovery of edited sets: the set size k shared by every row
    set_size: int | None = None

    @property
    def track(self) -> str:
        return self.task

    @property
    def track_title(self) -> str:
        return TRACK_TITLES.get(self.task, self.task.replace("_", " ").capitalize())

    @property
    def subtitle(self) -> str:
        """What the rows share, e.g. ``spurious-shapes · resnet18@64px · class 1``."""
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.dataset_params.items()))
        parts = []
        if self.task_type:
            parts.append(_task_type_text(self.task_type))
        parts.append(f"{self.dataset} ({params})" if params else self.dataset)
        if self.data_tag:
            parts.append(self.data_tag)
        if self.model:
            parts.append(self.model)
        if self.class_text is not None:
            parts.append(self.class_text)
        if self.neuron_list:
            parts.append(list_title(self.neuron_list, self.set_size))
        text = " · ".join(parts)
        return f"{text} — published results" if self.kind == "published" else text

    @property
    def title(self) -> str:
        return f"{self.track_title} — {self.subtitle}"

    @property
    def slug(self) -> str:
        bits = [self.task, self.task_type or "", self.dataset]
        bits += [f"{k}-{_short(v)}" for k, v in sorted(self.dataset_params.items())]
        bits += [self.data_tag, self.model or "", self.class_text or ""]
        bits += [list_title(self.neuron_list, self.set_size) if self.neuron_list else "", self.kind]
        raw = "-".join(b for b in bits if b)
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in raw.lower())
        while "--" in slug:
            slug = slug.replace("--", "-")
        return slug.strip("-")

    @property
    def selection_rules(self) -> list[str]:
        return sorted({r.selection for r in self.rows if r.selection})

    @property
    def varying_selection(self) -> bool:
        return len({r.selection for r in self.rows}) > 1

    def headline_columns(self) -> list[Column]:
        return [c for c in self.columns if c.headline]


def list_title(name: str, set_size: int | None = None) -> str:
    """How a table names the neuron list its rows score: ``insufficient list``, ``edited sets (k = 50)``."""
    if name == "edited":
        return f"edited sets (k = {set_size})" if set_size else "edited sets"
    return f"{name} list"


def _task_type_text(task_type: str) -> str:
    return {"2afc": "2AFC", "labelling": "labelling", "mistake": "mistake", "rating": "rating"}.get(
        task_type.lower(), task_type
    )


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


def located(
    records: Iterable[Mapping[str, Any] | LocatedRecord], where: str = "records"
) -> list[LocatedRecord]:
    """Plain record dicts (validated here) or :class:`LocatedRecord` objects as located records."""
    out = []
    for i, rec in enumerate(records, start=1):
        if isinstance(rec, LocatedRecord):
            out.append(rec)
        else:
            out.append(LocatedRecord(validate_record(rec, where=f" ({where}[{i}])"), where, i))
    return out


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


@functools.lru_cache(maxsize=256)
def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (scipy's inverse of the t
    distribution function; ``scipy.special`` imports in a fraction of ``scipy.stats``' time)."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.975))


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


def _at_k(block: Any) -> dict[str, float]:
    if not isinstance(block, Mapping):
        return {}
    return {str(k): float(v) for k, v in block.items() if _is_number(v)}


def _neuron_recovery_values(metrics: Mapping[str, Any]) -> dict[str, int | float | None]:
    """Flat ``precision_at_k.<k>`` and per-list ``lists.<list>.precision_at_k.<k>`` /
    ``lists.<list>.margin_share`` / ``lists.<list>.chance_at_k.<k>``, then any other number."""
    out: dict[str, int | float | None] = {}
    for fam in AT_K_FAMILIES:
        for k, v in _at_k(metrics.get(fam)).items():
            out[f"{fam}.{k}"] = v
    lists = metrics.get("lists")
    if isinstance(lists, Mapping):
        for name in _list_order(lists):
            block = lists[name]
            if not isinstance(block, Mapping):
                continue
            for fam in AT_K_FAMILIES:
                for k, v in _at_k(block.get(fam)).items():
                    out[f"lists.{name}.{fam}.{k}"] = v
            rest = {k: v for k, v in block.items() if k not in AT_K_FAMILIES}
            for k, v in flatten_numeric(rest).items():
                out[f"lists.{name}.{k}"] = v
    for k, v in flatten_numeric(metrics).items():
        head = k.split(".", 1)[0]
        if head not in AT_K_FAMILIES and head != "lists" and k not in out:
            out[k] = v
    return out


def _list_order(lists: Iterable[str]) -> list[str]:
    names = list(lists)
    return [n for n in LIST_ORDER if n in names] + sorted(n for n in names if n not in LIST_ORDER)


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
        out.update(_neuron_recovery_values(metrics))
    elif task == "evaluation":
        for key in ACCURACY_KEYS:
            v = metrics.get(key)
            out[key] = float(v) if _is_number(v) else None
        out.update({k: v for k, v in flatten_numeric(metrics).items() if k not in out})
    elif task == "visualization":
        recovered = metrics.get("concept_recovered")
        if isinstance(recovered, bool):
            # a yes/no per (neuron, class) pair: its mean over pairs is the recovery rate
            out["concept_recovered"] = float(recovered)
            label = (metrics.get("concept_recovery") or {}).get("truth_label")
            if label in ("spurious", "core"):
                out[f"concept_recovered.{label}"] = float(recovered)
        out.update(flatten_numeric(metrics))
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
    return key in IGNORED_CONFIG_KEYS or key.endswith(IGNORED_SUFFIXES)


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


def _data_hash(rec: Mapping[str, Any]) -> str:
    fp = rec.get(FINGERPRINT_FIELD)
    return str(fp.get("sha256", "")) if isinstance(fp, Mapping) else ""


def _class_rule(rec: Mapping[str, Any]) -> str | None:
    rule = rec["config"].get("class_rule")
    return rule if isinstance(rule, str) and rule not in ("", "fixed") else None


def _class_key(rec: Mapping[str, Any]) -> Any:
    """What makes two runs debug "the same class": the class, or the rule that chose it per seed.
    Visualization runs are pooled over their (neuron, class) pairs; studies have no class."""
    if rec["task"] in ("visualization", "study"):
        return None
    rule = _class_rule(rec)
    return f"rule:{rule}" if rule else rec["class_idx"]


def _task_type(rec: Mapping[str, Any]) -> str | None:
    tt = rec["metrics"].get("task_type") if rec["task"] == "study" else None
    return str(tt) if tt is not None else None


def _base_key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    source = rec.get("source", "measured")
    return (
        rec["task"],
        _task_type(rec),
        rec["dataset"],
        _fingerprint(_dataset_params(rec["config"])),
        _data_hash(rec),
        rec["model"],
        _fingerprint(_class_key(rec)),
        _fingerprint(rec["method"]),
        source,
        str(rec["metrics"].get("participants")) if rec["task"] == "study" else "",
        # a published number is one row of its own
        rec["run_id"] if source == "reported" else "",
    )


def group_records(records: Sequence[LocatedRecord]) -> list[tuple[list[LocatedRecord], bool]]:
    """Records grouped into rows: same task, dataset, dataset params, data fingerprint, model, class
    (or class rule), method, source and relevant config (all config keys except
    :data:`IGNORED_CONFIG_KEYS` and path-like ones).

    Outcome keys (:data:`OUTCOME_CONFIG_KEYS`, e.g. the neurons a finder picked on each seed) are
    left out unless two runs of a group share a seed; then the group is split by them. Visualization
    runs are pooled over their (neuron, class) pairs, which share seeds by design, and are never
    split that way. Returns ``(members, split_on_outcomes)`` pairs.
    """
    coarse: dict[tuple[Any, ...], list[LocatedRecord]] = defaultdict(list)
    for lr in records:
        key = (*_base_key(lr.record), _fingerprint(_config_part(lr.record["config"], drop_outcomes=True)))
        coarse[key].append(lr)
    groups: list[tuple[list[LocatedRecord], bool]] = []
    for members in coarse.values():
        seeds = [m.record["seed"] for m in members]
        if len(seeds) == len(set(seeds)) or members[0].record["task"] == "visualization":
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
    sel = first["config"].get("selection")
    fp = first.get(FINGERPRINT_FIELD)
    participants = first["metrics"].get("participants") if first["task"] == "study" else None
    if first["task"] == "study" and source == "reported" and participants is None:
        participants = "human"
    return Row(
        task=first["task"],
        dataset=first["dataset"],
        model=first["model"],
        class_idx=first["class_idx"],
        method=dict(first["method"]),
        source=source,
        citation=first.get("citation"),
        uses_group_labels=ugl if isinstance(ugl, bool) else None,
        selection=_selection_text(sel),
        config=dict(first["config"]),
        seeds=[m.record["seed"] for m in members],
        run_ids=[m.record["run_id"] for m in members],
        metrics=stats,
        split_on_outcomes=split_on_outcomes,
        int_keys=int_keys,
        selection_raw=sel if isinstance(sel, str) else None,
        class_rule=_class_rule(first),
        classes=tuple(sorted({m.record["class_idx"] for m in members if m.record["class_idx"] is not None})),
        fingerprint=dict(fp) if isinstance(fp, Mapping) else None,
        task_type=_task_type(first),
        participants=str(participants) if participants is not None else None,
        neuron_list=_neuron_list(first),
        set_size=_set_size(first),
        variants=_variants(first),
    )


def _variants(rec: Mapping[str, Any]) -> dict[str, str]:
    """``{role: label}`` for the method roles whose variant label the config records."""
    out = {}
    for role, key in VARIANT_KEYS.get(rec["task"], {}).items():
        label = rec["config"].get(key)
        if role in rec["method"] and isinstance(label, str) and label:
            out[role] = label
    return out


def _neuron_list(rec: Mapping[str, Any]) -> str | None:
    """The list a flat ``neuron_recovery`` record scores (``config.list``, else ``metrics.list``)."""
    if rec["task"] != "neuron_recovery":
        return None
    for block in (rec["config"], rec["metrics"]):
        name = block.get("list")
        if isinstance(name, str) and name:
            return name
    return None


def _set_size(rec: Mapping[str, Any]) -> int | None:
    """An edited set's size k: ``config.k``, else the one k its ``precision_at_k`` is given at."""
    if _neuron_list(rec) != "edited":
        return None
    k = rec["config"].get("k")
    if isinstance(k, int) and not isinstance(k, bool) and k > 0:
        return k
    ks = list(_at_k(rec["metrics"].get("precision_at_k")))
    return int(ks[0]) if len(ks) == 1 and ks[0].isdigit() else None


# -------------------------------------------------------------------------------------------- columns


def _looks_fraction(name: str, key: str, rows: Sequence[Row]) -> bool:
    if not any(h in name.lower() for h in _FRACTION_HINTS):
        return False
    means = [m for r in rows if key in r.metrics and (m := r.metrics[key].mean) is not None]
    return bool(means) and all(0.0 <= m <= 1.0 for m in means)


def _at_k_label(fam: str, k: str) -> str:
    prefix = AT_K_LABELS[fam]
    return f"{prefix}{k}" if prefix.endswith("@") else f"{prefix}@{k}"


def _column(key: str, rows: Sequence[Row], headline: bool = False) -> Column:
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
            headline=headline,
        )
    if head in AT_K_LABELS and metric:
        return Column(
            key, _at_k_label(head, metric), percent=True, headline=headline, help=METRIC_HELP.get(head, "")
        )
    if key.startswith("concept_recovered"):
        return Column(
            key, METRIC_LABELS.get(key, key), decimals=1, headline=headline, help=METRIC_HELP.get(key, "")
        )
    if head == "lists" and metric:
        lname, _, rest = metric.partition(".")
        fam, _, k = rest.partition(".")
        if fam in AT_K_LABELS and k:
            return Column(key, f"{_at_k_label(fam, k)} {lname}", percent=True, headline=headline)
        base = _column(rest, rows)
        percent = rest in FRACTION_METRICS or _looks_fraction(rest, key, rows)
        return Column(
            key,
            f"{base.label} {lname}",
            percent=percent,
            display=base.display,
            headline=headline,
            help=METRIC_HELP.get(rest, ""),
        )
    label = METRIC_LABELS.get(key, key)
    counts = all(key in r.int_keys for r in rows if key in r.metrics)
    percent = key in FRACTION_METRICS or _looks_fraction(key, key, rows)
    return Column(
        key,
        label,
        percent=percent,
        display=not counts or headline,
        headline=headline,
        kind="int" if counts and headline else "stat",
        help=METRIC_HELP.get(key, ""),
    )


def _study_columns(keys: Sequence[str], rows: Sequence[Row]) -> list[Column]:
    """The human-understanding headline: accuracy with its interval, mean ± 2 SEM, participants,
    trials, chance; then every other number (``--columns all`` and the CSV)."""

    def filled(k: str) -> bool:
        return any(k in r.metrics and r.metrics[k].mean is not None for r in rows)

    cols: list[Column] = []
    if filled("accuracy"):
        cols.append(
            Column(
                "accuracy",
                METRIC_LABELS["accuracy"],
                kind="interval",
                low_key="ci_low",
                high_key="ci_high",
                decimals=1,
                headline=True,
                help="trial-level proportion correct with its 95% interval (the record's ci_method)",
            )
        )
    if filled("participant_mean"):
        cols.append(
            Column(
                "participant_mean",
                METRIC_LABELS["participant_mean"],
                kind="pm",
                spread_key="participant_2sem",
                decimals=1,
                headline=True,
                help="mean over participants ± 2 standard errors (Borowski et al.'s convention)",
            )
        )
    for k in ("n_participants", "n_trials"):
        if filled(k):
            cols.append(Column(k, METRIC_LABELS[k], percent=False, kind="int", headline=True))
    if filled("chance"):
        cols.append(Column("chance", METRIC_LABELS["chance"], decimals=1, headline=True))
    taken = {c.key for c in cols}
    for k in keys:
        if k not in taken:
            c = _column(k, rows)
            cols.append(
                Column(
                    c.key,
                    c.label,
                    c.percent,
                    c.signed,
                    c.display,
                    False,
                    c.kind,
                    decimals=3 if k == "p_value" else 1,
                )
                if k in ("p_value", "ci_low", "ci_high", "boot_low", "boot_high", "participant_2sem")
                else c
            )
    return cols


def _headline_keys(task: str, keys: Sequence[str], rows: Sequence[Row]) -> list[str]:
    def filled(k: str) -> bool:
        return any(k in r.metrics and r.metrics[k].mean is not None for r in rows)

    if task == "mitigation":
        wanted = ["after.worst_group_acc", "gain.worst_group_acc"]
        if not filled("after.worst_group_acc"):
            wanted = ["after.worst_class_acc", "gain.worst_class_acc"]
        wanted += ["after.test_acc", "gain.test_acc", "after.class_acc", "after.mean_acc_reported"]
        return [k for k in wanted if filled(k)]
    if task == "neuron_recovery":
        ks = sorted({k.rsplit(".", 1)[1] for k in keys if ".precision_at_k." in f".{k}"}, key=_num_or_inf)
        k = "5" if "5" in ks else (ks[0] if ks else "5")
        lists = _list_order({key.split(".")[1] for key in keys if key.startswith("lists.")})
        wanted = []
        for name in lists:
            wanted += [
                f"lists.{name}.precision_at_k.{k}",
                f"lists.{name}.margin_share",
                f"lists.{name}.chance_at_k.{k}",
            ]
        sizes = {r.set_size for r in rows if r.source != "reported"}
        if len(sizes) == 1 and (size := sizes.pop()) and f"precision_at_k.{size}" in keys:
            k = str(size)  # an edited set is scored at k = its size
        wanted += [
            f"precision_at_k.{k}",
            f"margin_share_at_k.{k}",
            "margin_share",
            "chance_precision",
            f"chance_margin_share_at_k.{k}",
        ]
        out = [w for w in wanted if filled(w)]
        if (
            lists
            and "chance_precision" in out
            and any(w.startswith("lists.") and ".chance_at_k." in w for w in out)
        ):
            out.remove("chance_precision")  # the per-list chances say it per list
        return out
    if task == "visualization":
        out = [k for k in VIS_HEADLINE if filled(k)]
        return out or [k for k in keys if filled(k)][:8]
    if task == "evaluation":
        return [k for k in ("test_acc", "worst_class_acc", "worst_group_acc", "class_acc") if filled(k)]
    return [k for k in keys if filled(k)][:8]


def _sort_key_for(task: str, headline: Sequence[str], keys: Sequence[str], rows: Sequence[Row]) -> str | None:
    def filled(k: str) -> bool:
        return any(k in r.metrics and r.metrics[k].mean is not None for r in rows)

    if task == "study" and filled("accuracy"):
        return "accuracy"
    if task == "neuron_recovery":
        pk = [k for k in headline if ".precision_at_k." in f".{k}"]
        if pk:
            return pk[0]
    for k in headline:
        if filled(k):
            return k
    return next((k for k in keys if filled(k)), None)


def _at_k_order(key: str) -> tuple[int, int, float, str]:
    """Flat P@k, R@k, spurious P@k, chance@k (k ascending), then per list in :data:`LIST_ORDER`, then
    the other metrics by name."""
    head, _, tail = key.partition(".")
    lst = 0
    if head == "lists":
        lname, _, key_in = tail.partition(".")
        lst = 1 + (LIST_ORDER.index(lname) if lname in LIST_ORDER else len(LIST_ORDER))
        head, _, tail = key_in.partition(".")
    if head in AT_K_LABELS and tail:
        return (lst, AT_K_FAMILIES.index(head), _num_or_inf(tail), key)
    return (lst, len(AT_K_FAMILIES), 0.0, key)


def _num_or_inf(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _short(v: Any) -> str:
    return v if isinstance(v, str) else _fingerprint(v)


def _flat_config(config: Mapping[str, Any], outcomes: bool, task: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    named = set(VARIANT_KEYS.get(task, {}).values())  # in the method label
    for k, v in _clean(config, drop_outcomes=not outcomes).items():
        if k in ("selection", "uses_group_labels") or k in REPORTED_META_KEYS or k in named:
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
    """Rows that would look identical (same method, model, source, participants) get the config values
    that tell them apart, e.g. ``gamma=1.02``. The class is not part of that test: a table holds one
    class or one rule, so rows of one method whose Class differ (``worst (0)`` on one seed beside
    ``worst (0, 1)`` on three) differ in coverage, not in what was run. A key that is repeated under a nested
    block (``finder.k`` beside ``k``) is named once. A null (or absent) value is left out of a row's
    setting unless nothing else would be left to tell that row apart (then ``gamma=null``)."""
    clusters: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in rows:
        clusters[(r.method_label, r.model, r.source, r.participants)].append(r)
    for members in clusters.values():
        if len(members) < 2:
            continue
        flats = [_flat_config(r.config, outcomes=r.split_on_outcomes, task=r.task) for r in members]
        keys = sorted({k for f in flats for k in f})
        differing = [k for k in keys if len({f.get(k) for f in flats}) > 1]
        top = {k for k in differing if "." not in k}
        differing = [k for k in differing if not ("." in k and k.split(".", 1)[1] in top)]
        full = [[f"{k}={f.get(k, '—')}" for k in differing] for f in flats]
        short = [
            [f"{k}={f[k]}" for k in differing if f.get(k, "null") != "null"] or parts
            for f, parts in zip(flats, full, strict=True)
        ]
        # a null left out must not make two rows read alike (absent beside null)
        shown = short if len({tuple(p) for p in short}) == len(short) else full
        for r, parts in zip(members, shown, strict=True):
            r.setting = ", ".join(parts)


# --------------------------------------------------------------------------------------------- tables


def _table_key(row: Row) -> tuple[Any, ...]:
    """Rows with the same key compare like with like (one table)."""
    return (
        TRACK_ORDER.index(row.task) if row.task in TRACK_ORDER else len(TRACK_ORDER),
        row.task,
        row.task_type or "",
        row.dataset,
        _fingerprint(_protocol(row.config)),
        row.fingerprint.get("sha256", "") if row.fingerprint else "",
        row.model,
        _fingerprint(_class_key_of_row(row)),
        _list_key(row),
    )


def _list_key(row: Row) -> str:
    """Neuron-recovery rows of one list are a table of their own (lists in :data:`LIST_ORDER`),
    edited sets one per set size: P@5 of a ranking and P@50 of a set are not the same measure."""
    if not row.neuron_list:
        return ""
    order = LIST_ORDER.index(row.neuron_list) if row.neuron_list in LIST_ORDER else len(LIST_ORDER)
    return f"{order}:{row.neuron_list}:{row.set_size or 0:09d}"


def _class_key_of_row(row: Row) -> Any:
    if row.task in ("visualization", "study"):
        return None
    return f"rule:{row.class_rule}" if row.class_rule else row.class_idx


def _class_title(row: Row) -> str | None:
    if row.task in ("visualization", "study"):
        return None
    if row.class_rule:
        return CLASS_RULES.get(row.class_rule, f"class rule {row.class_rule}")
    return "all classes" if row.class_idx is None else f"class {row.class_idx}"


def _order_rows(rows: list[Row], sort_key: str | None, then: Sequence[str] = ()) -> None:
    """Best first by ``sort_key``; ties by the ``then`` columns in turn (e.g. P@5 ties by margin
    share), each best first; then by method, so the order never depends on the input's."""

    def value(r: Row, key: str | None) -> tuple[bool, float]:
        v = r.metrics[key].mean if key and key in r.metrics else None
        return (v is None, (v or 0.0) if key in LOWER_IS_BETTER else -(v or 0.0))

    def order(r: Row) -> tuple[Any, ...]:
        return (
            *value(r, sort_key),
            *(x for k in then for x in value(r, k)),
            r.source != "measured",
            r.method_label,
            r.model,
            r.class_text,
            r.participants or "",
            r.setting,
            r.run_ids[0],
        )

    rows.sort(key=order)


def _make_table(
    task: str, rows: list[Row], kind: str = "measured", reason: str = "", share: bool = True
) -> Table:
    """A table of ``rows``; ``share``: the rows share dataset, model and class (the title says them)."""
    keys: list[str] = []
    for r in rows:
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
    keys = [k for k in keys if any(k in r.metrics and r.metrics[k].mean is not None for r in rows)]
    if task == "study":
        columns = _study_columns(keys, rows)
        headline = [c.key for c in columns if c.headline]
    else:
        headline = _headline_keys(task, keys, rows)
        ordered = headline + [k for k in keys if k not in headline]
        columns = [_column(k, rows, headline=k in headline) for k in ordered]
    sort_key = _sort_key_for(task, headline, keys, rows)
    _assign_settings(rows)
    # chance columns describe the data, not the method: they do not break ties
    then = [k for k in headline if k != sort_key and "chance" not in k]
    _order_rows(rows, sort_key, then)
    first = rows[0]
    measured = [r for r in rows if r.source != "reported"] or rows
    models = {r.model for r in measured}
    class_titles = {_class_title(r) for r in measured}
    fp = next((r.fingerprint for r in measured if r.fingerprint), None)
    table = Table(
        task=task,
        dataset=first.dataset,
        dataset_params=_protocol(first.config),
        columns=columns,
        rows=rows,
        sort_key=sort_key,
        kind=kind,
        model=models.pop() if share and len(models) == 1 else None,
        class_text=class_titles.pop() if share and len(class_titles) == 1 else None,
        task_type=first.task_type,
        fingerprint=fp if kind == "measured" else None,
        reason=reason,
    )
    lists = {r.neuron_list for r in measured}
    if share and len(lists) == 1:
        table.neuron_list = lists.pop()
        sizes = {r.set_size for r in measured}
        table.set_size = sizes.pop() if len(sizes) == 1 else None
    return table


def _reported_joins(row: Row, class_title: str | None) -> bool:
    """A published row joins a measured table of the same data only for the same debugged class
    (published rows without a class, e.g. whole-dataset methods, join any class)."""
    if row.class_idx is None or row.task in ("visualization", "study"):
        return True
    return class_title == f"class {row.class_idx}"


def _official_reason(dataset: str, fp: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether a measured table's data is the official release of ``dataset``, and why not."""
    if not fp:
        return False, "the measured records carry no dataset fingerprint"
    from neuroinspect.datasets.fingerprint import compare_to_official

    return compare_to_official(dataset, fp)


def _official_flag(dataset: str, fp: Mapping[str, Any] | None) -> bool | None:
    """``True`` / ``False`` where an official release is on file to compare with, else ``None``."""
    if not fp:
        return None
    from neuroinspect.datasets.fingerprint import OFFICIAL_RELEASES

    return _official_reason(dataset, fp)[0] if dataset in OFFICIAL_RELEASES else None


def build_tables(
    records: Sequence[LocatedRecord] | Sequence[Mapping[str, Any]],
    reported: Sequence[LocatedRecord] | Sequence[Mapping[str, Any]] = (),
) -> list[Table]:
    """Group ``records`` into rows and rows into tables of like with like; place published rows.

    ``records``: measured records, and any reported ones the user passed explicitly (a table of
    published numbers alone). ``reported``: published rows to place beside the measured tables
    (``leaderboards/reported.jsonl``): a row joins the measured tables of its task, dataset and
    protocol when their data is the official release (dataset fingerprint, see
    :func:`neuroinspect.datasets.fingerprint.compare_to_official`) and the class agrees; otherwise
    it goes to a published table beside them, with the reason. A published row for a dataset nobody
    measured is dropped, except a published human study, which is kept beside the measured study
    tables of its task type. Tables come in track order (:data:`TRACK_ORDER`), then task type,
    dataset, protocol, data, model and class, each dataset's published table after its measured ones;
    rows are sorted by the table's headline metric, best first, rows without it last, ties by the
    next headline columns.
    """
    recs = located(records)
    extra = located(reported, where="reported")
    measured_recs = [r for r in recs if r.record.get("source", "measured") != "reported"]
    explicit = [r for r in recs if r.record.get("source") == "reported"]
    given = {r.record["run_id"] for r in explicit}
    published_recs = explicit + [r for r in extra if r.record["run_id"] not in given]

    by_key: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for g, split in group_records(measured_recs):
        row = _make_row(g, split)
        by_key[_table_key(row)].append(row)
    info: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, rows in by_key.items():
        r0 = rows[0]
        info[key] = {
            "fp": next((r.fingerprint for r in rows if r.fingerprint), None),
            "class_title": _class_title(r0),
            "same": (r0.task, r0.task_type, r0.dataset, _fingerprint(_protocol(r0.config))),
        }

    # published rows: join, stand apart, or stay out
    published: dict[tuple[Any, ...], tuple[list[Row], str]] = {}
    for lr in published_recs:
        row = _make_row([lr])
        same = [
            k
            for k, i in info.items()
            if i["same"] == (row.task, row.task_type, row.dataset, _fingerprint(_protocol(row.config)))
        ]
        joined, reasons = False, []
        for k in same:
            ok, why = _official_reason(row.dataset, info[k]["fp"])
            if ok and _reported_joins(row, info[k]["class_title"]):
                by_key[k].append(dataclasses.replace(row))  # one copy per table: settings are per table
                joined = True
            else:
                reasons.append(
                    why if not ok else f"the measured tables debug another class than class {row.class_idx}"
                )
        if joined:
            continue
        dataset_slot = row.dataset
        if same:
            reason = _join_reasons(row.dataset, reasons)
        elif row.task == "study" and any(
            i["same"][0] == "study" and i["same"][1] == row.task_type for i in info.values()
        ):
            reason = (
                "Published human studies on other images and networks: a reference for scale, "
                "not a like-for-like comparison with the rows measured here."
            )
            dataset_slot = "\uffff"  # after the measured study tables of this task type
        elif lr.record["run_id"] in given:
            reason = f"Published numbers only: no measured runs on {row.dataset} in this build."
        else:
            continue
        pkey = (
            TRACK_ORDER.index(row.task) if row.task in TRACK_ORDER else len(TRACK_ORDER),
            row.task,
            row.task_type or "",
            dataset_slot,
            _fingerprint(_protocol(row.config)),
            1,
        )
        rows_, _ = published.setdefault(pkey, ([], reason))
        rows_.append(row)

    # the seeds measured on each benchmark's data with each model: a row with fewer is marked (another
    # model's seeds say nothing about this one's, e.g. a one-seed study of another network)
    seeds: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    for lr in measured_recs:
        rec = lr.record
        key = (
            rec["task"],
            rec["dataset"],
            _fingerprint(_protocol(rec["config"])),
            _data_hash(rec),
            rec["model"],
        )
        seeds[key].add(rec["seed"])
    # a dataset measured on more than one set of data (a user's folder beside the official release)
    hashes: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for key in by_key:
        hashes[(key[1], key[3], key[4])].add(key[5])

    keyed: list[tuple[tuple[Any, ...], Table]] = []
    for key, rows in by_key.items():
        t = _make_table(rows[0].task, rows)
        t.fingerprint = info[key]["fp"]
        t.official = _official_flag(t.dataset, t.fingerprint)
        t.benchmark_seeds = len(seeds[(t.task, t.dataset, key[4], key[5], key[6])])
        if len(hashes[(key[1], key[3], key[4])]) > 1:
            t.data_tag = f"data {key[5][:8]}" if key[5] else "data not fingerprinted"
        keyed.append(((*key[:5], 0, *key[5:]), t))
    for pkey, (rows, reason) in published.items():
        t = _make_table(rows[0].task, rows, kind="published", reason=reason, share=False)
        if pkey[3] == "\uffff":
            t.dataset = ", ".join(sorted({r.dataset for r in rows}))
        keyed.append((pkey, t))
    keyed.sort(key=lambda kt: tuple(f"{x:06d}" if isinstance(x, int) else str(x) for x in kt[0]))
    tables = [t for _, t in keyed]
    for t in tables:
        t.notes = _notes(t)
    return tables


def _join_reasons(dataset: str, reasons: Sequence[str]) -> str:
    why = "; ".join(sorted(set(reasons)))
    return (
        f"Published on the official {dataset} release, but kept apart from the measured tables: {why}. "
        "For reference only."
    )


def _notes(table: Table) -> list[str]:
    notes = []
    if table.kind == "published":
        notes.append(table.reason)
    elif table.fingerprint:
        from neuroinspect.datasets.fingerprint import describe

        official = {None: "", True: "; the official release", False: "; not the official release"}[
            table.official
        ]
        notes.append(f"Data: {describe(table.fingerprint)}{official}.")
    rules = table.selection_rules
    if table.task in ("mitigation", "evaluation"):
        if not rules:
            notes.append("Model selection: not recorded in these records (config.selection).")
        elif len(rules) == 1 and not table.varying_selection:
            notes.append(f"Model selection: {rules[0]}.")
        else:
            notes.append(
                "Model selection differs between rows (see the Selection column): " + "; ".join(rules) + "."
            )
    if any(r.uses_group_labels for r in table.rows):
        notes.append("† uses group labels (for training or model selection); unmarked methods use none.")
    if any(r.class_rule for r in table.rows):
        picked = sorted({c for r in table.rows if r.class_rule for c in r.classes})
        which = (
            f"class {picked[0]} on every seed"
            if len(picked) == 1
            else "classes " + ", ".join(str(c) for c in picked)
        )
        notes.append(
            f"The class is chosen per seed (the worst class): {which} here; "
            "each row's classes are in the CSV and under `--columns all`."
        )
    if table.neuron_list:
        notes.append(_list_note(table))
    if table.task == "visualization":
        notes.append(
            "Means over each method's (neuron, class) pairs; ± is the standard deviation over the pairs "
            "and seeds; pairs = number of pairs."
        )
    if table.task == "study":
        if any(r.simulated for r in table.rows):
            notes.append(
                "Rows marked simulated come from simulated participants (model observers), not people: "
                "they are not human data."
            )
        if any(r.n_runs > 1 for r in table.rows if r.source != "reported"):
            notes.append(
                "A row over several runs (e.g. simulations with different seeds) shows the mean ± std over "
                "the runs instead of one run's interval."
            )
        if any(r.participants in (None, "None") and r.source != "reported" for r in table.rows):
            notes.append("Rows with participants 'not stated' do not say whether people answered.")
    short = [r for r in table.rows if _fewer_seeds(r, table)]
    if short:
        notes.append(
            f"n = seeds. {table.benchmark_seeds} seeds were run on this data; "
            f"'k of {table.benchmark_seeds}' marks a row measured on fewer of them."
        )
    collisions = [
        r
        for r in table.rows
        if r.source != "reported" and r.task != "visualization" and r.n_runs > len(set(r.seeds))
    ]
    if collisions:
        names = ", ".join(sorted({r.method_label for r in collisions}))
        notes.append(
            f"Some runs share a seed ({names}): n counts distinct seeds, the statistics use every run."
        )
    return notes


def _list_note(table: Table) -> str:
    """What a neuron-recovery table of one list measures, in a sentence."""
    if table.neuron_list == "edited":
        k = table.set_size or "k"
        return (
            f"The neurons each pipeline edited (up to {k} per seed), scored against the causal truth "
            f"on the mistakes (either list): P@{k} = share of the set that is causal (an empty set scores 0), "
            f"margin share@{k} = the set's share of all neurons' positive effect on the class margin over "
            "the mistakes; the chance columns "
            f"are {k} random neurons. Set sizes, causal counts and core neurons let through are in the CSV."
        )
    return (
        f"Each finder's {table.neuron_list} ranking scored against that list's causal truth on the "
        "mistakes: P@k = share of its first k neurons that are causal, margin share@k = their share of "
        "all neurons' positive effect on the class margin over the mistakes; the chance columns are k "
        "random neurons."
    )


def _fewer_seeds(row: Row, table: Table) -> bool:
    if row.source == "reported" or table.task == "study" or not table.benchmark_seeds:
        return False
    n = row.n_seeds
    return n is not None and n < table.benchmark_seeds


def references(tables: Sequence[Table]) -> list[str]:
    """Distinct citations of the reported rows, in order of first appearance (numbered [1], [2], ...)."""
    refs: list[str] = []
    for t in tables:
        for r in t.rows:
            if r.source == "reported" and r.citation and r.citation not in refs:
                refs.append(r.citation)
    return refs
