"""The study statistics at their edges: empty and one-participant cases, a confidence level other than
95%, the exact/approximate switch of the Wilcoxon test, ordered categories in the weighted kappa, and
the accuracy table and paired comparisons wired to the formulas they document.

Expected values are textbook formulas worked by hand, closed-form answers (a two-point bootstrap) or
the library a function documents called directly (scipy's ``stats.bootstrap`` with the same draws),
not the code under test. The second half pins the contracts that mutation testing (issue 13,
``benchmarks/mutation_score.py statistics``) showed untested.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuroinspect.studies.analysis import accuracy, agreement, compare, confidence, power
from neuroinspect.studies.responses import normalize_responses

SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def _wilson(k: int, n: int, level: float) -> tuple[float, float]:
    """Wilson's score interval, the textbook formula."""
    z = stats.norm.ppf(0.5 + level / 2)
    center = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return center - half, center + half


def test_intervals_and_tests_of_nothing_are_nan_and_of_one_trial_are_defined() -> None:
    assert all(math.isnan(v) for v in accuracy.wilson_interval(0, 0))
    assert accuracy.wilson_interval(1, 1) == pytest.approx(_wilson(1, 1, 0.95))
    assert accuracy.wilson_interval(3, 4, level=0.5) == pytest.approx(_wilson(3, 4, 0.5))
    assert math.isnan(accuracy.binomial_p_value(0, 0, 0.5))
    assert accuracy.binomial_p_value(1, 1, 0.5) == 1.0  # both outcomes equally likely
    assert accuracy.binomial_p_value(1, 1, 0.8) == pytest.approx(1.0)  # 0.2 <= 0.8: both tails
    assert accuracy.binomial_p_value(0, 1, 0.8) == pytest.approx(0.2)  # only the observed tail
    assert all(math.isnan(v) for v in accuracy.mean_2sem([]))
    mean, sem2 = accuracy.mean_2sem([0.4])
    assert mean == 0.4 and math.isnan(sem2)
    assert accuracy.mean_2sem([0.2, 0.6]) == pytest.approx((0.4, 2 * (0.4 / math.sqrt(2)) / math.sqrt(2)))


def test_the_bootstrap_honours_its_level_and_its_two_participant_case() -> None:
    assert all(math.isnan(v) for v in accuracy.bootstrap_mean_interval([0.3]))
    # two participants: a resampled mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # central 40% is {1/2} and the central 95% spans [0, 1]
    assert accuracy.bootstrap_mean_interval([0.0, 1.0], 400, level=0.4) == (0.5, 0.5)
    assert accuracy.bootstrap_mean_interval([0.0, 1.0], 400) == (0.0, 1.0)
    # a large sample: mean ± z SE at each level
    x = np.random.default_rng(3).normal(0.7, 0.1, size=400)
    se = x.std(ddof=1) / math.sqrt(x.size)
    for level in (0.5, 0.8):
        z = stats.norm.ppf(0.5 + level / 2)
        low, high = accuracy.bootstrap_mean_interval(x, n_boot=4000, seed=1, level=level)
        assert low == pytest.approx(x.mean() - z * se, abs=0.2 * z * se), level
        assert high == pytest.approx(x.mean() + z * se, abs=0.2 * z * se), level


def test_paired_test_of_fewer_than_two_pairs_and_at_another_level() -> None:
    one = compare.paired_test([1.0], [2.5])
    assert one["n_pairs"] == 1.0 and one["diff"] == 1.5 and one["df"] == 0.0
    assert all(math.isnan(one[k]) for k in ("diff_low", "diff_high", "t", "p_t", "d_z", "p_wilcoxon"))
    none = compare.paired_test([], [])
    assert none["n_pairs"] == 0.0 and math.isnan(none["diff"]) and math.isnan(none["df"])
    # R: t.test(sleep$extra[11:20], sleep$extra[1:10], paired = TRUE, conf.level = 0.9)
    res = compare.paired_test(SLEEP_1, SLEEP_2, level=0.9)
    assert (res["diff_low"], res["diff_high"]) == pytest.approx((0.8669947, 2.2930053), abs=1e-6)
    assert res["df"] == 9.0 and res["n_pairs"] == 10.0


