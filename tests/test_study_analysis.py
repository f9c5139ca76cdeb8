"""The statistics of the study analysis, each against an independent value: a textbook case, a
computation by another library, or R's lme4 (tests/data/glmm_lme4.R and its stored output)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuroinspect.errors import UserError
from neuroinspect.studies.analysis import accuracy, agreement, compare, confidence, glmm, power, timing
from neuroinspect.studies.analysis.design import design_from_spec, design_from_table, resolve_task_and_chance
from neuroinspect.studies.analysis.pipeline import AnalysisSettings, analyze
from neuroinspect.studies.analysis.simulate import (
    StudyModel,
    marginal_accuracy,
    model_from_accuracies,
    simulate_counts,
    simulate_study,
)
from neuroinspect.studies.exclusions import ExclusionRules
from neuroinspect.studies.responses import normalize_responses

DATA = Path(__file__).parent / "data"

# R's `sleep` data (Cushny & Peebles 1905), the textbook paired t-test: extra sleep under two drugs.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def _table(rows: list[dict]) -> pd.DataFrame:
    """A normalized response table from partial rows (the required columns filled in)."""
    base = {
        "unit": "neuron:0",
        "trial_kind": "main",
        "block": 0,
        "response": "A",
        "correct": 1,
        "confidence": 3,
        "rt_s": 2.0,
    }
    full = []
    for i, r in enumerate(rows):
        row = {**base, "trial_id": f"t{i}", **r}
        full.append(row)
    return normalize_responses(pd.DataFrame(full))


# --- accuracy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombe(k: int, n: int, low: float, high: float) -> None:
    got = accuracy.wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=6e-5)


def test_binomial_test_against_hand_computed_tails() -> None:
    # 9 of 10 at chance 1/2: two tails of 11/1024 each
    assert accuracy.binomial_p_value(9, 10, 0.5) == pytest.approx(22 / 1024, rel=1e-12)
    # 9 of 20 at chance 1/4 (a 4-option task): every outcome at most as likely as the observed one
    pmf = [math.comb(20, i) * 0.25**i * 0.75 ** (20 - i) for i in range(21)]
    expected = sum(p for p in pmf if p <= pmf[9] * (1 + 1e-7))
    assert accuracy.binomial_p_value(9, 20, 0.25) == pytest.approx(expected, rel=1e-9)


def test_mean_2sem_and_bootstrap() -> None:
    mean, two_sem = accuracy.mean_2sem([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and two_sem == pytest.approx(2 * 0.2 / math.sqrt(3))
    assert math.isnan(accuracy.mean_2sem([0.4])[1])
    # a large sample: the bootstrap interval approaches mean ± 1.96 SE
    x = np.random.default_rng(3).normal(0.7, 0.1, size=400)
    low, high = accuracy.bootstrap_mean_interval(x, n_boot=4000, seed=1)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.15 * 1.96 * se)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.15 * 1.96 * se)
    assert accuracy.bootstrap_mean_interval(x, 500, seed=2) == accuracy.bootstrap_mean_interval(
        x, 500, seed=2
    )
    assert accuracy.bootstrap_mean_interval([0.8, 0.8, 0.8], 500) == (0.8, 0.8)


def test_accuracy_table_counts_main_trials_only() -> None:
    rows = []
    for pid, answers in {"p1": [1, 1, 0, 1], "p2": [1, 0, 0, 0]}.items():
        for i, c in enumerate(answers):
            rows.append({"participant": pid, "condition": "exemplars", "correct": c, "unit": f"u{i}"})
        rows.append({"participant": pid, "condition": "exemplars", "correct": 0, "trial_kind": "catch"})
        rows.append({"participant": pid, "condition": "exemplars", "correct": 0, "trial_kind": "repeated"})
    table = accuracy.accuracy_table(_table(rows), ["exemplars"], chance=0.5, n_boot=200)
    row = table.iloc[0]
    assert (row["n_trials"], row["n_correct"], row["n_participants"], row["n_units"]) == (8, 4, 2, 4)
    assert row["accuracy"] == 0.5 and row["p_value"] == pytest.approx(1.0)
    assert row["participant_mean"] == pytest.approx(0.5)
    assert row["participant_2sem"] == pytest.approx(2 * np.std([0.75, 0.25], ddof=1) / math.sqrt(2))


# --- paired tests and Holm ------------------------------------------------------------------------


def test_holm_textbook() -> None:
    # sorted 0.005*4, 0.01*3, 0.03*2 -> 0.06, then 0.04*1 lifted to the running maximum 0.06
    assert compare.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = compare.holm([0.01, math.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).uniform(0, 0.2, 9) ** 2
    assert compare.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_paired_t_matches_r_sleep() -> None:
    # R: t.test(sleep$extra[11:20], sleep$extra[1:10], paired = TRUE)
    #    t = 4.0621, df = 9, p-value = 0.002833, 95% CI 0.7001142 2.4598858, mean difference 1.58
    res = compare.paired_test(SLEEP_1, SLEEP_2)
    assert res["diff"] == pytest.approx(1.58)
    assert res["t"] == pytest.approx(4.0621, abs=1e-4)
    assert res["p_t"] == pytest.approx(0.002833, abs=1e-6)
    assert (res["diff_low"], res["diff_high"]) == pytest.approx((0.7001142, 2.4598858), abs=1e-6)
    assert res["d_z"] == pytest.approx(1.58 / np.std(np.subtract(SLEEP_2, SLEEP_1), ddof=1))


def test_wilcoxon_exact_when_every_difference_is_positive() -> None:
    # ten distinct positive differences: only the all-positive sign pattern is as extreme (each tail 1/2^10)
    res = compare.paired_test(np.zeros(10), np.arange(1, 11) / 100)
    assert res["p_wilcoxon"] == pytest.approx(2 / 1024)
    # with ties and a zero, as R: wilcox.test(sleep$extra[11:20], sleep$extra[1:10], paired = TRUE)
    # -> V = 45, p-value = 0.009091 (normal approximation with continuity correction)
    assert compare.paired_test(SLEEP_1, SLEEP_2)["p_wilcoxon"] == pytest.approx(0.009091, abs=2e-6)
    flat = compare.paired_test([0.5, 0.6], [0.6, 0.7])  # the same difference for everyone
    assert math.isnan(flat["p_t"]) and flat["diff_low"] == pytest.approx(0.1)


def test_paired_comparisons_every_pair_on_shared_participants() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(12):
        for c, shift in (("none", 0.0), ("a", 0.1), ("b", 0.2)):
            if p == 11 and c == "b":
                continue  # p11 misses condition b: left out of the pairs with b only
            rows.append(
                {"participant": f"p{p}", "condition": c, "accuracy": 0.5 + shift + rng.normal(0, 0.05)}
            )
    per = pd.DataFrame(rows)
    out = compare.paired_comparisons(per, ["none", "a", "b"])
    assert [(r.a, r.b, r.n_pairs) for r in out.itertuples()] == [
        ("none", "a", 12),
        ("none", "b", 11),
        ("a", "b", 11),
    ]
    assert out["p_t_holm"].tolist() == pytest.approx(compare.holm(out["p_t"].tolist()))
    wide = per.pivot(index="participant", columns="condition", values="accuracy").dropna()
    assert out.iloc[2]["diff"] == pytest.approx((wide["b"] - wide["a"]).mean())


# --- mixed model ----------------------------------------------------------------------------------


def test_glmm_matches_lme4() -> None:
    """Estimates, SEs and variances against glmer on the data glmm_lme4.R simulated (and stored)."""
    data = pd.read_csv(DATA / "glmm_lme4_data.csv")
    ref = pd.read_csv(DATA / "glmm_lme4_fit.csv")
    res = glmm.glmm_comparisons(data, ["none", "exemplars", "clip_illusion"])
    fit = res.fit
    lme = ref[ref["reference"] == "none"].set_index("term")
    for term, row in fit.coef.set_index("term").iterrows():
        assert row["estimate"] == pytest.approx(lme.loc[term, "estimate"], abs=0.01), term
        # conditional (RX) covariance, as vcov(use.hessian = FALSE); lme4's Hessian SEs are ~1% larger
        assert row["se"] == pytest.approx(lme.loc[term, "se_rx"], rel=0.01), term
        assert row["se"] == pytest.approx(lme.loc[term, "se"], rel=0.03), term
    assert fit.var_participant == pytest.approx(lme["var_participant"].iloc[0], abs=0.01)
    assert fit.var_unit == pytest.approx(lme["var_unit"].iloc[0], abs=0.01)
    # the contrast not involving the reference, against glmer refitted with reference "exemplars"
    other = ref[(ref["reference"] == "exemplars") & (ref["term"] == "clip_illusion")].iloc[0]
    c = res.contrasts[(res.contrasts["a"] == "exemplars") & (res.contrasts["b"] == "clip_illusion")].iloc[0]
    assert c["log_or"] == pytest.approx(other["estimate"], abs=0.01)
    assert c["se"] == pytest.approx(other["se_rx"], rel=0.01)
    assert c["odds_ratio"] == pytest.approx(math.exp(c["log_or"]))
    assert c["or_low"] == pytest.approx(math.exp(c["log_or"] - 1.959964 * c["se"]))
    assert res.contrasts["p_holm"].tolist() == pytest.approx(compare.holm(res.contrasts["p"].tolist()))


def test_fixed_effect_covariance_without_random_effects_is_logistic_regression() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(300), rng.integers(0, 2, 300)])
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.3 + 0.8 * x[:, 1])))).astype(float)
    logit = sm.Logit(y, x).fit(disp=0)
    groups = [np.repeat(np.arange(30), 10).astype(str)]
    cov = glmm.fixed_effect_covariance(x, y, logit.params, groups, [0.0])
    assert cov == pytest.approx(np.asarray(logit.cov_params()), rel=1e-6)


def test_glmm_refuses_data_it_cannot_model() -> None:
    rows = [{"participant": f"p{i}", "condition": c, "correct": 1} for i in range(3) for c in ("a", "b")]
    with pytest.raises(ValueError, match="every answer is right"):
        glmm.fit_glmm(pd.DataFrame(rows).assign(unit="u"), ["a", "b"])
    with pytest.raises(ValueError, match="only one condition"):
        glmm.fit_glmm(pd.DataFrame(rows).assign(unit="u", condition="a"), ["a", "b"])


# --- agreement ------------------------------------------------------------------------------------


def test_cohen_kappa_textbook_and_statsmodels() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    x = ["y"] * 25 + ["n"] * 25
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    res = agreement.cohen_kappa(x, y)
    assert res["kappa"] == pytest.approx(0.4) and res["agreement"] == pytest.approx(0.7)
    # error consistency is Cohen's kappa on right/wrong
    from statsmodels.stats.inter_rater import cohens_kappa, to_table

    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    assert agreement.kappa_binary(a, b) == pytest.approx(
        cohens_kappa(to_table(np.column_stack([a, b]))[0]).kappa
    )
    assert agreement.kappa_binary([1, 1, 1], [1, 0, 1]) == 0.0  # one always right: agreement is chance
    assert math.isnan(agreement.kappa_binary([1, 1, 1], [1, 1, 1]))  # both always right: undefined


def test_error_consistency_equals_pairwise_kappa() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for p in range(6):
        for c in ("none", "vis"):
            for u in rng.choice(12, size=9, replace=False):
                rows.append(
                    {
                        "participant": f"p{p}",
                        "condition": c,
                        "unit": f"u{u}",
                        "correct": int(rng.random() < 0.6),
                    }
                )
    df = _table(rows)
    out = agreement.error_consistency(df, ["none", "vis"], min_shared=4).set_index(["a", "b"])
    # brute force over participant pairs
    kappas = []
    for p in range(6):
        for q in range(6):
            if p == q:
                continue
            a = df[(df.participant == f"p{p}") & (df.condition == "none")].set_index("unit")["correct"]
            b = df[(df.participant == f"p{q}") & (df.condition == "vis")].set_index("unit")["correct"]
            shared = a.index.intersection(b.index)
            if len(shared) >= 4:
                k = agreement.kappa_binary(a[shared], b[shared])
                if not math.isnan(k):
                    kappas.append(k)
    row = out.loc[("none", "vis")]
    assert row["n_pairs"] == len(kappas)
    assert row["kappa_mean"] == pytest.approx(np.mean(kappas))
    # within a condition each unordered pair counts once
    assert out.loc[("none", "none")]["n_pairs"] + out.loc[("none", "none")]["n_undefined"] <= 15


def test_test_retest_pairs_repeats_with_their_originals() -> None:
    rows = []
    first = ["A", "B", "A", "B"]
    second = ["A", "B", "B", "B"]
    for i, (f, s) in enumerate(zip(first, second, strict=True)):
        rows.append(
            {
                "participant": "p1",
                "condition": "vis",
                "trial_id": f"t{i}",
                "response": f,
                "correct": int(f == "A"),
            }
        )
        rows.append(
            {
                "participant": "p1",
                "condition": "vis",
                "trial_id": f"t{i}/r",
                "trial_kind": "repeated",
                "repeat_of": f"t{i}",
                "response": s,
                "correct": int(s == "A"),
            }
        )
    df = normalize_responses(pd.DataFrame(rows).assign(unit="u", block=0, confidence=3, rt_s=1.0))
    out = agreement.test_retest(df, ["vis"]).set_index("condition")
    assert out.loc["vis", "n_pairs"] == 4 and out.loc["vis", "agreement"] == pytest.approx(0.75)
    # table [[A,A]=1, [A,B]=1, [B,B]=2]: p_o 0.75, p_e 0.5*0.25 + 0.5*0.75 = 0.5 -> kappa 0.5
    assert out.loc["vis", "kappa"] == pytest.approx(0.5)
    assert (out.loc["vis", "first_accuracy"], out.loc["vis", "second_accuracy"]) == (0.5, 0.25)


def test_krippendorff_alpha_textbook() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability': 4 observers, 12 units;
    nominal 0.743, ordinal 0.815, interval 0.849."""
    nan = math.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    rows = [
        {
            "participant": f"obs{o}",
            "condition": "vis",
            "unit": f"u{u}",
            "trial_id": f"t{u}",
            "response": str(int(v)),
        }
        for o, line in enumerate(data)
        for u, v in enumerate(line)
        if not math.isnan(v)
    ]
    df = _table(rows)
    ordinal, how = agreement.krippendorff_table(df, ["vis"], ("ordinal", "interval"))
    nominal, _ = agreement.krippendorff_table(df, ["vis"], ("nominal",))
    row = ordinal.set_index("condition").loc["vis"]
    assert row["alpha_ordinal"] == pytest.approx(0.815, abs=5e-4)
    assert row["alpha_interval"] == pytest.approx(0.849, abs=5e-4)
    assert nominal.set_index("condition").loc["vis", "alpha_nominal"] == pytest.approx(0.743, abs=5e-4)
    assert "trial_id" in how and row["n_pairable_items"] == 11


