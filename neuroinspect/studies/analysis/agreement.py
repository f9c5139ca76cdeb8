"""Agreement: do people err on the same trials, do they answer a repeated trial the same way, and
do they agree with each other?

* **Error consistency** (Geirhos et al. NeurIPS'20, used by Zimmermann et al. NeurIPS'21): Cohen's
  kappa on right/wrong between two observers who answered the same items, with the chance agreement
  of two independent observers with their accuracies ``p1 p2 + (1 - p1)(1 - p2)``. Computed for
  every pair of different participants, one answering in condition A and one in condition B (A = B
  gives the within-condition level to compare against); items are matched by ``unit``. The mean over
  pairs is descriptive: pairs share participants, so they are not independent samples.
* **Test-retest** on repeated trials: the share of identical answers and Cohen's kappa between the
  first and the repeated answer (statsmodels ``cohens_kappa``), on the answers and on right/wrong.
* **Krippendorff's alpha** (``krippendorff`` package) between participants for ratings (ordinal and
  interval) and labels (nominal).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def kappa_binary(x: Sequence[float], y: Sequence[float]) -> float:
    """Cohen's kappa between two right/wrong (1/0) sequences over the same items (error
    consistency); NaN when chance agreement is 1 (both always right, or both always wrong)."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.size == 0:
        return math.nan
    observed = float(np.mean(a == b))
    p1, p2 = float(a.mean()), float(b.mean())
    expected = p1 * p2 + (1 - p1) * (1 - p2)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def cohen_kappa(x: Sequence[Any], y: Sequence[Any], weights: str | None = None) -> dict[str, float]:
    """Cohen's kappa between two sequences of categories (statsmodels ``cohens_kappa`` on their
    contingency table), with its asymptotic standard error; ``weights="linear"`` for ordered
    categories (ratings). ``kappa`` is NaN when agreement by chance is certain."""
    from statsmodels.stats.inter_rater import cohens_kappa

    xs = [str(v) for v in x]
    ys = [str(v) for v in y]
    out = {"n": float(len(xs)), "agreement": math.nan, "kappa": math.nan, "se": math.nan}
    if not xs:
        return out
    out["agreement"] = float(np.mean([a == b for a, b in zip(xs, ys, strict=True)]))
    if weights is not None:
        cats = sorted(set(xs) | set(ys), key=_numeric_key)
    else:
        cats = sorted(set(xs) | set(ys))
    if len(cats) < 2:
        return out
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for a, b in zip(xs, ys, strict=True):
        table[index[a], index[b]] += 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0/0 in the variance when a margin is empty
        res = cohens_kappa(table, wt=weights) if weights else cohens_kappa(table)
    out["kappa"] = float(res.kappa)
    out["se"] = float(res.std_kappa)
    return out


def _numeric_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _correct_matrix(df: Any, condition: str, participants: Sequence[str], units: Sequence[str]) -> np.ndarray:
    """participants x units of 1/0 (NaN where not answered); a unit answered twice counts its first
    answer (by ``position``, then ``trial_id``)."""
    rows = df[(df["condition"] == condition) & df["correct"].notna()]
    rows = rows.sort_values(["position", "trial_id"], na_position="last")
    rows = rows.drop_duplicates(["participant", "unit"], keep="first")
    mat = np.full((len(participants), len(units)), np.nan)
    pi = {p: i for i, p in enumerate(participants)}
    ui = {u: i for i, u in enumerate(units)}
    for p, u, c in zip(rows["participant"], rows["unit"], rows["correct"], strict=True):
        mat[pi[p], ui[u]] = c
    return mat


def error_consistency(df: Any, conditions: Sequence[str], min_shared: int = 5) -> Any:
    """Error consistency for every pair of conditions (including each condition with itself).

    ``df``: main trials. For each pair (A, B) and each pair of different participants (p answered
    in A, q in B) sharing at least ``min_shared`` units, kappa on right/wrong over the shared units.
    Returns one row per (A, B): ``kappa_mean``, ``kappa_sd``, ``n_pairs`` (pairs with a defined
    kappa), ``n_undefined`` (pairs both always right, or both always wrong, on the shared units),
    ``shared_mean`` (units per pair).
    """
    import pandas as pd

    participants = sorted(df["participant"].unique())
    units = sorted(df["unit"].dropna().unique())
    mats = {c: _correct_matrix(df, c, participants, units) for c in conditions}
    rows = []
    for a, b in itertools.combinations_with_replacement(conditions, 2):
        ma, mb = mats[a], mats[b]
        va, vb = ~np.isnan(ma), ~np.isnan(mb)
        xa, xb = np.nan_to_num(ma), np.nan_to_num(mb)
        # (P, P) counts over shared units, by einsum over the unit axis
        n = np.einsum("iu,ju->ij", va, vb, dtype=float)
        s1 = np.einsum("iu,ju->ij", xa, vb)  # p's right answers on the shared units
        s2 = np.einsum("iu,ju->ij", va, xb)
        both_right = np.einsum("iu,ju->ij", xa, xb)
        both_wrong = np.einsum("iu,ju->ij", va * (1 - xa), vb * (1 - xb))
        mask = (n >= min_shared) & ~np.eye(len(participants), dtype=bool)
        if a == b:
            mask &= np.triu(np.ones_like(mask), k=1).astype(bool)  # each unordered pair once
        with np.errstate(invalid="ignore", divide="ignore"):
            p1, p2 = s1 / n, s2 / n
            observed = (both_right + both_wrong) / n
            expected = p1 * p2 + (1 - p1) * (1 - p2)
            kappa = (observed - expected) / (1 - expected)
        defined = mask & (expected < 1.0) & np.isfinite(kappa)
        values = kappa[defined]
        rows.append(
            {
                "a": a,
                "b": b,
                "kappa_mean": float(values.mean()) if values.size else math.nan,
                "kappa_sd": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                "n_pairs": int(values.size),
                "n_undefined": int((mask & ~defined).sum()),
                "shared_mean": float(n[mask].mean()) if mask.any() else math.nan,
            }
        )
    return pd.DataFrame(rows)


