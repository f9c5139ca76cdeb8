"""Accuracy per condition, three ways, because each answers a different question.

* **Trial level**: the pooled proportion correct with a Wilson score interval and an exact binomial
  test against chance. It treats trials as independent, which they are not (the same person answers
  many trials), so the interval is too narrow when participants differ; it is reported because it is
  what a binomial test against chance needs, and because papers report it.
* **Participant level**: each participant's accuracy in the condition, then the mean ± 2 SEM across
  participants (the convention of Borowski et al. ICLR'21 and Zimmermann et al. NeurIPS'21, so our
  numbers compare to theirs), and a BCa bootstrap interval over participants (which does not lean on
  normality when participants are few).
* The mixed-effects model (:mod:`.glmm`) accounts for participants and units at once.

All accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuroinspect.errors import UserError

ANALYSIS_KIND = "main"


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (statsmodels ``proportion_confint``)."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return (math.nan, math.nan)
    low, high = proportion_confint(int(k), int(n), alpha=1.0 - level, method="wilson")
    return float(low), float(high)


def binomial_p_value(k: int, n: int, chance: float) -> float:
    """Two-sided exact binomial test of ``k`` of ``n`` against ``chance`` (scipy ``binomtest``).

    Two-sided because an explanation that misleads (accuracy below chance) is a finding too.
    """
    from scipy.stats import binomtest

    if n <= 0:
        return math.nan
    return float(binomtest(int(k), int(n), float(chance), alternative="two-sided").pvalue)


def mean_2sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and twice the standard error of the mean (SD with ddof=1 over sqrt(n)); 2 SEM is NaN
    for fewer than two values."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    if arr.size == 1:
        return (float(arr[0]), math.nan)
    return float(arr.mean()), float(2.0 * arr.std(ddof=1) / math.sqrt(arr.size))


def bootstrap_mean_interval(
    values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Bootstrap interval of the mean over ``values`` (one value per participant), BCa
    (scipy ``stats.bootstrap``, ``n_boot`` resamples drawn by ``numpy.random.default_rng(seed)``);
    the percentile interval from the same draws where BCa is undefined (every resample on one side of
    the sample mean, which takes very few resamples), the value itself at both ends when all values
    are equal, and NaN for fewer than two values. Computed in float64 whatever the input's dtype."""
    from scipy.stats import bootstrap

    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        return (math.nan, math.nan)
    if np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    rng = np.random.default_rng(seed)
    import warnings

    with warnings.catch_warnings():
        # BCa warns (and gives NaN) on degenerate samples; fall back to the percentile interval then
        warnings.simplefilter("ignore")
        res = bootstrap(
            (arr,), np.mean, n_resamples=int(n_boot), confidence_level=level, method="BCa", random_state=rng
        )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            res = bootstrap(
                (arr,),
                np.mean,
                n_resamples=int(n_boot),
                confidence_level=level,
                method="percentile",
                random_state=np.random.default_rng(seed),
            )
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def main_trials(df: Any) -> Any:
    """The rows the accuracy analysis uses: main trials (not practice, catch or repeated)."""
    return df[df["trial_kind"] == ANALYSIS_KIND]


def participant_accuracy(df: Any) -> Any:
    """One row per (participant, condition) of main trials with a right answer, sorted by participant
    then condition: ``n`` trials, ``k`` correct (integers), ``accuracy`` = k / n."""
    import pandas as pd

    main = main_trials(df)
    main = main[main["correct"].notna()]
    if main.empty:
        return pd.DataFrame(columns=["participant", "condition", "n", "k", "accuracy"])
    grouped = main.groupby(["participant", "condition"], sort=True)["correct"]
    out = grouped.agg(n="count", k="sum").reset_index()
    out["k"] = out["k"].astype(int)
    out["accuracy"] = out["k"] / out["n"]
    return out


