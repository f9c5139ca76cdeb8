"""Do the study analysis' intervals cover the truth, and does its power analysis predict how often
an effect is found?

A simulated within-subject 2AFC study with a known effect: two conditions at 0.75 and 0.90 true
(population-averaged) accuracy, random intercepts for participants and units with known variances
(logit scale, default 0.5 and 0.3), ``--participants`` people answering ``--trials`` trials per
condition on units drawn from ``--units``
(:func:`neuroinspect.studies.analysis.simulate.simulate_study`). Repeated ``--reps`` times (default
100), each repetition is analysed with the same functions ``neuroinspect study analyze`` uses:

* the mixed model (:func:`~neuroinspect.studies.analysis.glmm.glmm_comparisons`): does its 95%
  interval of the log odds ratio cover the true conditional effect? is p < 0.05 (a detection)?
* the paired t-test on participant accuracy (:func:`~neuroinspect.studies.analysis.compare.paired_test`):
  does its 95% interval cover the true accuracy difference (0.15)? is p < 0.05?
* the power analysis (:mod:`neuroinspect.studies.analysis.power`), run from that repetition's fitted
  model for a 0.15 difference at the same design: the predicted detection rate of the paired test,
  averaged over repetitions, against the detection rate measured over the repetitions; and the
  normal approximation's prediction beside it. The oracle (the power simulated from the true model)
  says what the measured rate should be.

A control runs the same with no effect (both conditions at 0.75): the share of repetitions with
p < 0.05 is the false-positive rate (should be near 0.05) and the intervals should cover 0.

Example::

    .venv/bin/python benchmarks/study_coverage.py                 # 100 repetitions, a few minutes on CPU
    .venv/bin/python benchmarks/study_coverage.py --smoke         # seconds (tests call this)
    .venv/bin/python benchmarks/study_coverage.py --participants 30 --trials 10 --out coverage.json

The last line printed is ``coverage: glmm <c> paired <c> | detection measured <m> predicted <p>``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.runtime import progress
from neuroinspect.studies.analysis.accuracy import participant_accuracy
from neuroinspect.studies.analysis.compare import paired_test
from neuroinspect.studies.analysis.glmm import glmm_comparisons
from neuroinspect.studies.analysis.power import simulated_power
from neuroinspect.studies.analysis.simulate import StudyModel, model_from_accuracies, simulate_study


def _normal_power(sd_diff: float, delta: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired z-test: Phi(delta sqrt(n) / sd - z_{1-alpha/2})."""
    from scipy.stats import norm

    if not sd_diff > 0:
        return math.nan
    return float(norm.cdf(delta * math.sqrt(n) / sd_diff - norm.ppf(1 - alpha / 2)))