def test_wilcoxon_is_exact_up_to_fifty_pairs_without_ties_or_zeros() -> None:
    # n distinct positive differences: exactly 2 / 2^n when exact; the normal approximation is far off
    for n, exact in ((50, True), (51, False)):
        p = compare.paired_test(np.zeros(n), np.arange(1, n + 1) / 100)["p_wilcoxon"]
        assert (p == pytest.approx(2 / 2**n, rel=1e-9)) is exact, n
    # a zero difference: the approximation with zeros dropped (R's default), not the exact test
    p = compare.paired_test(np.zeros(6), [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])["p_wilcoxon"]
    v, n = 15, 5
    mu, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    assert p == pytest.approx(2 * stats.norm.sf((v - mu - 0.5) / sd), rel=1e-9)
    assert math.isnan(compare.paired_test([0.1, 0.2], [0.1, 0.2])["p_wilcoxon"])


def test_kappas_of_nothing_and_of_ordered_categories() -> None:
    assert math.isnan(agreement.kappa_binary([], []))
    assert math.isnan(agreement.kappa_binary([0, 0, 0], [0, 0, 0]))  # both always wrong
    empty = agreement.cohen_kappa([], [])
    assert empty["n"] == 0.0 and all(math.isnan(empty[k]) for k in ("agreement", "kappa", "se"))
    same = agreement.cohen_kappa(["a", "a"], ["a", "a"])
    assert same["agreement"] == 1.0 and math.isnan(same["kappa"]) and same["n"] == 2.0
    # ratings 2 < 9 < 10 (not "10" < "2" < "9"): cells (10, 9), (9, 10), (2, 2); linear weights
    # 1 - |i - j| / 2 give observed 2/3 and expected 5/9 (uniform margins), so kappa = 1/4
    res = agreement.cohen_kappa(["10", "9", "2"], ["9", "10", "2"], weights="linear")
    assert res["kappa"] == pytest.approx(0.25) and res["agreement"] == pytest.approx(1 / 3)
    assert res["se"] > 0
    # unweighted: observed 1/3, expected 1/3 -> 0
    assert agreement.cohen_kappa(["10", "9", "2"], ["9", "10", "2"])["kappa"] == pytest.approx(0.0)


def test_confidence_auc_needs_right_and_wrong_answers() -> None:
    assert math.isnan(confidence.confidence_auc([1, 2], [1, 1]))
    assert math.isnan(confidence.confidence_auc([1, 2], [0, 0]))
    # right answers at 3 and 2, wrong at 1 and 2: pairs (3>1), (3>2), (2>1), (2=2) -> 3.5 / 4
    assert confidence.confidence_auc([3, 1, 2, 2], [1, 0, 1, 0]) == 0.875


def test_power_helpers_at_their_edges() -> None:
    assert power.normal_approx_n(0.2, 0.0) == -1 and power.normal_approx_n(math.nan, 0.1) == -1
    # ((z_0.995 + z_0.9) * 0.2 / 0.1)^2 = 59.5 -> 60
    z = stats.norm.ppf(0.995) + stats.norm.ppf(0.9)
    assert power.normal_approx_n(0.2, 0.1, alpha=0.01, power=0.9) == math.ceil((z * 2) ** 2) == 60
    # three simulations of three participants, 10 trials: b better with spread, b worse, no change
    counts = np.array([[[5, 7], [4, 7], [5, 9]], [[7, 5], [7, 4], [9, 5]], [[5, 5], [6, 6], [4, 4]]])
    assert power.paired_t_detections(counts, 10, 0.05).tolist() == [True, False, False]
    # diffs 0.2, 0.3, 0.4: t = 0.3 / (0.1 / sqrt 3) = 5.196, two-sided p = 0.035
    assert power.paired_t_detections(counts[:1], 10, 0.04).tolist() == [True]
    assert power.paired_t_detections(counts[:1], 10, 0.03).tolist() == [False]


def _responses(rows: list[dict]) -> pd.DataFrame:
    base = {"trial_kind": "main", "block": 0, "response": "A", "confidence": 3, "rt_s": 2.0}
    return normalize_responses(pd.DataFrame([{**base, "trial_id": f"t{i}", **r} for i, r in enumerate(rows)]))


