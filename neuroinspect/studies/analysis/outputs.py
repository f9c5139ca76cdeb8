"""The files of a study analysis, in one folder::

    report.md        tables and the plain-language reading (figures linked)
    figures/*.png    accuracy, calibration, rt, power
    results.jsonl    one ``study`` result record per condition (the leaderboard's input)
    analysis.json    every table of the analysis, machine-readable

Every file is written atomically (:mod:`neuroinspect.fileio`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from neuroinspect.fileio import atomic_write_json, atomic_write_text
from neuroinspect.studies.analysis.pipeline import StudyAnalysis

OUTPUT_NAMES = ("report.md", "results.jsonl", "analysis.json", "figures")
ANALYSIS_PACKAGES = ("scipy", "statsmodels", "gpboost", "krippendorff", "pandas", "matplotlib")


def _records(df: Any) -> list[dict[str, Any]]:
    if df is None or len(df) == 0:
        return []
    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: _clean(v) for k, v in row.items()})
    return out


def _clean(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def analysis_json(a: StudyAnalysis) -> dict[str, Any]:
    """Every table and fact of the analysis as JSON-ready data."""
    d = a.design
    out: dict[str, Any] = {
        "design": {
            "title": d.title,
            "task": d.task,
            "chance": d.chance,
            "conditions": list(d.conditions),
            "baseline": d.baseline,
            "dataset": d.dataset,
            "model": d.model,
            "source": d.source,
            "path": d.path,
            "exclusion_rules": d.rules.as_dict(),
            **a.design_facts,
        },
        "participants": a.participants_kind,
        "n_participants_total": a.n_participants_total,
        "rows_by_trial_kind": a.rows_by_kind,
        "excluded": _records(a.exclusions.excluded),
        "exclusion_notes": a.exclusions.notes,
        "catch_accuracy": _clean(a.catch_accuracy),
        "conditions": _records(a.table),
        "conditions_without_exclusions": _records(a.table_all),
        "per_participant": _records(a.per_participant),
        "paired": _records(a.paired),
        "paired_without_exclusions": _records(a.paired_all),
        "calibration": _records(a.calibration),
        "confidence": _records(a.confidence),
        "response_times": _records(a.rt),
        "response_times_paired": _records(a.rt_paired),
        "error_consistency": _records(a.error_consistency),
        "test_retest": _records(a.test_retest),
        "krippendorff": _records(a.krippendorff),
        "notes": a.notes,
        "settings": {
            "seed": a.settings.seed,
            "n_boot": a.settings.n_boot,
            "power_sims": a.settings.power_sims,
            "power_diffs": list(a.settings.power_diffs),
            "alpha": a.settings.alpha,
            "power": a.settings.power,
        },
    }
    if a.glmm is not None:
        f = a.glmm.fit
        out["glmm"] = {
            "formula": a.glmm.formula,
            "reference": f.reference,
            "coefficients": _records(f.coef),
            "contrasts": _records(a.glmm.contrasts),
            "var_participant": f.var_participant,
            "var_unit": f.var_unit,
            "se_var_participant": _clean(f.se_var_participant),
            "se_var_unit": _clean(f.se_var_unit),
            "n_obs": f.n_obs,
            "warnings": a.glmm.warnings,
        }
    out["power"] = [
        {
            "delta": r.delta,
            "baseline_accuracy": r.baseline_accuracy,
            "target_accuracy": r.target_accuracy,
            "log_odds_ratio": r.log_odds_ratio,
            "n_required": r.n_required,
            "n_normal": r.n_normal,
            "sd_diff": r.sd_diff,
            "n_sims": r.n_sims,
            "alpha": r.alpha,
            "power_target": r.power_target,
            "trials_per_condition": r.trials_per_condition,
            "n_units": r.n_units,
            "units_shared": r.units_shared,
            "curve": _records(r.curve),
            "notes": r.notes,
        }
        for r in a.power
    ]
    return out


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder that exists and is not empty, unless ``overwrite``, or that cannot be created or
    written (before any work)."""
    from neuroinspect.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a folder for the analysis.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"the output folder {out} exists and is not empty; choose another --out or pass --overwrite "
            "to replace the analysis files in it."
        )
    from neuroinspect.outputs import Outputs

    Outputs(overwrite=True).folder(out, "--out")  # creatable / writable (nothing is made here)


def write_outputs(
    a: StudyAnalysis, out: Path, provenance: Any, command: str | None = None
) -> dict[str, Path]:
    """Write report, figures, records and tables into ``out``; returns name -> path.

    ``provenance``: a :class:`neuroinspect.runtime.Provenance` (stopped here, after the figures).
    """
    from neuroinspect.harness.records import append_records
    from neuroinspect.runtime import package_versions
    from neuroinspect.studies.analysis.figures import write_figures
    from neuroinspect.studies.analysis.records import study_records
    from neuroinspect.studies.analysis.report import render_report

    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(a, out / "figures")
    provenance.stop()
    prov = provenance.as_dict()
    prov["versions"] = {**prov["versions"], **package_versions(ANALYSIS_PACKAGES)}
    records = study_records(a, prov)
    results = out / "results.jsonl"
    # this run's records replace the last run's (--overwrite), never add to them: write aside, then rename
    fresh = out / ".results.jsonl.new"
    if fresh.exists():
        fresh.unlink()
    append_records(fresh, records)
    os.replace(fresh, results)
    atomic_write_json(out / "analysis.json", {**analysis_json(a), "provenance": prov})
    rel = {k: str(p.relative_to(out)) for k, p in figures.items()}
    atomic_write_text(out / "report.md", render_report(a, rel, prov, command))
    return {"report": out / "report.md", "results": results, "analysis": out / "analysis.json", **figures}