def accuracy_table(
    df: Any, conditions: Sequence[str], chance: float, n_boot: int = 2000, seed: int = 0
) -> Any:
    """Per condition: trials, correct, trial-level accuracy with its Wilson interval and binomial
    p-value against ``chance``, participant-level mean ± 2 SEM and its bootstrap interval
    (:func:`bootstrap_mean_interval` with ``n_boot`` resamples, seeded ``seed + 7919 i`` for the i-th
    condition: each condition its own reproducible stream)."""
    import pandas as pd

    main = main_trials(df)
    main = main[main["correct"].notna()]
    per_part = participant_accuracy(df)
    rows = []
    for i, cond in enumerate(conditions):
        trials = main[main["condition"] == cond]
        n = len(trials)
        k = int(trials["correct"].sum())
        low, high = wilson_interval(k, n)
        accs = per_part[per_part["condition"] == cond]["accuracy"].to_numpy()
        pmean, p2sem = mean_2sem(accs)
        blow, bhigh = bootstrap_mean_interval(accs, n_boot=n_boot, seed=seed + 7919 * i)
        rows.append(
            {
                "condition": cond,
                "n_participants": int(accs.size),
                "n_units": int(trials["unit"].nunique()),
                "n_trials": n,
                "n_correct": k,
                "accuracy": k / n if n else math.nan,
                "ci_low": low,
                "ci_high": high,
                "p_value": binomial_p_value(k, n, chance),
                "participant_mean": pmean,
                "participant_2sem": p2sem,
                "boot_low": blow,
                "boot_high": bhigh,
            }
        )
    return pd.DataFrame(rows)


def ratings(df: Any) -> Any:
    """Main-trial rows of a rating task with the numeric rating in ``rating``; a :class:`UserError`
    when a response is not a number."""
    import pandas as pd

    main = main_trials(df).copy()
    values = pd.to_numeric(main["response"], errors="coerce")
    bad = values.isna() & main["response"].notna()
    if bool(bad.any()):
        row = main[bad].iloc[0]
        raise UserError(
            f"a rating task needs numeric responses; participant {row['participant']} answered "
            f"{row['response']!r} on trial {row['trial_id']}. Check --task (is this a rating study?)."
        )
    main["rating"] = values
    return main[main["rating"].notna()]


def participant_ratings(df: Any) -> Any:
    """One row per (participant, condition): ``n`` rated trials and the participant's ``mean_rating``."""
    rated = ratings(df)
    out = rated.groupby(["participant", "condition"], sort=True)["rating"].agg(n="count", mean_rating="mean")
    return out.reset_index()


def rating_table(df: Any, conditions: Sequence[str], n_boot: int = 2000, seed: int = 0) -> Any:
    """Per condition of a rating task: the participant-level mean rating (mean of participants'
    means) with a t-interval, ± 2 SEM and a bootstrap interval; the trial-level mean beside it."""
    import pandas as pd
    from scipy import stats

    rated = ratings(df)
    per_part = participant_ratings(df)
    rows = []
    for i, cond in enumerate(conditions):
        trials = rated[rated["condition"] == cond]
        means = per_part[per_part["condition"] == cond]["mean_rating"].to_numpy()
        pmean, p2sem = mean_2sem(means)
        if means.size >= 2 and means.std(ddof=1) > 0:
            low, high = stats.t.interval(0.95, means.size - 1, loc=pmean, scale=stats.sem(means))
        elif means.size >= 2:
            low, high = pmean, pmean
        else:
            low, high = math.nan, math.nan
        blow, bhigh = bootstrap_mean_interval(means, n_boot=n_boot, seed=seed + 7919 * i)
        rows.append(
            {
                "condition": cond,
                "n_participants": int(means.size),
                "n_units": int(trials["unit"].nunique()),
                "n_trials": len(trials),
                "mean_rating": pmean,
                "rating_ci_low": float(low),
                "rating_ci_high": float(high),
                "rating_2sem": p2sem,
                "rating_boot_low": blow,
                "rating_boot_high": bhigh,
                "trial_mean_rating": float(trials["rating"].mean()) if len(trials) else math.nan,
                "rating_min": float(trials["rating"].min()) if len(trials) else math.nan,
                "rating_max": float(trials["rating"].max()) if len(trials) else math.nan,
            }
        )
    return pd.DataFrame(rows)
