"""Between conditions: paired tests on participant-level scores, every pair, Holm-corrected.

Conditions are within-subject (each participant sees every condition, in counterbalanced blocks,
as in Borowski et al.), so the comparison is made inside each participant: the paired t-test on the
per-participant difference (it gives the mean difference with a confidence interval, the number a
reader wants), with the Wilcoxon signed-rank test beside it as a check that does not assume the
differences are normal. Several conditions make several pairs; Holm's step-down correction keeps
the family-wise error rate at 5% and is uniformly more powerful than Bonferroni.

The mixed-effects logistic regression (:mod:`.glmm`) is the trial-level counterpart.
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: sorted ascending, the i-th (0-based) of m is multiplied by m - i,
    then made non-decreasing and capped at 1. NaN (or None, a JSON null) stays NaN and does not count
    towards m.

    The same formula as statsmodels ``multipletests(method="holm")`` (the tests compare them),
    written out because that function runs a full ``gc.collect()`` on every call, which costs
    about half a second in a process holding torch and the benchmark calls it thousands of times.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = order.size
        adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        out[order] = np.minimum(adjusted, 1.0)
    return [float(v) for v in out]


def paired_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Paired comparison of ``b - a`` (one value per participant in each, same order).

    Returns the mean difference with its t-interval, ``t``, ``df``, ``p_t`` (paired t-test, scipy
    ``ttest_rel``), ``d_z`` (mean difference over the SD of the differences) and ``p_wilcoxon``
    (Wilcoxon signed-rank, scipy: exact without ties, else the normal approximation with tie and
    continuity corrections as in R's ``wilcox.test``; NaN when every difference is zero). When every
    difference is the same (to within 10 machine epsilons of the mean, R's rule), the interval is that
    difference and the tests are NaN: there is no spread to test against.
    """
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    d = y - x
    out = {
        "n_pairs": float(d.size),
        "diff": float(d.mean()) if d.size else math.nan,
        "diff_low": math.nan,
        "diff_high": math.nan,
        "t": math.nan,
        "df": float(d.size - 1) if d.size else math.nan,
        "p_t": math.nan,
        "d_z": math.nan,
        "p_wilcoxon": math.nan,
    }
    if d.size < 2:
        return out
    sd = float(d.std(ddof=1))
    if sd / math.sqrt(d.size) <= 10 * sys.float_info.epsilon * abs(out["diff"]):
        # Every participant moved by the same amount: no spread to test against. Up to rounding, as
        # R's t.test ("data are essentially constant"): accuracies 0.5 -> 0.6, 0.4 -> 0.5, 0.3 -> 0.4
        # differ by 0.1 each only up to 1e-17, which would otherwise make t 5e15 and p 4e-32.
        out.update(diff_low=out["diff"], diff_high=out["diff"])
        return out
    res = stats.ttest_rel(y, x)
    ci = res.confidence_interval(confidence_level=level)
    out.update(
        t=float(res.statistic),
        p_t=float(res.pvalue),
        diff_low=float(ci.low),
        diff_high=float(ci.high),
        d_z=float(d.mean() / sd),
    )
    if np.any(d != 0):
        nonzero = d[d != 0]
        exact = nonzero.size == d.size and np.unique(np.abs(nonzero)).size == nonzero.size and d.size <= 50
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-sample notes
            # Exact without ties or zeros; otherwise the normal approximation with tie correction and
            # continuity correction, as R's wilcox.test (scipy would run a slow permutation test).
            res_w = (
                stats.wilcoxon(y, x, method="exact")
                if exact
                else stats.wilcoxon(y, x, method="approx", correction=True)
            )
            out["p_wilcoxon"] = float(res_w.pvalue)
    return out


def paired_comparisons(
    per_participant: Any, conditions: Sequence[str], value: str = "accuracy", level: float = 0.95
) -> Any:
    """Every pair (a, b) of ``conditions`` (a before b in their order, so with the baseline first
    the difference reads "condition minus baseline"), on the participants who have both.

    ``per_participant``: one row per (participant, condition) with a ``value`` column. Returns one
    row per pair with the paired test's fields (the interval of the difference at ``level``) plus
    the means, and Holm-adjusted ``p_t_holm`` and ``p_wilcoxon_holm`` over the pairs.
    """
    import pandas as pd

    wide = per_participant.pivot(index="participant", columns="condition", values=value)
    rows = []
    for a, b in itertools.combinations(conditions, 2):
        if a not in wide.columns or b not in wide.columns:
            both = wide.iloc[0:0]
        else:
            both = wide[[a, b]].dropna()
        res = paired_test(
            both[a].to_numpy() if len(both) else [], both[b].to_numpy() if len(both) else [], level=level
        )
        rows.append(
            {
                "a": a,
                "b": b,
                "mean_a": float(both[a].mean()) if len(both) else math.nan,
                "mean_b": float(both[b].mean()) if len(both) else math.nan,
                **res,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["n_pairs"] = out["n_pairs"].astype(int)
    out["p_t_holm"] = holm(out["p_t"].tolist())
    out["p_wilcoxon_holm"] = holm(out["p_wilcoxon"].tolist())
    return out
