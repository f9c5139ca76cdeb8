"""One ``study`` result record per condition (schema: :mod:`neuroinspect.harness.records`,
``STUDY_METRICS``), so the leaderboard can rank explanation methods by how well people understand
with them, beside the published human-study numbers.

Records never carry participant ids (a Prolific id is personal data): exclusions are counted per
rule.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from neuroinspect.harness.records import make_record
from neuroinspect.studies.analysis.pipeline import StudyAnalysis


def _num(value: Any) -> float | None:
    """A float for JSON, None for NaN / missing."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clip01(value: Any) -> float | None:
    v = _num(value)
    return None if v is None else min(1.0, max(0.0, v))


def _pair(df: Any, a: str, b: str) -> Any:
    if df is None or len(df) == 0:
        return None
    rows = df[(df["a"] == a) & (df["b"] == b)]
    return rows.iloc[0] if len(rows) else None


def study_config(analysis: StudyAnalysis) -> dict[str, Any]:
    """The design and the settings of the analysis (the record's ``config``)."""
    design = analysis.design
    excl = analysis.exclusions
    by_rule = Counter(str(r) for r in excl.excluded["rule"]) if len(excl.excluded) else Counter()
    return {
        "study_title": design.title,
        "source": design.source,
        "spec_path": design.path if design.source == "spec" else None,
        "responses_path": design.path if design.source == "csv" else None,
        "task": design.task,
        "chance": design.chance,
        "conditions": list(design.conditions),
        "baseline": design.baseline,
        "exclusion_rules": design.rules.as_dict(),
        "exclusion_rules_source": "defaults" if design.rules_stated else design.source,
        "excluded_by_rule": dict(sorted(by_rule.items())),
        "n_participants_total": analysis.n_participants_total,
        "rows_by_trial_kind": analysis.rows_by_kind,
        "trials_per_condition": analysis.design_facts["trials_per_condition"],
        "n_units": analysis.design_facts["n_units"],
        "units_shared_across_conditions": analysis.design_facts["units_shared"],
        "analysis": {
            "seed": analysis.settings.seed,
            "n_boot": analysis.settings.n_boot,
            "boot_method": "BCa over participants",
            "paired_test": "paired t-test on participant accuracy, Holm over all pairs",
            "glmm": "correct ~ condition + (1|participant) + (1|unit), binomial logit, Laplace (gpboost)",
            "power_sims": analysis.settings.power_sims,
        },
    }


def study_records(analysis: StudyAnalysis, provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """One validated record per condition."""
    design = analysis.design
    config = study_config(analysis)
    n_excluded = len(analysis.exclusions.excluded_participants)
    base = design.conditions[0] if design.conditions else None
    out = []
    for _, row in analysis.table.iterrows():
        cond = str(row["condition"])
        if int(row["n_trials"]) == 0 or int(row["n_participants"]) == 0:
            continue  # nobody left in this condition after the exclusions (said in the notes)
        metrics: dict[str, Any] = {
            "task_type": design.task,
            "n_participants": int(row["n_participants"]),
            "n_trials": int(row["n_trials"]),
            "n_units": int(row["n_units"]),
            "n_excluded": n_excluded,
            "participants": analysis.participants_kind,
            "is_baseline": cond == design.baseline,
            "reference": base,
            "catch_accuracy": _num(analysis.catch_accuracy),
        }
        if design.is_rating:
            metrics.update(
                accuracy=None,
                ci_low=None,
                ci_high=None,
                ci_method=None,
                participant_mean=None,
                participant_2sem=None,
                boot_low=None,
                boot_high=None,
                chance=None,
                p_value=None,
                mean_rating=_num(row["mean_rating"]),
                rating_ci_low=_num(row["rating_ci_low"]),
                rating_ci_high=_num(row["rating_ci_high"]),
                rating_ci_method="t over participant means",
                rating_2sem=_num(row["rating_2sem"]),
                rating_boot_low=_num(row["rating_boot_low"]),
                rating_boot_high=_num(row["rating_boot_high"]),
                rating_scale_observed=[_num(row["rating_min"]), _num(row["rating_max"])],
            )
        else:
            metrics.update(
                accuracy=_clip01(row["accuracy"]),
                ci_low=_clip01(row["ci_low"]),
                ci_high=_clip01(row["ci_high"]),
                ci_method="wilson",
                participant_mean=_clip01(row["participant_mean"]),
                participant_2sem=_num(row["participant_2sem"]),
                boot_low=_clip01(row["boot_low"]),
                boot_high=_clip01(row["boot_high"]),
                chance=design.chance,
                p_value=_clip01(row["p_value"]),
                n_correct=int(row["n_correct"]),
            )
        if base is not None and cond != base:
            pair = _pair(analysis.paired, base, cond)
            if pair is not None:
                metrics.update(
                    diff_vs_reference=_num(pair["diff"]),
                    diff_low=_num(pair["diff_low"]),
                    diff_high=_num(pair["diff_high"]),
                    p_vs_reference_holm=_num(pair["p_t_holm"]),
                )
            if analysis.glmm is not None:
                g = _pair(analysis.glmm.contrasts, base, cond)
                if g is not None:
                    metrics.update(
                        odds_ratio_vs_reference=_num(g["odds_ratio"]),
                        or_low=_num(g["or_low"]),
                        or_high=_num(g["or_high"]),
                        glmm_p_holm=_num(g["p_holm"]),
                    )
        out.append(
            make_record(
                task="study",
                dataset=design.dataset,
                model=design.model,
                method={"condition": cond, "visualizer": design.visualizer(cond)},
                seed=design.seed,
                metrics=metrics,
                config=config,
                provenance=provenance,
                class_idx=None,
            )
        )
    return out