def test_the_accuracy_table_per_condition_is_the_documented_formulas_of_its_rows() -> None:
    answers = {  # participant -> condition -> right/wrong per unit
        "p1": {"none": [1, 0, 1, 1], "vis": [1, 1, 1, 1]},
        "p2": {"none": [0, 0, 1, 0], "vis": [1, 1, 0, 1]},
        "p3": {"none": [1, 1, 1, 0], "vis": [1, 0, 1, 1]},
    }
    rows = [
        {"participant": p, "condition": c, "unit": f"u{u}", "correct": k}
        for p, conds in answers.items()
        for c, ks in conds.items()
        for u, k in enumerate(ks)
    ]
    rows.append({"participant": "p1", "condition": "vis", "unit": "u9", "correct": None})  # no answer key
    rows.append(
        {"participant": "p2", "condition": "vis", "unit": "u8", "correct": 0, "trial_kind": "practice"}
    )
    df = _responses(rows)
    per = accuracy.participant_accuracy(df)
    assert per[["participant", "condition", "n", "k"]].values.tolist() == [
        ["p1", "none", 4, 3],
        ["p1", "vis", 4, 4],
        ["p2", "none", 4, 1],
        ["p2", "vis", 4, 3],
        ["p3", "none", 4, 3],
        ["p3", "vis", 4, 3],
    ]
    assert per["accuracy"].tolist() == [0.75, 1.0, 0.25, 0.75, 0.75, 0.75]
    table = accuracy.accuracy_table(df, ["vis", "none", "absent"], chance=0.25, n_boot=300, seed=5)
    assert table["condition"].tolist() == ["vis", "none", "absent"]
    vis, none, absent = (table.iloc[i] for i in range(3))
    assert (vis["n_trials"], vis["n_correct"], vis["n_participants"], vis["n_units"]) == (12, 10, 3, 4)
    assert vis["accuracy"] == pytest.approx(10 / 12) and none["accuracy"] == pytest.approx(7 / 12)
    assert (vis["ci_low"], vis["ci_high"]) == pytest.approx(_wilson(10, 12, 0.95))
    assert vis["p_value"] == pytest.approx(stats.binom.sf(9, 12, 0.25), rel=1e-9)  # upper tail only
    assert vis["participant_mean"] == pytest.approx(np.mean([1.0, 0.75, 0.75]))
    assert none["participant_2sem"] == pytest.approx(2 * np.std([0.75, 0.25, 0.75], ddof=1) / math.sqrt(3))
    assert (none["boot_low"], none["boot_high"]) == accuracy.bootstrap_mean_interval(
        [0.75, 0.25, 0.75], n_boot=300, seed=5 + 7919
    )
    assert absent["n_trials"] == 0 and absent["n_participants"] == 0 and math.isnan(absent["accuracy"])
    assert math.isnan(absent["ci_low"]) and math.isnan(absent["p_value"]) and math.isnan(absent["boot_low"])
    empty = accuracy.participant_accuracy(df[df["trial_kind"] == "catch"])
    assert list(empty.columns) == ["participant", "condition", "n", "k", "accuracy"] and empty.empty


def test_paired_comparisons_of_a_missing_condition_and_of_nothing() -> None:
    per = pd.DataFrame(
        [
            {"participant": p, "condition": c, "accuracy": v}
            for p, (a, b) in {"p1": (0.5, 0.7), "p2": (0.6, 0.7), "p3": (0.4, 0.8)}.items()
            for c, v in (("a", a), ("b", b))
        ]
    )
    out = compare.paired_comparisons(per, ["a", "b", "c"], level=0.95)
    assert [(r.a, r.b) for r in out.itertuples()] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab, ac = out.iloc[0], out.iloc[1]
    assert ab["n_pairs"] == 3 and out["n_pairs"].dtype.kind == "i"
    assert ab["mean_a"] == pytest.approx(0.5) and ab["mean_b"] == pytest.approx(0.7333333)
    assert ab["diff"] == pytest.approx(0.2333333)
    assert (
        ac["n_pairs"] == 0 and math.isnan(ac["mean_a"]) and math.isnan(ac["mean_b"]) and math.isnan(ac["p_t"])
    )
    # Holm over the one defined p-value of each test is that p-value
    assert ab["p_t_holm"] == pytest.approx(ab["p_t"]) and math.isnan(ac["p_t_holm"])
    assert ab["p_wilcoxon_holm"] == pytest.approx(ab["p_wilcoxon"])
    assert compare.paired_comparisons(per, ["a"]).empty


