"""What is being analysed: the task, its chance level, the conditions (and which is the
no-explanation baseline), the exclusion rules, and where the study came from.

A :class:`StudyDesign` is built either from a study spec (:func:`design_from_spec`) or from a bare
long-format CSV plus command-line options (:func:`design_from_table`); below this module the
statistics take plain arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError
from neuroinspect.studies.exclusions import ExclusionRules
from neuroinspect.studies.responses import TASKS

#: condition names taken to be the no-explanation baseline when none is named explicitly
BASELINE_NAMES = (
    "none",
    "baseline",
    "no-explanation",
    "no_explanation",
    "no-visualization",
    "no_visualization",
    "control",
)
#: trial kinds that carry the accuracy analysis (repeated trials feed test-retest only)
ANALYSIS_KIND = "main"


@dataclass(frozen=True)
class StudyDesign:
    """The design facts the analysis needs.

    ``chance`` is the probability of a correct answer by guessing (1/2 for 2AFC, 1/options for a
    multiple-choice task), ``None`` for ratings. ``conditions`` are ordered with the baseline first
    (when there is one). ``visualizers`` maps a condition to the visualizer it showed ("none" for the
    baseline).
    """

    task: str
    chance: float | None
    conditions: tuple[str, ...]
    baseline: str | None
    rules: ExclusionRules
    title: str = "study"
    dataset: str = "unknown"
    model: str = "none"
    seed: int = 0
    source: str = "csv"
    path: str | None = None
    visualizers: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: true when no rules were given and the defaults apply (the report says so)
    rules_stated: bool = False

    @property
    def is_rating(self) -> bool:
        return self.task == "rating"

    def visualizer(self, condition: str) -> str:
        if condition == self.baseline:
            return "none"
        return self.visualizers.get(condition, condition)


def _column_values(df: Any, col: str) -> list[Any]:
    return sorted({v for v in df[col].dropna().tolist()})


def resolve_task_and_chance(
    df: Any, task: str | None, n_options: int | None = None
) -> tuple[str, float | None, list[str]]:
    """The task type and chance level from ``--task`` / the spec, the ``task`` column and the
    ``n_options`` column; a :class:`UserError` when they disagree or say nothing.

    Returns ``(task, chance, notes)``.
    """
    notes: list[str] = []
    if task is not None and task not in TASKS:
        raise UserError(f"unknown task {task!r}; use one of {', '.join(TASKS)} (--task).")
    in_table = _column_values(df, "task")
    if len(in_table) > 1:
        raise UserError(
            f"the response table mixes tasks ({', '.join(in_table)}); analyse one task at a time "
            "(filter the CSV by its 'task' column)."
        )
    if task is not None and in_table and in_table[0] != task:
        raise UserError(
            f"the response table's 'task' column says {in_table[0]!r} but the task given is {task!r}; "
            "drop --task or fix the column."
        )
    task = task or (in_table[0] if in_table else None)
    options = [int(v) for v in _column_values(df, "n_options")]
    if n_options is not None:
        options_set = {int(n_options)}
        if options and set(options) != options_set:
            raise UserError(
                f"the spec gives {n_options} answer options but the table's n_options column has "
                f"{', '.join(map(str, options))}; export the responses again from this spec."
            )
        options = [int(n_options)]
    if task == "rating":
        return task, None, notes
    if task == "2afc":
        if options and set(options) != {2}:
            raise UserError(
                f"a 2afc task has 2 answer options but the table's n_options column has "
                f"{', '.join(map(str, options))}; pass the right --task (labelling or mistake)."
            )
        return task, 0.5, notes
    if not options:
        if task is None:
            raise UserError(
                "cannot tell the task or its chance level: the table has neither a 'task' nor an "
                "'n_options' column. Pass --task 2afc|labelling|mistake|rating."
            )
        raise UserError(
            f"a {task} task needs the number of answer options for its chance level, but the table "
            "has no 'n_options' column; add one (or analyse through the study's spec)."
        )
    if len(options) > 1:
        raise UserError(
            f"trials have different numbers of answer options ({', '.join(map(str, options))}); "
            "one chance level per study is needed: analyse each option count separately."
        )
    if options[0] < 2:
        raise UserError(f"n_options must be at least 2, got {options[0]}.")
    if task is None:
        task = "2afc" if options[0] == 2 else "labelling"
        notes.append(
            f"no task type was given; a forced choice among {options[0]} options is analysed as "
            f"{task!r} (chance 1/{options[0]}); pass --task to name it."
        )
    return task, 1.0 / options[0], notes


def order_conditions(
    found: Sequence[str], declared: Sequence[str] | None = None, baseline: str | None = None
) -> tuple[tuple[str, ...], str | None, list[str]]:
    """Conditions in a stable order, baseline first; returns ``(conditions, baseline, notes)``."""
    notes: list[str] = []
    found = list(dict.fromkeys(found))
    if declared:
        unknown = [c for c in found if c not in declared]
        if unknown:
            raise UserError(
                f"the responses name condition(s) {', '.join(unknown)} that the spec does not declare "
                f"({', '.join(declared)}); analyse them with the spec they were collected under."
            )
        order = [c for c in declared if c in found]
        missing = [c for c in declared if c not in found]
        if missing:
            notes.append(f"condition(s) {', '.join(missing)} of the spec have no main-trial responses")
    else:
        order = sorted(found)
    if baseline is not None:
        if baseline not in order:
            raise UserError(
                f"the baseline condition {baseline!r} has no main-trial responses; the conditions are "
                f"{', '.join(order)} (--baseline)."
            )
    else:
        named = [c for c in order if c.lower() in BASELINE_NAMES]
        if len(named) == 1:
            baseline = named[0]
        else:
            notes.append(
                "no condition is marked as the no-explanation baseline; comparisons use "
                f"{order[0]!r} as the reference level (pass --baseline NAME to choose)."
                if order
                else "no conditions"
            )
    if baseline is not None:
        order = [baseline] + [c for c in order if c != baseline]
    return tuple(order), baseline, notes


def main_conditions(df: Any) -> list[str]:
    """Conditions that occur on main trials (catch and practice trials may carry none)."""
    main = df[df["trial_kind"] == ANALYSIS_KIND]
    return sorted({str(c) for c in main["condition"].dropna()})


def design_from_table(
    df: Any,
    task: str | None = None,
    baseline: str | None = None,
    rules: ExclusionRules | None = None,
    dataset: str | None = None,
    model: str | None = None,
    seed: int = 0,
    path: str | None = None,
    title: str | None = None,
) -> StudyDesign:
    """The design of a bare response table: ``--task`` or the table's columns set chance; the
    default :class:`ExclusionRules` apply unless others are given."""
    task_, chance, notes = resolve_task_and_chance(df, task)
    conditions, base, more = order_conditions(main_conditions(df), None, baseline)
    study_ids = _column_values(df, "study_id")
    return StudyDesign(
        task=task_,
        chance=chance,
        conditions=conditions,
        baseline=base,
        rules=rules or ExclusionRules(),
        title=title or (study_ids[0] if len(study_ids) == 1 else (Path(path).stem if path else "study")),
        dataset=dataset or "unknown",
        model=model or "none",
        seed=seed,
        source="csv",
        path=path,
        notes=tuple(notes + more),
        rules_stated=rules is None,
    )


def _condition_names(spec: Any) -> tuple[list[str], dict[str, str], str | None]:
    """Names, condition -> visualizer, and the baseline a spec declares (strings or objects)."""
    names: list[str] = []
    visualizers: dict[str, str] = {}
    baseline = getattr(spec, "baseline", None)
    for item in getattr(spec, "conditions", None) or ():
        if isinstance(item, str):
            names.append(item)
            continue
        name = str(getattr(item, "name", item))
        names.append(name)
        vis = getattr(item, "visualizer", None)
        if vis in (None, "", "none"):
            if baseline is None and vis is not None:
                baseline = name
        else:
            visualizers[name] = str(vis)
    mapping = getattr(spec, "visualizers", None)
    if isinstance(mapping, dict):
        visualizers.update({str(k): str(v) for k, v in mapping.items() if v})
    return names, visualizers, (str(baseline) if baseline else None)


def _name_of(value: Any, default: str) -> str:
    """A spec's dataset / model as a record names it: a string as it is, an object by its ``name``
    (a model with an ``image_size`` as ``name@SIZEpx``)."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if not name:
        return str(value)
    size = getattr(value, "image_size", None)
    return f"{name}@{size}px" if size else str(name)


def design_from_spec(spec: Any, df: Any, baseline: str | None = None) -> StudyDesign:
    """The design of a study spec (``neuroinspect.studies.spec.StudySpec``): task, options, chance,
    exclusion rules, conditions, dataset, model and seed come from it."""
    n_options = getattr(spec, "n_options", None)
    task, chance, notes = resolve_task_and_chance(df, str(spec.task), n_options)
    declared, visualizers, spec_baseline = _condition_names(spec)
    conditions, base, more = order_conditions(main_conditions(df), declared, baseline or spec_baseline)
    rules = getattr(spec, "exclusions", None) or ExclusionRules()
    return StudyDesign(
        task=task,
        chance=chance,
        conditions=conditions,
        baseline=base,
        rules=rules,
        title=str(getattr(spec, "title", None) or "study"),
        dataset=_name_of(getattr(spec, "dataset", None), "unknown"),
        model=_name_of(getattr(spec, "model", None), "none"),
        seed=int(getattr(spec, "seed", 0) or 0),
        source="spec",
        path=str(getattr(spec, "path", "") or "") or None,
        visualizers=visualizers,
        notes=tuple(notes + more),
        rules_stated=False,
    )
