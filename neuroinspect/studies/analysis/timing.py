"""Response times (seconds from when a trial was shown to the answer).

Response times are right-skewed, so the summaries are the median and quartiles and the geometric
mean (exp of the mean log time), not the arithmetic mean; conditions are compared on each
participant's median time (paired, Holm-corrected, as for accuracy) because a few slow answers
(a participant who looked away) would dominate a mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuroinspect.studies.analysis.accuracy import main_trials


def rt_table(df: Any, conditions: Sequence[str], too_fast_s: float | None = None) -> Any:
    """Per condition: ``n``, ``median``, ``q25``, ``q75``, ``geo_mean`` (s), the medians on right
    and on wrong answers, and the share of answers under ``too_fast_s``."""
    import pandas as pd

    main = main_trials(df)
    main = main[main["rt_s"].notna() & (main["rt_s"] > 0)]
    rows = []
    for cond in conditions:
        sub = main[main["condition"] == cond]
        rt = sub["rt_s"].to_numpy(dtype=float)
        right = sub[sub["correct"] == 1]["rt_s"]
        wrong = sub[sub["correct"] == 0]["rt_s"]
        rows.append(
            {
                "condition": cond,
                "n": int(rt.size),
                "median": float(np.median(rt)) if rt.size else math.nan,
                "q25": float(np.quantile(rt, 0.25)) if rt.size else math.nan,
                "q75": float(np.quantile(rt, 0.75)) if rt.size else math.nan,
                "geo_mean": float(np.exp(np.log(rt).mean())) if rt.size else math.nan,
                "median_right": float(right.median()) if len(right) else math.nan,
                "median_wrong": float(wrong.median()) if len(wrong) else math.nan,
                "too_fast": float(np.mean(rt < too_fast_s)) if rt.size and too_fast_s else math.nan,
            }
        )
    return pd.DataFrame(rows)


def participant_median_rt(df: Any) -> Any:
    """One row per (participant, condition) with the participant's ``median_rt`` (s) on main trials."""
    main = main_trials(df)
    main = main[main["rt_s"].notna() & (main["rt_s"] > 0)]
    out = main.groupby(["participant", "condition"], sort=True)["rt_s"].median().rename("median_rt")
    return out.reset_index()