# --- confidence and time --------------------------------------------------------------------------


def test_confidence_auc_matches_sklearn_and_calibration_counts() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    correct = rng.integers(0, 2, 200)
    conf = np.clip(np.round(2 + 2 * correct + rng.normal(0, 1.5, 200)), 1, 6)
    assert confidence.confidence_auc(conf, correct) == pytest.approx(roc_auc_score(correct, conf))
    rows = [
        {"participant": "p1", "condition": "vis", "confidence": c, "correct": k}
        for c, k in [(1, 0), (1, 1), (6, 1), (6, 1), (6, 0)]
    ]
    calib = confidence.calibration_table(_table(rows), ["vis"])
    vis = calib[calib["condition"] == "vis"].set_index("confidence")
    assert vis.loc[1.0, "accuracy"] == 0.5 and vis.loc[6.0, "n"] == 3 and vis.loc[6.0, "k"] == 2
    assert vis.loc[6.0, "ci_low"] == pytest.approx(accuracy.wilson_interval(2, 3)[0])


def test_rt_table_medians() -> None:
    rts = [1.0, 2.0, 4.0, 8.0]
    rows = [{"participant": "p1", "condition": "vis", "rt_s": t, "correct": int(t > 1.5)} for t in rts]
    row = timing.rt_table(_table(rows), ["vis"], too_fast_s=1.5).iloc[0]
    assert row["median"] == 3.0 and row["geo_mean"] == pytest.approx(math.exp(np.log(rts).mean()))
    assert row["median_right"] == 4.0 and row["median_wrong"] == 1.0 and row["too_fast"] == 0.25