# --- the statistics' contracts at their edges (issue 13: mutants the tests above let through) -----


def test_paired_comparisons_use_the_level_they_are_given() -> None:
    per = pd.DataFrame(
        [
            {"participant": f"p{i}", "condition": c, "accuracy": v}
            for i, (a, b) in enumerate(zip(SLEEP_1, SLEEP_2, strict=True))
            for c, v in (("a", a), ("b", b))
        ]
    )
    # R: t.test(sleep$extra[11:20], sleep$extra[1:10], paired = TRUE[, conf.level = 0.9])
    ab = compare.paired_comparisons(per, ["a", "b"]).iloc[0]
    assert (ab["diff_low"], ab["diff_high"]) == pytest.approx((0.7001142, 2.4598858), abs=1e-6)
    ab = compare.paired_comparisons(per, ["a", "b"], level=0.9).iloc[0]
    assert (ab["diff_low"], ab["diff_high"]) == pytest.approx((0.8669947, 2.2930053), abs=1e-6)


def test_paired_test_of_a_constant_difference_and_the_exact_wilcoxon_of_differences() -> None:
    res = compare.paired_test([0.0, 1.0, 0.5], [0.5, 1.5, 1.0])  # every participant 0.5 ahead
    assert res["diff"] == res["diff_low"] == res["diff_high"] == 0.5
    assert all(math.isnan(res[k]) for k in ("t", "p_t", "d_z", "p_wilcoxon"))
    res = compare.paired_test([0.3, 0.5], [0.3, 0.5])  # nobody moved
    assert res["diff"] == res["diff_low"] == res["diff_high"] == 0.0 and math.isnan(res["p_t"])
    # every participant one trial of ten better: the differences are 0.1 only up to rounding (1e-17
    # apart), which is no spread to test either (t would be 5e15, p 4e-32)
    res = compare.paired_test([0.5, 0.4, 0.3], [0.6, 0.5, 0.4])
    assert res["diff_low"] == res["diff_high"] == res["diff"] == pytest.approx(0.1)
    assert all(math.isnan(res[k]) for k in ("t", "p_t", "d_z", "p_wilcoxon"))
    # R's threshold: the standard error of the mean difference at most 10 machine epsilons of it.
    # Differences 1, 1, 1 + k eps have a standard error of k eps / 3: k = 28 is constant, 32 is not
    eps = np.finfo(float).eps
    assert math.isnan(compare.paired_test(np.zeros(3), [1.0, 1.0, 1.0 + 28 * eps])["p_t"])
    assert compare.paired_test(np.zeros(3), [1.0, 1.0, 1.0 + 32 * eps])["p_t"] < 1e-20
    # differences 1, 2, -3, 4, 5 (distinct, no zero: exact): W- = 3; subsets of {1..5} summing to
    # at most 3 are {}, {1}, {2}, {3}, {1,2}, so p = 2 * 5 / 32 (the b values alone, all positive,
    # would give 2 / 32)
    res = compare.paired_test([10, 10, 10, 10, 10], [11, 12, 7, 14, 15])
    assert res["p_wilcoxon"] == pytest.approx(10 / 32, rel=1e-12)


def test_a_simulation_where_everyone_moved_alike_is_no_detection() -> None:
    # three participants each 1 of 10 ahead: the differences are all 0.1, but their mean is rounded
    # (0.30000000000000004 / 3), which must not count as a spread (t = 6e15, p = 0)
    alike = np.array([[[5, 6], [4, 5], [6, 7]]])
    assert power.paired_t_detections(alike, 10, 0.05).tolist() == [False]
    assert math.isnan(compare.paired_test([0.5, 0.4, 0.6], [0.6, 0.5, 0.7])["p_t"])  # as here
    # beside simulations with a spread, in one call: each simulation decided on its own counts
    spread = np.array([[[5, 7], [4, 7], [5, 9]]])
    both = np.concatenate([alike, spread, alike, np.array([[[5, 5], [5, 5], [5, 5]]])])
    assert power.paired_t_detections(both, 10, 0.05).tolist() == [False, True, False, False]


