"""The whole analysis of one study: exclusions, then every statistic, in one pass.

:func:`analyze` takes the normalized long-format table and a :class:`~.design.StudyDesign` and
returns a :class:`StudyAnalysis` holding plain tables (pandas DataFrames); :mod:`.report`,
:mod:`.figures` and :mod:`.records` turn it into files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroinspect.studies.analysis import accuracy as acc
from neuroinspect.studies.analysis import agreement, compare, confidence, glmm, power, timing
from neuroinspect.studies.analysis.design import StudyDesign
from neuroinspect.studies.exclusions import ExclusionResult, apply_exclusions


@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of the analysis (command-line options)."""

    seed: int = 0
    n_boot: int = 2000
    power_sims: int = 500
    power_diffs: tuple[float, ...] = (0.10,)
    alpha: float = 0.05
    power: float = 0.8
    min_shared_units: int = 5
    compare: bool = True
    glmm: bool = True
    participants: str | None = None


@dataclass
class StudyAnalysis:
    """Everything :func:`analyze` computed; tables are pandas DataFrames (empty where a statistic
    does not apply, with the reason in ``notes``)."""

    design: StudyDesign
    settings: AnalysisSettings
    rows_by_kind: dict[str, int]
    exclusions: ExclusionResult
    participants_kind: str
    n_participants_total: int
    per_participant: Any
    per_participant_all: Any
    table: Any
    table_all: Any
    paired: Any
    paired_all: Any
    glmm: glmm.GLMMResult | None
    calibration: Any
    confidence: Any
    rt: Any
    rt_paired: Any
    per_participant_rt: Any
    error_consistency: Any
    test_retest: Any
    krippendorff: Any
    krippendorff_items: str
    power: list[power.PowerResult]
    design_facts: dict[str, Any]
    catch_accuracy: float
    notes: list[str] = field(default_factory=list)


def participants_kind(df: Any, override: str | None = None) -> tuple[str, list[str]]:
    """ "human", "simulated" or "mixed", from the ``simulated`` column; ``override`` ("human" or
    "simulated") speaks for a table without the column and must agree with one that has it."""
    from neuroinspect.errors import UserError

    notes: list[str] = []
    per = df.groupby("participant")["simulated"].max()
    known = per.dropna()
    if known.empty:
        if override is None:
            notes.append(
                "the table has no 'simulated' column: participants are taken to be people "
                "(pass --participants simulated if they are not)"
            )
            return "human", notes
        return override, notes
    if len(known) < len(per):
        raise UserError(
            f"the 'simulated' column is empty for {len(per) - len(known)} participant(s); fill it "
            "with 1 (simulated) or 0 (a person) for every row."
        )
    sims = int((known > 0).sum())
    kind = "simulated" if sims == len(known) else ("human" if sims == 0 else "mixed")
    if override is not None and override != kind:
        raise UserError(
            f"--participants {override} contradicts the table's 'simulated' column ({kind}); drop the option."
        )
    return kind, notes


def _units_shared(main: Any) -> bool:
    """Whether participants see the same units in every condition (true for most participants)."""
    same = []
    for _pid, part in main.groupby("participant"):
        sets = {frozenset(g["unit"]) for _c, g in part.groupby("condition")}
        if part["condition"].nunique() >= 2:
            same.append(len(sets) == 1)
    return bool(same) and float(np.mean(same)) > 0.5