def repeated_pairs(df: Any) -> Any:
    """Each repeated trial beside the same participant's first answer to the trial it repeats:
    columns ``participant``, ``condition``, ``trial_id``, ``first``/``second`` (answers),
    ``first_correct``/``second_correct``."""
    import pandas as pd

    rep = df[(df["trial_kind"] == "repeated") & df["repeat_of"].notna()]
    cols = ["participant", "condition", "trial_id", "first", "second", "first_correct", "second_correct"]
    if rep.empty:
        return pd.DataFrame(columns=cols)
    orig = df[df["trial_kind"] != "repeated"][["participant", "trial_id", "response", "correct"]]
    orig = orig.drop_duplicates(["participant", "trial_id"], keep="first")
    merged = rep.merge(
        orig,
        left_on=["participant", "repeat_of"],
        right_on=["participant", "trial_id"],
        suffixes=("", "_orig"),
        how="inner",
    )
    out = pd.DataFrame(
        {
            "participant": merged["participant"],
            "condition": merged["condition"],
            "trial_id": merged["repeat_of"],
            "first": merged["response_orig"],
            "second": merged["response"],
            "first_correct": merged["correct_orig"],
            "second_correct": merged["correct"],
        }
    )
    return out[cols]


def test_retest(df: Any, conditions: Sequence[str], ordered: bool = False) -> Any:
    """Consistency of repeated trials per condition and over all (``condition == "all"``): pairs,
    share of identical answers, Cohen's kappa on the answers (linear-weighted when ``ordered``, for
    ratings) and on right/wrong, and the accuracy at the first and the repeated showing."""
    import pandas as pd

    pairs = repeated_pairs(df)
    rows = []
    for cond in [*conditions, "all"]:
        sub = pairs if cond == "all" else pairs[pairs["condition"] == cond]
        if sub.empty:
            continue
        answers = cohen_kappa(sub["first"], sub["second"], weights="linear" if ordered else None)
        right = sub.dropna(subset=["first_correct", "second_correct"])
        rows.append(
            {
                "condition": cond,
                "n_pairs": len(sub),
                "agreement": answers["agreement"],
                "kappa": answers["kappa"],
                "kappa_se": answers["se"],
                "kappa_correct": kappa_binary(right["first_correct"], right["second_correct"])
                if len(right)
                else math.nan,
                "first_accuracy": float(right["first_correct"].mean()) if len(right) else math.nan,
                "second_accuracy": float(right["second_correct"].mean()) if len(right) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def krippendorff_table(
    df: Any, conditions: Sequence[str], levels: Sequence[str], scale: Sequence[float] | None = None
) -> tuple[Any, str]:
    """Krippendorff's alpha between participants per condition and over all, for each level of
    measurement in ``levels`` ("nominal" for labels, "ordinal"/"interval" for ratings).

    Items are trials shared by participants (``trial_id``); when no trial id is shared (ids unique
    per response) items are (condition, unit) instead. Returns the table and a sentence saying which.
    """
    import krippendorff
    import pandas as pd

    main = df[df["response"].notna()]
    shared = main.groupby("trial_id")["participant"].nunique()
    if (shared >= 2).any():
        key = main["trial_id"].astype(str)
        how = "items are trials (trial_id) answered by two or more participants"
    else:
        key = main["condition"].astype(str) + "|" + main["unit"].astype(str)
        how = "no trial id is shared between participants, so items are (condition, unit)"
    main = main.assign(_item=key)
    numeric = any(level != "nominal" for level in levels)
    if numeric:
        values = pd.to_numeric(main["response"], errors="coerce")
    else:
        # nominal: any coding works; alpha only asks whether two values are equal
        cats = sorted(main["response"].astype(str).unique())
        codes = {c: i for i, c in enumerate(cats)}
        values = main["response"].astype(str).map(codes).astype(float)
    main = main.assign(_value=values).dropna(subset=["_value"])
    rows = []
    for cond in [*conditions, "all"]:
        sub = main if cond == "all" else main[main["condition"] == cond]
        sub = sub.drop_duplicates(["participant", "_item"], keep="first")
        matrix = sub.pivot(index="participant", columns="_item", values="_value")
        pairable = int((matrix.notna().sum(axis=0) >= 2).sum())
        row: dict[str, Any] = {
            "condition": cond,
            "n_participants": int(matrix.shape[0]),
            "n_items": int(matrix.shape[1]),
            "n_pairable_items": pairable,
        }
        for level in levels:
            alpha = math.nan
            values_seen = matrix.to_numpy(dtype=float)
            distinct = np.unique(values_seen[~np.isnan(values_seen)])
            if pairable and distinct.size >= 2:
                domain = None
                if level != "nominal" and scale is not None:
                    domain = np.arange(scale[0], scale[1] + 1)
                alpha = float(
                    krippendorff.alpha(
                        reliability_data=matrix.to_numpy(dtype=float),
                        level_of_measurement=level,  # type: ignore[arg-type]
                        value_domain=domain,
                    )
                )
            row[f"alpha_{level}"] = alpha
        rows.append(row)
    return pd.DataFrame(rows), how