# --- simulation and power -------------------------------------------------------------------------


def test_marginal_accuracy_and_simulated_counts() -> None:
    rng = np.random.default_rng(0)
    draws = 1 / (1 + np.exp(-(1.0 + rng.normal(0, math.sqrt(0.8), 400_000))))
    assert marginal_accuracy(1.0, 0.8) == pytest.approx(draws.mean(), abs=2e-3)
    model = model_from_accuracies({"none": 0.75, "vis": 0.9}, 0.5, 0.3)
    assert model.marginal("none") == pytest.approx(0.75) and model.marginal("vis") == pytest.approx(0.9)
    counts = simulate_counts(model, 50, 40, 10, 200, np.random.default_rng(1))
    assert counts.shape == (200, 50, 2)
    assert (counts / 10).mean(axis=(0, 1)) == pytest.approx([0.75, 0.9], abs=0.01)


def test_normal_approximation_matches_statsmodels() -> None:
    from statsmodels.stats.power import NormalIndPower

    n = power.normal_approx_n(0.18, 0.1)
    assert n == math.ceil(
        NormalIndPower().solve_power(effect_size=0.1 / 0.18, alpha=0.05, power=0.8, ratio=0)
    )


def test_simulated_power_matches_the_t_test_power_without_random_effects() -> None:
    """With no random effects a participant's accuracy difference has SD sqrt((p1q1 + p2q2)/T), so
    the paired t-test's power is statsmodels' TTestPower at d = 0.1 / SD."""
    from statsmodels.stats.power import TTestPower

    model = StudyModel({"a": math.log(0.7 / 0.3), "b": math.log(0.8 / 0.2)}, 0.0, 0.0)
    sd = math.sqrt((0.7 * 0.3 + 0.8 * 0.2) / 20)
    for n in (10, 20):
        sims = 1500
        got = power.simulated_power(model, n, 50, 20, sims, seed=1)
        want = TTestPower().power(0.1 / sd, n, 0.05)
        assert got == pytest.approx(want, abs=3.5 * math.sqrt(want * (1 - want) / sims)), n