def run_scenario(
    model: StudyModel,
    n_participants: int,
    n_units: int,
    trials: int,
    reps: int,
    seed: int,
    power_sims: int,
    show_progress: bool = True,
) -> dict[str, Any]:
    """``reps`` simulated studies of ``model`` (conditions "none", "vis"), each analysed; returns
    the coverage and detection figures (see the module docstring)."""
    true_lor = model.log_odds_ratio("none", "vis")
    true_diff = model.marginal("vis") - model.marginal("none")
    rows = []
    for r in progress(range(reps), desc="repetitions", enabled=show_progress):
        df = simulate_study(
            model,
            n_participants,
            n_units,
            trials,
            seed=seed + r,
            catch_per_participant=0,
            repeated_per_participant=0,
        )
        per = participant_accuracy(df)
        wide = per.pivot(index="participant", columns="condition", values="accuracy")
        paired = paired_test(wide["none"].to_numpy(), wide["vis"].to_numpy())
        row: dict[str, Any] = {
            "paired_diff": paired["diff"],
            "paired_covers": paired["diff_low"] <= true_diff <= paired["diff_high"],
            "paired_detects": bool(paired["p_t"] < 0.05 and paired["diff"] > 0),
            "paired_rejects": bool(paired["p_t"] < 0.05),
        }
        try:
            res = glmm_comparisons(df, ["none", "vis"], "none")
            c = res.contrasts.iloc[0]
            low, high = math.log(c["or_low"]), math.log(c["or_high"])
            fit = res.fit
            intercept = float(fit.coef["estimate"].iloc[0])
            row.update(
                glmm_lor=c["log_or"],
                glmm_covers=low <= true_lor <= high,
                glmm_detects=bool(c["p"] < 0.05 and c["log_or"] > 0),
                glmm_rejects=bool(c["p"] < 0.05),
                var_participant=fit.var_participant,
                var_unit=fit.var_unit,
            )
            if power_sims:
                # the power analysis from this repetition's fitted model, planned difference = the true one
                fitted = model_from_fit(intercept, fit.var_participant, fit.var_unit, true_diff)
                row["predicted_power"] = simulated_power(
                    fitted, n_participants, n_units, trials, power_sims, seed=seed + 10_000 + r
                )
                sd = float(np.std(wide["vis"] - wide["none"], ddof=1))
                row["normal_power"] = _normal_power(sd, true_diff, n_participants)
        except ValueError as err:  # a degenerate simulated study (e.g. every answer right)
            row.update(glmm_error=str(err))
        rows.append(row)

    def share(key: str) -> float | None:
        vals = [bool(r[key]) for r in rows if key in r]
        return float(np.mean(vals)) if vals else None

    def mean(key: str) -> float | None:
        vals = [float(r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        return float(np.mean(vals)) if vals else None

    oracle = simulated_power(
        model, n_participants, n_units, trials, max(power_sims, 2000), seed=seed + 99_999
    )
    return {
        "true_accuracy": {"none": model.marginal("none"), "vis": model.marginal("vis")},
        "true_log_odds_ratio": true_lor,
        "true_difference": true_diff,
        "reps": reps,
        "glmm_failures": sum("glmm_error" in r for r in rows),
        "glmm_coverage": share("glmm_covers"),
        "paired_coverage": share("paired_covers"),
        "glmm_detection": share("glmm_detects"),
        "paired_detection": share("paired_detects"),
        "glmm_rejection": share("glmm_rejects"),
        "paired_rejection": share("paired_rejects"),
        "glmm_mean_log_or": mean("glmm_lor"),
        "paired_mean_diff": mean("paired_diff"),
        "mean_var_participant": mean("var_participant"),
        "mean_var_unit": mean("var_unit"),
        "predicted_power": mean("predicted_power"),
        "normal_approx_power": mean("normal_power"),
        "oracle_power": oracle,
        "mc_se_of_a_share": math.sqrt(0.25 / reps),
    }


def model_from_fit(intercept: float, var_p: float, var_u: float, delta: float) -> StudyModel:
    """The follow-up model the power analysis simulates: the fitted baseline, plus ``delta``."""
    from neuroinspect.studies.analysis.simulate import logit_for_accuracy, marginal_accuracy

    base = marginal_accuracy(intercept, var_p + var_u)
    target = min(base + delta, 0.999)
    return StudyModel({"none": intercept, "vis": logit_for_accuracy(target, var_p + var_u)}, var_p, var_u)


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--participants", type=int, default=12)
    p.add_argument("--units", type=int, default=20)
    p.add_argument("--trials", type=int, default=8, help="trials per condition and participant")
    p.add_argument("--acc", type=float, nargs=2, default=(0.75, 0.90), metavar=("BASE", "VIS"))
    p.add_argument("--var-participant", type=float, default=0.5)
    p.add_argument("--var-unit", type=float, default=0.3)
    p.add_argument("--power-sims", type=int, default=500, help="simulations per power prediction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-null", action="store_true", help="skip the no-effect control")
    p.add_argument("--smoke", action="store_true", help="3 repetitions, 50 power simulations: seconds")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.reps, args.power_sims = 3, 50
    t0 = time.perf_counter()
    effect = model_from_accuracies(
        {"none": args.acc[0], "vis": args.acc[1]}, args.var_participant, args.var_unit
    )
    design = (args.participants, args.units, args.trials)
    out: dict[str, Any] = {
        "design": {
            "participants": args.participants,
            "units": args.units,
            "trials_per_condition": args.trials,
            "var_participant": args.var_participant,
            "var_unit": args.var_unit,
            "seed": args.seed,
            "power_sims": args.power_sims,
        },
        "effect": run_scenario(effect, *design, args.reps, args.seed, args.power_sims, not args.no_progress),
    }
    if not args.no_null:
        null = model_from_accuracies(
            {"none": args.acc[0], "vis": args.acc[0]}, args.var_participant, args.var_unit
        )
        out["null"] = run_scenario(null, *design, args.reps, args.seed + 50_000, 0, not args.no_progress)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)

    e = out["effect"]
    print(
        f"design: {args.participants} participants x {args.trials} trials per condition, {args.units} units; "
        f"true accuracy {args.acc[0]:.2f} vs {args.acc[1]:.2f} (log OR {e['true_log_odds_ratio']:.3f}); "
        f"variances participant {args.var_participant:g}, unit {args.var_unit:g}; {args.reps} repetitions"
    )
    print(
        f"  GLMM 95% interval covers the true log OR:        {_fmt(e['glmm_coverage'])}  (mean estimate {_fmt(e['glmm_mean_log_or'], False)})"
    )
    print(
        f"  paired-t 95% interval covers the true difference: {_fmt(e['paired_coverage'])}  (mean estimate {_fmt(e['paired_mean_diff'], False)})"
    )
    print(f"  detection (p < 0.05): paired t {_fmt(e['paired_detection'])}, GLMM {_fmt(e['glmm_detection'])}")
    print(
        f"  predicted detection of the paired t (power analysis from each fit): {_fmt(e['predicted_power'])}; "
        f"normal approximation {_fmt(e['normal_approx_power'])}; oracle (true model) {_fmt(e['oracle_power'])}"
    )
    print(f"  Monte-Carlo SE of a share over {args.reps} repetitions: <= {_fmt(e['mc_se_of_a_share'])}")
    if "null" in out:
        n = out["null"]
        print(
            f"control, no effect: false positives paired t {_fmt(n['paired_rejection'])}, GLMM {_fmt(n['glmm_rejection'])}; "
            f"coverage of 0: paired {_fmt(n['paired_coverage'])}, GLMM {_fmt(n['glmm_coverage'])}"
        )
    if args.out:
        from neuroinspect.fileio import atomic_write_json

        atomic_write_json(args.out, out)
    print(f"wall {out['wall_seconds']} s")
    print(
        f"coverage: glmm {_fmt(e['glmm_coverage'])} paired {_fmt(e['paired_coverage'])} | "
        f"detection measured {_fmt(e['paired_detection'])} predicted {_fmt(e['predicted_power'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
