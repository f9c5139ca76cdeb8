"""Confidence calibration: is a participant right more often when they say they are sure?

* Accuracy at each confidence level (with a Wilson interval), per condition and over all.
* Type-2 discrimination: the area under the ROC curve of confidence for telling one's right answers
  from one's wrong ones (0.5 = confidence says nothing about being right; ties count half), i.e. the
  Mann-Whitney U statistic over (right, wrong) trial pairs divided by their number.
* Mean confidence on right and on wrong answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuroinspect.studies.analysis.accuracy import main_trials, wilson_interval


def confidence_auc(confidence: Sequence[float], correct: Sequence[float]) -> float:
    """P(confidence on a right answer > on a wrong one) + 0.5 P(tie), by scipy's Mann-Whitney U;
    NaN without both right and wrong answers."""
    from scipy.stats import mannwhitneyu

    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    right, wrong = conf[corr == 1], conf[corr == 0]
    if right.size == 0 or wrong.size == 0:
        return math.nan
    u = mannwhitneyu(right, wrong, alternative="two-sided").statistic
    return float(u / (right.size * wrong.size))


def calibration_table(df: Any, conditions: Sequence[str]) -> Any:
    """One row per (condition, confidence level) and per level over all conditions
    (``condition == "all"``): ``n``, ``k`` right, ``accuracy``, ``ci_low``, ``ci_high``."""
    import pandas as pd

    main = main_trials(df)
    main = main[main["correct"].notna() & main["confidence"].notna()]
    rows = []
    for cond in [*conditions, "all"]:
        sub = main if cond == "all" else main[main["condition"] == cond]
        for level, grp in sub.groupby("confidence", sort=True):
            n, k = len(grp), int(grp["correct"].sum())
            low, high = wilson_interval(k, n)
            rows.append(
                {
                    "condition": cond,
                    "confidence": float(level),
                    "n": n,
                    "k": k,
                    "accuracy": k / n,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows, columns=["condition", "confidence", "n", "k", "accuracy", "ci_low", "ci_high"])


def confidence_summary(df: Any, conditions: Sequence[str]) -> Any:
    """Per condition and over all: trials with a confidence, mean confidence on right and on wrong
    answers, and the type-2 AUC."""
    import pandas as pd

    main = main_trials(df)
    main = main[main["correct"].notna() & main["confidence"].notna()]
    rows = []
    for cond in [*conditions, "all"]:
        sub = main if cond == "all" else main[main["condition"] == cond]
        if sub.empty:
            continue
        right = sub[sub["correct"] == 1]["confidence"]
        wrong = sub[sub["correct"] == 0]["confidence"]
        rows.append(
            {
                "condition": cond,
                "n": len(sub),
                "mean_conf_right": float(right.mean()) if len(right) else math.nan,
                "mean_conf_wrong": float(wrong.mean()) if len(wrong) else math.nan,
                "auc": confidence_auc(sub["confidence"], sub["correct"]),
            }
        )
    return pd.DataFrame(rows)