def test_a_detection_needs_p_strictly_below_alpha_and_alpha_a_fraction() -> None:
    # two participants, differences 0 and 1/6: the mean 1/12 equals its standard error, t = 1 on
    # 1 df; at alpha equal to that p-value there is no detection, just above it there is
    counts = np.array([[[3, 3], [2, 3]]])
    p = 2 * stats.t.sf(1.0, 1)
    assert power.paired_t_detections(counts, 6, p).tolist() == [False]
    assert power.paired_t_detections(counts, 6, float(np.nextafter(p, 1.0))).tolist() == [True]
    for alpha in (0.0, 1.0, 5.0, -0.05, math.nan):
        with pytest.raises(
            ValueError, match=r"alpha is a significance level in \(0, 1\), got .* \(0.05 for 5%\)"
        ):
            power.paired_t_detections(counts, 6, alpha)


@pytest.fixture
def no_warnings():
    """Warnings become errors: a user's terminal should not fill with numpy's 0/0 notes on an empty
    condition or a zero spread, which the functions handle themselves."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_empty_and_degenerate_inputs_are_handled_without_warnings(no_warnings: None) -> None:
    assert all(math.isnan(v) for v in accuracy.wilson_interval(0, 0))
    assert math.isnan(agreement.kappa_binary([], []))
    none = compare.paired_test([], [])
    assert math.isnan(none["diff"]) and none["n_pairs"] == 0.0
    still = compare.paired_test([0.3, 0.5, 0.7], [0.3, 0.5, 0.7])  # nobody moved: no t-test of zeros
    assert still["diff_low"] == still["diff_high"] == 0.0 and math.isnan(still["p_t"])
    assert math.isnan(confidence.confidence_auc([2, 3], [1, 1]))  # right answers only
    assert math.isnan(confidence.confidence_auc([2, 3], [0, 0]))  # wrong answers only
    # zero spread: every participant 1 of 8 ahead (mean / 0), or nobody moved (0 / 0)
    counts = np.array([[[5, 6], [4, 5], [5, 6]], [[5, 5], [6, 6], [4, 4]]])
    assert power.paired_t_detections(counts, 8, 0.05).tolist() == [False, False]


def test_float32_values_are_analysed_in_double_precision() -> None:
    # a float32 column (compact arrays, parquet) gives what the same numbers as Python floats give;
    # averaging in float32 would round the mean, the SEM, the agreement rates and the resamples
    v32 = np.array([0.1, 0.2, 0.7, 0.45, 0.9, 0.35], dtype=np.float32)
    v64 = [float(v) for v in v32]
    assert accuracy.mean_2sem(v32) == accuracy.mean_2sem(v64)
    assert accuracy.mean_2sem(v64)[0] == pytest.approx(sum(v64) / 6, rel=1e-15)
    assert accuracy.bootstrap_mean_interval(v32, 300, seed=4) == accuracy.bootstrap_mean_interval(
        v64, 300, seed=4
    )
    right = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    other = [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    # observed 5/7, p1 = p2 = 4/7: expected (16 + 9) / 49, kappa = (35/49 - 25/49) / (24/49) = 5/12
    assert agreement.kappa_binary(right, other) == pytest.approx(5 / 12, rel=1e-14)
    assert agreement.kappa_binary(np.float32(right), other) == agreement.kappa_binary(right, other)
    assert agreement.kappa_binary(right, np.float32(other)) == agreement.kappa_binary(right, other)


def test_a_constant_sample_has_a_point_interval_with_one_value_at_both_ends() -> None:
    for values in ([0.25, 0.25], [-0.0, 0.0, 0.0], [0.0, -0.0]):
        low, high = accuracy.bootstrap_mean_interval(values, 100)
        assert low == high == values[0]
        # one number at both ends, bit for bit (0.0 and -0.0 compare equal but print differently)
        assert math.copysign(1.0, low) == math.copysign(1.0, high)


def test_the_bootstrap_is_scipys_bca_with_the_given_resamples_seed_and_level() -> None:
    import warnings

    from scipy.stats import bootstrap

    def scipy_interval(x: list[float], n: int, seed: int, level: float, method: str) -> tuple[float, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(
                (np.asarray(x),),
                np.mean,
                n_resamples=n,
                confidence_level=level,
                method=method,
                random_state=np.random.default_rng(seed),
            )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    # skewed participant accuracies: BCa and the percentile interval differ here, and so do the
    # intervals from one resample more or from another seed
    x = [0.21, 0.38, 0.52, 0.57, 0.66, 0.74, 0.79, 0.83, 0.88, 0.91, 0.96, 0.99]
    bca = scipy_interval(x, 2000, 0, 0.95, "BCa")
    assert bca != scipy_interval(x, 2000, 0, 0.95, "percentile")
    assert bca != scipy_interval(x, 2001, 0, 0.95, "BCa") and bca != scipy_interval(x, 2000, 1, 0.95, "BCa")
    assert accuracy.bootstrap_mean_interval(x) == bca  # the defaults: 2000 resamples, seed 0, 95%
    assert accuracy.bootstrap_mean_interval(x, 500, seed=3, level=0.8) == scipy_interval(
        x, 500, 3, 0.8, "BCa"
    )
    # five resamples all above the sample mean (seed 17): BCa's bias correction is infinite, so the
    # percentile interval of the same five resamples at the same level is given instead
    y = [0.3, 0.55, 0.6, 0.65, 0.7, 0.8, 0.95, 1.0]
    assert all(math.isnan(v) for v in scipy_interval(y, 5, 17, 0.8, "BCa"))
    fallback = scipy_interval(y, 5, 17, 0.8, "percentile")
    assert fallback == pytest.approx((0.5875, 0.68))
    assert fallback != scipy_interval(y, 5, 17, 0.95, "percentile")
    assert accuracy.bootstrap_mean_interval(y, 5, seed=17, level=0.8) == fallback


def test_participant_accuracy_is_sorted_with_integer_counts() -> None:
    rows = [
        {"participant": "p2", "condition": "vis", "unit": "u1", "correct": 1},
        {"participant": "p2", "condition": "none", "unit": "u1", "correct": 0},
        {"participant": "p1", "condition": "vis", "unit": "u1", "correct": 0},
        {"participant": "p1", "condition": "vis", "unit": "u2", "correct": 1},
        {"participant": "p1", "condition": "none", "unit": "u1", "correct": 1},
    ]
    per = accuracy.participant_accuracy(_responses(rows))
    assert list(per.columns) == ["participant", "condition", "n", "k", "accuracy"]
    assert per[["participant", "condition", "n", "k"]].values.tolist() == [
        ["p1", "none", 1, 1],
        ["p1", "vis", 2, 1],
        ["p2", "none", 1, 0],
        ["p2", "vis", 1, 1],
    ]
    assert per["k"].dtype.kind == "i" and per["n"].dtype.kind == "i"
    assert per["accuracy"].tolist() == [1.0, 0.5, 0.0, 1.0]


def test_the_accuracy_tables_bootstrap_is_seeded_per_condition() -> None:
    # eight participants with spread-out accuracies: the interval depends on the resamples drawn
    scores = {"a": [2, 5, 7, 8, 9, 10, 10, 6], "b": [4, 6, 3, 9, 10, 8, 7, 5]}  # right of 10 per participant
    rows = [
        {"participant": f"p{p}", "condition": c, "unit": f"u{u}", "correct": int(u < ks[p])}
        for c, ks in scores.items()
        for p in range(8)
        for u in range(10)
    ]
    df = _responses(rows)
    accs = {c: np.array(ks) / 10 for c, ks in scores.items()}
    table = accuracy.accuracy_table(df, ["a", "b"], chance=0.5, n_boot=300, seed=11)
    for i, c in enumerate(["a", "b"]):
        row = table.iloc[i]
        expected = accuracy.bootstrap_mean_interval(accs[c], n_boot=300, seed=11 + 7919 * i)
        assert (row["boot_low"], row["boot_high"]) == expected, c
        # the seed and the resample count matter for these data, so the table's must be the ones given
        assert expected != accuracy.bootstrap_mean_interval(accs[c], n_boot=300, seed=0)
        assert expected != accuracy.bootstrap_mean_interval(accs[c], n_boot=2000, seed=11 + 7919 * i)
    assert table.iloc[1]["boot_low"] != accuracy.bootstrap_mean_interval(accs["b"], 300, seed=11 + 7920)[0]
    # the defaults are 2000 resamples from seed 0
    default = accuracy.accuracy_table(df, ["a", "b"], chance=0.5)
    pd.testing.assert_frame_equal(
        default, accuracy.accuracy_table(df, ["a", "b"], chance=0.5, n_boot=2000, seed=0)
    )
    assert (default.iloc[1]["boot_low"], default.iloc[1]["boot_high"]) == accuracy.bootstrap_mean_interval(
        accs["b"], 2000, seed=7919
    )
    assert not default[["boot_low", "boot_high"]].equals(table[["boot_low", "boot_high"]])


def test_kappa_of_one_item_and_of_unequal_lengths() -> None:
    # one item, one rater right and the other wrong: observed 0, expected 1 * 0 + 0 * 1 = 0 -> 0
    assert agreement.kappa_binary([1], [0]) == 0.0
    assert agreement.kappa_binary([0], [1]) == 0.0
    with pytest.raises(ValueError):
        agreement.cohen_kappa(["a", "a"], ["a"])  # one category: returns early, after the length check
    with pytest.raises(ValueError):
        agreement.cohen_kappa(["a", "b"], ["a", "b", "b"])


def test_cohen_kappa_with_a_category_only_one_rater_used_and_its_standard_error() -> None:
    # x uses a, b, c; y uses a, b only. Cells (a,a) (a,b) (b,b) (c,b): p_o = 1/2; rows 1/2 1/4 1/4,
    # columns 1/4 3/4 0: p_e = 1/8 + 3/16 = 5/16; kappa = (1/2 - 5/16) / (11/16) = 3/11
    res = agreement.cohen_kappa(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert res["kappa"] == pytest.approx(3 / 11) and res["agreement"] == 0.5
    # ratings 1 < 2 < 3, rater y never says 3; linear disagreement weights |i - j| / 2. Cells (1,1)
    # (2,2) (3,2)x2: observed disagreement 2/4 * 1/2 = 1/4; rows 1/4 1/4 1/2, columns 1/4 3/4 0:
    # expected .25*.5*.75 + .25*.5*.25 + .5*1*.25 + .5*.5*.75 = 7/16; kappa_w = 1 - (1/4) / (7/16) = 3/7
    res = agreement.cohen_kappa(["1", "2", "3", "3"], ["1", "2", "2", "2"], weights="linear")
    assert res["kappa"] == pytest.approx(3 / 7)
    # the asymptotic SE of Fleiss, Cohen & Everitt (1969) on the 50-item table yes/yes 20, yes/no 5,
    # no/yes 10, no/no 15 (rows .5 .5, columns .6 .4, p_e .5, kappa .4):
    # A = .4 (1 - 1.1 * .6)^2 + .3 (1 - .9 * .6)^2 = .10972
    # B = (1 - .4)^2 (.1 * (.6 + .5)^2 + .2 * (.4 + .5)^2) = .10188;  C = (.4 - .5 * .6)^2 = .01
    # var = (A + B - C) / (1 - .5)^2 / 50 = .016128
    x = ["y"] * 25 + ["n"] * 25
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    res = agreement.cohen_kappa(x, y)
    assert res["kappa"] == pytest.approx(0.4) and res["se"] == pytest.approx(math.sqrt(0.016128), rel=1e-12)


def test_holm_caps_at_one_and_reads_none_as_missing() -> None:
    # sorted .6 * 3 = 1.8, .7 * 2 = 1.4, .8: the running maximum 1.8 everywhere, capped at 1
    assert compare.holm([0.8, 0.6, 0.7]) == [1.0, 1.0, 1.0]
    assert compare.holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])
    out = compare.holm([0.01, None, 0.04])  # type: ignore[list-item]
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