def analyze(
    df: Any,
    design: StudyDesign,
    settings: AnalysisSettings | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[Any], Any] | None = None,
) -> StudyAnalysis:
    """Run every statistic of the study analysis on ``df`` (a normalized long-format table)."""
    settings = settings or AnalysisSettings()
    say = log or (lambda _m: None)
    notes = list(design.notes)
    rows_by_kind = {str(k): int(v) for k, v in df["trial_kind"].value_counts().sort_index().items()}
    kind, more = participants_kind(df, settings.participants)
    notes += more

    say("exclusions")
    excl = apply_exclusions(df, design.rules)
    notes += excl.notes
    kept = excl.kept
    if not (kept["trial_kind"] == acc.ANALYSIS_KIND).any():
        from neuroinspect.errors import UserError

        raise UserError(
            f"every participant was excluded ({len(excl.excluded_participants)}; rules broken: "
            f"{', '.join(sorted(set(excl.excluded['rule'])))}); check the data, or loosen the "
            "[exclusions] rules of the spec."
        )
    conditions = list(design.conditions)
    ordered = design.is_rating
    left = set(acc.main_trials(kept)["condition"].dropna())
    for cond in conditions:
        if cond not in left:
            notes.append(f"condition {cond!r} has no main trials left after the exclusions: no record for it")

    say("accuracy per condition" if not design.is_rating else "ratings per condition")
    if design.is_rating:
        per_part = acc.participant_ratings(kept)
        per_part_all = acc.participant_ratings(df)
        table = acc.rating_table(kept, conditions, settings.n_boot, settings.seed)
        table_all = acc.rating_table(df, conditions, settings.n_boot, settings.seed)
        value = "mean_rating"
    else:
        assert design.chance is not None
        per_part = acc.participant_accuracy(kept)
        per_part_all = acc.participant_accuracy(df)
        table = acc.accuracy_table(kept, conditions, design.chance, settings.n_boot, settings.seed)
        table_all = acc.accuracy_table(df, conditions, design.chance, settings.n_boot, settings.seed)
        value = "accuracy"

    paired = paired_all = _empty()
    glmm_res: glmm.GLMMResult | None = None
    if settings.compare and len(conditions) >= 2:
        say("paired comparisons (Holm)")
        paired = compare.paired_comparisons(per_part, conditions, value)
        paired_all = compare.paired_comparisons(per_part_all, conditions, value)
        if settings.glmm and not design.is_rating:
            say("mixed-effects logistic regression")
            try:
                glmm_res = glmm.glmm_comparisons(acc.main_trials(kept), conditions, conditions[0])
                notes += glmm_res.warnings
            except ValueError as err:
                notes.append(f"the mixed-effects model was not fitted: {err}")
        elif design.is_rating:
            notes.append("ratings have no right answer: no logistic mixed model (paired tests only)")

    say("confidence and response times")
    calib = confidence.calibration_table(kept, conditions) if not design.is_rating else _empty()
    conf = confidence.confidence_summary(kept, conditions) if not design.is_rating else _empty()
    rt = timing.rt_table(kept, conditions, design.rules.too_fast_s)
    per_rt = timing.participant_median_rt(kept)
    rt_paired = (
        compare.paired_comparisons(per_rt, conditions, "median_rt")
        if settings.compare and len(conditions) >= 2
        else _empty()
    )

    say("agreement")
    main = acc.main_trials(kept)
    ec = (
        agreement.error_consistency(main, conditions, settings.min_shared_units)
        if not design.is_rating
        else _empty()
    )
    retest = agreement.test_retest(kept, conditions, ordered=ordered)
    if design.task in ("rating", "labelling"):
        levels = ("ordinal", "interval") if design.is_rating else ("nominal",)
        kalpha, items = agreement.krippendorff_table(main, conditions, levels)
    else:
        kalpha, items = _empty(), ""

    catch = kept[(kept["trial_kind"] == "catch") & kept["correct"].notna()]
    catch_acc = float(catch["correct"].mean()) if len(catch) else math.nan
    trials_pc = int(np.median(per_part["n"])) if len(per_part) else 0
    facts = {
        "trials_per_condition": trials_pc,
        "n_units": int(main["unit"].nunique()),
        "units_shared": _units_shared(main),
        "n_conditions": len(conditions),
    }

    powers: list[power.PowerResult] = []
    if glmm_res is not None and settings.power_sims > 0:
        say("power for a follow-up (simulation)")
        intercept = float(glmm_res.fit.coef["estimate"].iloc[0])
        for delta in settings.power_diffs:
            try:
                powers.append(
                    power.power_analysis(
                        intercept,
                        glmm_res.fit.var_participant,
                        glmm_res.fit.var_unit,
                        delta,
                        max(facts["n_units"], 1),
                        max(trials_pc, 1),
                        units_shared=bool(facts["units_shared"]),
                        alpha=settings.alpha,
                        power=settings.power,
                        n_sims=settings.power_sims,
                        seed=settings.seed,
                        progress=progress,
                    )
                )
            except ValueError as err:
                notes.append(f"power for a difference of {delta:+.2f} not computed: {err}")
    elif settings.compare and settings.glmm and not design.is_rating and settings.power_sims > 0:
        notes.append("no power analysis: it simulates from the fitted mixed model, which is missing")

    return StudyAnalysis(
        design=design,
        settings=settings,
        rows_by_kind=rows_by_kind,
        exclusions=excl,
        participants_kind=kind,
        n_participants_total=int(df["participant"].nunique()),
        per_participant=per_part,
        per_participant_all=per_part_all,
        table=table,
        table_all=table_all,
        paired=paired,
        paired_all=paired_all,
        glmm=glmm_res,
        calibration=calib,
        confidence=conf,
        rt=rt,
        rt_paired=rt_paired,
        per_participant_rt=per_rt,
        error_consistency=ec,
        test_retest=retest,
        krippendorff=kalpha,
        krippendorff_items=items,
        power=powers,
        design_facts=facts,
        catch_accuracy=catch_acc,
        notes=notes,
    )


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame()