def test_power_analysis_finds_the_crossing() -> None:
    res = power.power_analysis(
        math.log(0.6 / 0.4), 0.3, 0.2, 0.15, n_units=20, trials_per_condition=10, n_sims=200
    )
    curve = res.curve.set_index("n")["power"]
    assert res.n_required is not None and curve[res.n_required] >= 0.8
    below = [n for n in curve.index if n < res.n_required]
    assert below and curve[max(below)] < 0.8  # the bisection's lower bracket
    assert res.target_accuracy == pytest.approx(res.baseline_accuracy + 0.15)
    # the normal approximation lands near the simulated answer at this size
    assert abs(res.n_normal - res.n_required) <= max(4, 0.3 * res.n_required)
    with pytest.raises(ValueError, match="leaves"):
        power.power_analysis(3.0, 0.1, 0.1, 0.2, n_units=10, trials_per_condition=10, n_sims=10)


# --- design ---------------------------------------------------------------------------------------


def _simple(**cols: object) -> pd.DataFrame:
    rows = [
        {"participant": "p1", "condition": "none", "correct": 1, **cols},
        {"participant": "p1", "condition": "vis", "correct": 0, **cols},
    ]
    return _table(rows)


@pytest.mark.parametrize(
    ("cols", "task", "message"),
    [
        ({}, None, "Pass --task"),
        ({}, "labelling", "no 'n_options' column"),
        ({"task": "rating"}, "2afc", "says 'rating' but the task given is '2afc'"),
        ({"n_options": 4}, "2afc", "a 2afc task has 2 answer options"),
        ({"n_options": 1}, "mistake", "at least 2"),
    ],
)
def test_task_resolution_errors(cols: dict, task: str | None, message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_task_and_chance(_simple(**cols), task)


def test_task_resolution_and_baseline() -> None:
    assert resolve_task_and_chance(_simple(), "2afc")[:2] == ("2afc", 0.5)
    assert resolve_task_and_chance(_simple(n_options=4), None)[:2] == ("labelling", 0.25)
    assert resolve_task_and_chance(_simple(n_options=3), "mistake")[:2] == ("mistake", pytest.approx(1 / 3))
    assert resolve_task_and_chance(_simple(), "rating")[:2] == ("rating", None)
    design = design_from_table(_simple(n_options=2))
    assert design.conditions == ("none", "vis") and design.baseline == "none" and design.rules_stated
    assert design.visualizer("none") == "none" and design.visualizer("vis") == "vis"
    with pytest.raises(UserError, match="baseline condition 'nope'"):
        design_from_table(_simple(n_options=2), baseline="nope")


def test_design_from_spec_orders_conditions_and_takes_its_rules() -> None:
    from types import SimpleNamespace

    rules = ExclusionRules(min_catch_accuracy=0.9)
    spec = SimpleNamespace(
        title="t",
        task="2afc",
        n_options=2,
        exclusions=rules,
        conditions=["vis", "none"],
        dataset="spurious-shapes",
        model="resnet18@64px",
        seed=7,
        path="s.toml",
    )
    design = design_from_spec(spec, _simple())
    assert design.conditions == ("none", "vis") and design.rules is rules and not design.rules_stated
    assert (design.dataset, design.model, design.seed, design.source) == (
        "spurious-shapes",
        "resnet18@64px",
        7,
        "spec",
    )
    spec.conditions = ["other", "none"]
    with pytest.raises(UserError, match="does not declare"):
        design_from_spec(spec, _simple())


# --- the whole analysis ---------------------------------------------------------------------------


def test_analysis_of_a_simulated_study_recovers_its_effect() -> None:
    """A seeded study with a known effect: the inattentive participants are excluded, the GLMM
    interval holds the true log odds ratio, the paired interval the true accuracy difference."""
    model = model_from_accuracies({"none": 0.65, "vis": 0.85}, 0.4, 0.3)
    df = normalize_responses(simulate_study(model, 30, 16, 12, seed=3, n_inattentive=2))
    design = design_from_table(df)
    res = analyze(df, design, AnalysisSettings(n_boot=300, power_sims=60, power_diffs=(0.1,)))
    assert set(res.exclusions.excluded_participants) >= {"sim030", "sim031"}
    assert res.participants_kind == "simulated"
    c = res.glmm.contrasts.iloc[0]
    true_lor = model.log_odds_ratio("none", "vis")
    assert math.log(c["or_low"]) < true_lor < math.log(c["or_high"])
    p = res.paired.iloc[0]
    assert p["diff_low"] < 0.20 < p["diff_high"] and p["p_t_holm"] < 0.05
    assert res.table_all["n_participants"].tolist() == [32, 32] and res.table["n_participants"].max() <= 30
    assert res.power and res.power[0].n_required is not None
    assert len(res.test_retest) and len(res.error_consistency) == 3 and len(res.calibration)


def test_analysis_of_ratings() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(8):
        for u in range(6):
            for c, base in (("none", 3.0), ("vis", 4.5)):
                rating = int(np.clip(round(base + 0.3 * u - 0.8 + rng.normal(0, 0.6)), 1, 7))
                rows.append(
                    {
                        "participant": f"p{p}",
                        "condition": c,
                        "unit": f"u{u}",
                        "trial_id": f"{c}/u{u}",
                        "response": str(rating),
                        "correct": None,
                        "task": "rating",
                    }
                )
    df = normalize_responses(pd.DataFrame(rows).assign(trial_kind="main", block=0, confidence=None, rt_s=2.0))
    res = analyze(df, design_from_table(df), AnalysisSettings(n_boot=300))
    table = res.table.set_index("condition")
    per = df.assign(r=df["response"].astype(float)).groupby(["condition", "participant"])["r"].mean()
    assert table.loc["vis", "mean_rating"] == pytest.approx(per["vis"].mean())
    assert res.glmm is None and res.power == [] and res.calibration.empty
    assert res.paired.iloc[0]["diff"] == pytest.approx(per["vis"].mean() - per["none"].mean())
    assert {"alpha_ordinal", "alpha_interval"} <= set(res.krippendorff.columns)
    assert res.krippendorff.set_index("condition").loc["all", "alpha_interval"] > 0.3


def test_participants_kind() -> None:
    from neuroinspect.studies.analysis.pipeline import participants_kind

    df = _simple()
    assert participants_kind(df)[0] == "human" and participants_kind(df, "simulated")[0] == "simulated"
    both = pd.concat([_simple(simulated=1), _simple(simulated=0).assign(participant="p2")])
    assert participants_kind(both)[0] == "mixed"
    with pytest.raises(UserError, match="contradicts"):
        participants_kind(_simple(simulated=1), "human")


def test_a_condition_left_empty_by_the_exclusions_gets_no_record() -> None:
    from neuroinspect.studies.analysis.records import study_records

    model = model_from_accuracies({"none": 0.6, "vis": 0.8}, 0.2, 0.2)
    raw = simulate_study(model, 6, 8, 6, seed=1, n_inattentive=1, repeated_per_participant=0)
    raw.loc[(raw["participant"] == "sim006") & (raw["trial_kind"] == "main"), "condition"] = "extra"
    df = normalize_responses(raw)
    res = analyze(df, design_from_table(df), AnalysisSettings(n_boot=100, glmm=False, power_sims=0))
    assert res.exclusions.excluded_participants == ["sim006"]
    assert any("'extra' has no main trials left" in n for n in res.notes)
    prov = {
        "versions": {
            "torch": None,
            "timm": None,
            "open_clip_torch": None,
            "captum": None,
            "torch-lucent": None,
        },
        "git_commit": None,
        "device": "cpu",
        "started_at": None,
        "wall_seconds": 0.0,
    }
    records = study_records(res, prov)
    assert [r["method"]["condition"] for r in records] == ["none", "vis"]
    assert all(r["metrics"]["n_excluded"] == 1 for r in records)


def test_power_counts_no_detection_where_the_paired_test_has_no_p_value() -> None:
    """Every participant improves by exactly the same amount: the paired test has no spread to test
    against (compare.paired_test gives no p-value), so the power simulation must not count a detection;
    the same improvement with spread is detected."""
    from neuroinspect.studies.analysis.compare import paired_test
    from neuroinspect.studies.analysis.power import paired_t_detections

    same = np.array([[[5, 8]] * 6])  # 1 simulation × 6 participants × (a, b) correct of 10
    spread = np.array([[[5, 8], [4, 8], [5, 9], [3, 8], [5, 7], [4, 9]]])
    assert math.isnan(paired_test(same[0, :, 0] / 10, same[0, :, 1] / 10)["p_t"])
    assert paired_t_detections(same, 10, 0.05).tolist() == [False]
    assert paired_t_detections(spread, 10, 0.05).tolist() == [True]
    assert paired_t_detections(spread[..., ::-1], 10, 0.05).tolist() == [False]  # b worse: not "b > a"
