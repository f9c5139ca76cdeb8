"""``report.md``: the tables of a study analysis and what they mean, in plain words.

The reading is generated from the numbers with fixed rules, stated in the report: a difference is
called *reliable* when its Holm-adjusted paired p-value is under alpha (then its 95% interval
excludes zero as well, up to the correction); accuracy is *above / below chance* when the exact
binomial test says so at alpha and *not distinguishable from chance* otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neuroinspect.studies.analysis.pipeline import StudyAnalysis

METHODS = """\
- **Unit of analysis.** Accuracy is computed on main trials only (practice trials are ignored, catch
  trials serve the exclusion rules, repeated trials the test-retest check).
- **Accuracy per condition.** The trial-level proportion correct has a Wilson score interval and an
  exact two-sided binomial test against chance. Both treat trials as independent, which they are not
  (one person answers many trials), so they overstate precision when people differ; the
  participant-level mean ± 2 SEM (the convention of Borowski et al. ICLR'21 and Zimmermann et al.
  NeurIPS'21, so these numbers compare to theirs) and the BCa bootstrap interval over participants do
  not make that assumption.
- **Between conditions: paired tests.** Every participant saw every condition, so conditions are
  compared within participants: the paired t-test on the per-participant accuracy difference (its
  95% interval is the interval of the difference), with the Wilcoxon signed-rank test beside it as a
  check that does not assume normal differences. With several pairs, Holm's step-down correction
  keeps the chance of any false positive at 5% (it is uniformly more powerful than Bonferroni).
- **Between conditions: mixed-effects logistic regression.** `correct ~ condition + (1 | participant)
  + (1 | unit)` with a logit link, fitted by Laplace approximation (gpboost; it matches R's
  `lme4::glmer` on our reference data). It uses every trial and accounts for both able participants
  and easy units at once. Odds ratios are conditional (for the same participant on the same unit);
  intervals and p-values are Wald, with the fixed effects' covariance computed as lme4 does when it
  does not use its finite-difference Hessian (conditional on the fitted variances); every pair comes
  from the one fit; Holm over the pairs.
- **Confidence.** Accuracy at each confidence level (Wilson intervals) and the type-2 AUC: the
  probability that a right answer carries more confidence than a wrong one (0.5 = confidence says
  nothing; ties count half).
- **Response times** are skewed: medians, quartiles and geometric means; conditions are compared on
  each participant's median time (paired t-test, Holm).
- **Agreement.** Error consistency (Cohen's kappa on right/wrong between two different participants
  over the units both answered, chance agreement from their accuracies; Geirhos et al. 2020, as used
  by Zimmermann et al.) averaged over participant pairs; pairs share participants, so the mean is
  descriptive and has no interval. Test-retest: share of identical answers and Cohen's kappa between
  a trial and its repeat. Krippendorff's alpha between participants for ratings and labels.
- **Power.** Simulated follow-ups from the fitted mixed model (its baseline log-odds and both
  random-intercept variances, this study's trials per condition and units), the second condition set
  to the baseline's accuracy plus the planned difference, each analysed with the paired t-test at
  the stated alpha; the smallest number of participants whose detection rate reaches the target.
  Beside it the normal approximation n = ((z₁₋α/₂ + z_power) · SD / difference)², with the SD of the
  per-participant difference under the same model.
"""


def pct(v: Any, digits: int = 1) -> str:
    """0.823 -> '82.3%'; NaN / None -> 'n/a'."""
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{100 * float(v):.{digits}f}%"


def pp(v: Any, digits: int = 1) -> str:
    """An accuracy difference in percentage points with its sign: 0.08 -> '+8.0 pp'."""
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{100 * float(v):+.{digits}f} pp"


def num(v: Any, digits: int = 2) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{float(v):.{digits}f}"


def pval(p: Any) -> str:
    if p is None or not math.isfinite(float(p)):
        return "n/a"
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one letter per column (l / r), default l then r."""
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(sep) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def _reliable(p_holm: Any, alpha: float) -> bool:
    return p_holm is not None and math.isfinite(float(p_holm)) and float(p_holm) < alpha


def _vs_chance(row: Any, chance: float, alpha: float) -> str:
    p = row["p_value"]
    if not math.isfinite(p):
        return "not tested"
    if p >= alpha:
        return "not distinguishable from chance"
    return "above chance" if row["accuracy"] > chance else "below chance"


def _who(kind: str) -> str:
    return {"human": "people", "simulated": "simulated participants", "mixed": "participants"}[kind]


def summary_lines(a: StudyAnalysis) -> list[str]:
    """The plain-language reading, one bullet each."""
    d = a.design
    alpha = a.settings.alpha
    who = _who(a.participants_kind)
    excluded = a.exclusions.excluded_participants
    reasons = a.exclusions.reasons()
    out = []
    kept = a.n_participants_total - len(excluded)
    if excluded:
        counts: dict[str, int] = {}
        for rules in reasons.values():
            for r in rules:
                counts[r] = counts.get(r, 0) + 1
        why = ", ".join(f"{n} for {r.replace('_', ' ')}" for r, n in sorted(counts.items()))
        out.append(
            f"{a.n_participants_total} {who} took part; {len(excluded)} were excluded by the rules "
            f"({why}; a participant can break several), leaving {kept}."
        )
    else:
        out.append(f"{a.n_participants_total} {who} took part; nobody was excluded.")
    if a.table.empty:
        return out
    if d.is_rating:
        for _, r in a.table.iterrows():
            out.append(
                f"**{r['condition']}**: mean rating {num(r['mean_rating'])} "
                f"(95% CI {num(r['rating_ci_low'])} to {num(r['rating_ci_high'])}; "
                f"{r['n_participants']} participants, {r['n_trials']} ratings)."
            )
    else:
        assert d.chance is not None
        for _, r in a.table.iterrows():
            out.append(
                f"**{r['condition']}**: right on {pct(r['accuracy'])} of {r['n_trials']} trials "
                f"(participant mean {pct(r['participant_mean'])} ± {pct(r['participant_2sem'])}, "
                f"bootstrap 95% CI {pct(r['boot_low'])}–{pct(r['boot_high'])}); "
                f"{_vs_chance(r, d.chance, alpha)} ({pct(d.chance, 0)}; binomial p {pval(r['p_value'])})."
            )
    if len(a.paired):
        scale = (lambda v: num(v)) if d.is_rating else pp
        for _, r in a.paired.iterrows():
            interval = f"95% CI {scale(r['diff_low'])} to {scale(r['diff_high'])}"
            if _reliable(r["p_t_holm"], alpha):
                verdict = (
                    f"**{r['b']}** {'beat' if r['diff'] > 0 else 'fell behind'} **{r['a']}** by "
                    f"{scale(r['diff'])} ({interval}; paired t-test, Holm p {pval(r['p_t_holm'])}): "
                    "a reliable difference"
                )
                if math.isfinite(r["p_wilcoxon_holm"]) and not _reliable(r["p_wilcoxon_holm"], alpha):
                    verdict += (
                        f", though the Wilcoxon signed-rank check does not confirm it (Holm p "
                        f"{pval(r['p_wilcoxon_holm'])}): treat it as tentative"
                    )
            else:
                verdict = (
                    f"**{r['b']}** vs **{r['a']}**: {scale(r['diff'])} ({interval}; Holm p "
                    f"{pval(r['p_t_holm'])}): not a reliable difference with {int(r['n_pairs'])} participants"
                )
            g = None
            if a.glmm is not None and len(a.glmm.contrasts):
                m = a.glmm.contrasts[(a.glmm.contrasts["a"] == r["a"]) & (a.glmm.contrasts["b"] == r["b"])]
                g = m.iloc[0] if len(m) else None
            if g is not None:
                agree = _reliable(g["p_holm"], alpha) == _reliable(r["p_t_holm"], alpha)
                verdict += (
                    f"; the mixed model {'agrees' if agree else 'disagrees'} (odds ratio "
                    f"{num(g['odds_ratio'])}, 95% CI {num(g['or_low'])}–{num(g['or_high'])}, Holm p {pval(g['p_holm'])})"
                )
            out.append(verdict + ".")
        changed = _changed_without_exclusions(a)
        if excluded:
            if changed:
                out.append(
                    "Without the exclusions the verdict changes for: " + "; ".join(changed) + ". Read the "
                    "excluded participants' rows before trusting either."
                )
            else:
                out.append("Without the exclusions, every comparison keeps its verdict.")
    elif len(d.conditions) >= 2:
        out.append("Conditions were not compared (--no-compare).")
    if len(a.confidence):
        allrow = a.confidence[a.confidence["condition"] == "all"]
        if len(allrow):
            auc = float(allrow.iloc[0]["auc"])
            if math.isfinite(auc):
                strength = "tracked" if auc >= 0.6 else ("barely tracked" if auc > 0.53 else "did not track")
                out.append(
                    f"Confidence {strength} correctness: a right answer carried more confidence than a "
                    f"wrong one in {pct(auc, 0)} of right/wrong pairs (type-2 AUC {num(auc)})."
                )
    for res in a.power:
        n = f"about {res.n_required}" if res.n_required else f"more than {int(res.curve['n'].max())}"
        out.append(
            f"To detect a {pp(res.delta)} gain over the baseline's {pct(res.baseline_accuracy, 0)} with "
            f"{pct(res.power_target, 0)} power (α = {res.alpha:g}), a follow-up with this design needs "
            f"{n} participants by simulation ({res.n_normal} by the normal approximation)."
        )
    return out


def _changed_without_exclusions(a: StudyAnalysis) -> list[str]:
    alpha = a.settings.alpha
    if not len(a.paired) or not len(a.paired_all):
        return []
    out = []
    for (_, r), (_, s) in zip(a.paired.iterrows(), a.paired_all.iterrows(), strict=True):
        if _reliable(r["p_t_holm"], alpha) != _reliable(s["p_t_holm"], alpha):
            out.append(
                f"{r['b']} vs {r['a']} (Holm p {pval(r['p_t_holm'])} with, {pval(s['p_t_holm'])} without)"
            )
    return out


def _accuracy_rows(table: Any) -> list[list[Any]]:
    return [
        [
            r["condition"],
            r["n_participants"],
            r["n_trials"],
            f"{pct(r['accuracy'])} ({pct(r['ci_low'])}–{pct(r['ci_high'])})",
            pval(r["p_value"]),
            f"{pct(r['participant_mean'])} ± {pct(r['participant_2sem'])}",
            f"{pct(r['boot_low'])}–{pct(r['boot_high'])}",
        ]
        for _, r in table.iterrows()
    ]


ACC_HEADERS = (
    "condition",
    "participants",
    "trials",
    "accuracy (Wilson 95% CI)",
    "p vs chance",
    "participant mean ± 2 SEM",
    "bootstrap 95% CI",
)


def _rating_rows(table: Any) -> list[list[Any]]:
    return [
        [
            r["condition"],
            r["n_participants"],
            r["n_trials"],
            f"{num(r['mean_rating'])} ({num(r['rating_ci_low'])}–{num(r['rating_ci_high'])})",
            f"± {num(r['rating_2sem'])}",
            f"{num(r['rating_boot_low'])}–{num(r['rating_boot_high'])}",
            f"{num(r['rating_min'], 0)}–{num(r['rating_max'], 0)}",
        ]
        for _, r in table.iterrows()
    ]


RATING_HEADERS = (
    "condition",
    "participants",
    "ratings",
    "mean rating (t 95% CI)",
    "2 SEM",
    "bootstrap 95% CI",
    "range",
)


def _paired_rows(paired: Any, rating: bool, alpha: float) -> list[list[Any]]:
    scale = (lambda v: num(v)) if rating else pp
    return [
        [
            f"{r['b']} − {r['a']}",
            int(r["n_pairs"]),
            f"{scale(r['diff'])} ({scale(r['diff_low'])} to {scale(r['diff_high'])})",
            f"{num(r['t'])} ({int(r['df']) if math.isfinite(r['df']) else 'n/a'})",
            pval(r["p_t"]),
            pval(r["p_t_holm"]),
            pval(r["p_wilcoxon_holm"]),
            num(r["d_z"]),
            "yes" if _reliable(r["p_t_holm"], alpha) else "no",
        ]
        for _, r in paired.iterrows()
    ]


PAIRED_HEADERS = (
    "difference",
    "participants",
    "mean (95% CI)",
    "t (df)",
    "p",
    "p Holm",
    "Wilcoxon p Holm",
    "d_z",
    "reliable",
)


def render_report(
    a: StudyAnalysis,
    figures: dict[str, str],
    provenance: dict[str, Any],
    command: str | None = None,
) -> str:
    """The Markdown report; ``figures`` maps figure names to paths relative to the report."""
    d = a.design
    alpha = a.settings.alpha
    lines: list[str] = [f"# Study analysis: {d.title}", ""]
    if a.participants_kind != "human":
        lines += [
            f"> **{'SIMULATED participants' if a.participants_kind == 'simulated' else 'Some participants are SIMULATED'}.** "
            "These numbers describe simulated answers, not what people understood; they test the "
            "pipeline and the design, and must not be read or reported as human data.",
            "",
        ]
    lines += ["## In brief", ""] + [f"- {s}" for s in summary_lines(a)] + [""]
    if "accuracy" in figures:
        lines += [f"![accuracy per condition]({figures['accuracy']})", ""]

    # design
    lines += ["## Design and data", ""]
    facts: list[list[Any]] = [
        ["task", d.task],
        ["chance", pct(d.chance, 1) if d.chance is not None else "n/a (ratings)"],
        ["conditions", ", ".join(d.conditions)],
        [
            "baseline (reference)",
            d.baseline or f"none named; reference = {d.conditions[0] if d.conditions else 'n/a'}",
        ],
        ["source", f"{d.source}: {d.path}" if d.path else d.source],
        ["dataset / model", f"{d.dataset} / {d.model}"],
        ["participants", f"{a.n_participants_total} ({a.participants_kind})"],
        ["rows by trial kind", ", ".join(f"{k} {v}" for k, v in a.rows_by_kind.items())],
        ["main trials per participant and condition (median)", a.design_facts["trials_per_condition"]],
        ["units", a.design_facts["n_units"]],
        ["same units in every condition", "yes" if a.design_facts["units_shared"] else "no"],
    ]
    if not math.isnan(a.catch_accuracy):
        facts.append(["catch-trial accuracy (kept participants)", pct(a.catch_accuracy)])
    lines += [md_table(["", ""], facts, "ll"), ""]

    # exclusions
    lines += ["## Exclusions", ""]
    source = (
        "the default rules (no spec was given, so these are stated here)"
        if d.rules_stated
        else f"the rules of the {d.source}"
    )
    lines += [f"Participants were excluded by {source} when they had:", ""]
    rules = d.rules.describe()
    lines += [f"- {r}" for r in rules] if rules else ["- (no rule is switched on)"]
    lines += [""]
    if len(a.exclusions.excluded):
        lines += [
            md_table(
                ["participant", "rule", "detail"],
                [[r.participant, r.rule, r.detail] for r in a.exclusions.excluded.itertuples()],
                "lll",
            ),
            "",
        ]
    else:
        lines += ["Nobody was excluded.", ""]
    for note in a.exclusions.notes:
        lines += [f"Note: {note}.", ""]

    # accuracy
    if d.is_rating:
        lines += ["## Ratings per condition", "", md_table(RATING_HEADERS, _rating_rows(a.table)), ""]
        if len(a.exclusions.excluded):
            lines += ["Without exclusions:", "", md_table(RATING_HEADERS, _rating_rows(a.table_all)), ""]
    else:
        lines += [
            "## Accuracy per condition",
            "",
            md_table(ACC_HEADERS, _accuracy_rows(a.table)),
            "",
            "The Wilson interval and the binomial test pool all trials as if independent; the "
            "participant-level columns treat each person as one observation and are the ones to "
            "compare with published studies (mean ± 2 SEM).",
            "",
        ]
        if len(a.exclusions.excluded):
            lines += ["Without exclusions:", "", md_table(ACC_HEADERS, _accuracy_rows(a.table_all)), ""]

    # comparisons
    if len(a.paired):
        lines += [
            "## Comparisons between conditions",
            "",
            f"Paired t-tests on each participant's {'mean rating' if d.is_rating else 'accuracy'} "
            f"(conditions are within-subject), every pair, Holm-corrected; *reliable* = Holm p < {alpha:g}. "
            "d_z is the mean difference over the SD of the differences.",
            "",
            md_table(PAIRED_HEADERS, _paired_rows(a.paired, d.is_rating, alpha)),
            "",
        ]
        if len(a.exclusions.excluded):
            lines += [
                "Without exclusions:",
                "",
                md_table(PAIRED_HEADERS, _paired_rows(a.paired_all, d.is_rating, alpha)),
                "",
            ]
        if a.glmm is not None:
            f = a.glmm.fit
            lines += [
                "### Mixed-effects logistic regression",
                "",
                f"`{a.glmm.formula}`, binomial logit, Laplace approximation (gpboost); "
                f"{f.n_obs} trials, {f.n_participants} participants, {f.n_units} units; reference level "
                f"**{f.reference}**. Random-intercept variances (log-odds scale): participants "
                f"{num(f.var_participant, 3)} (SE {num(f.se_var_participant, 3)}), units "
                f"{num(f.var_unit, 3)} (SE {num(f.se_var_unit, 3)}).",
                "",
            ]
            lines += [
                md_table(
                    ["contrast", "log odds ratio (SE)", "odds ratio (95% CI)", "p", "p Holm", "reliable"],
                    [
                        [
                            f"{r['b']} vs {r['a']}",
                            f"{num(r['log_or'], 3)} ({num(r['se'], 3)})",
                            f"{num(r['odds_ratio'])} ({num(r['or_low'])}–{num(r['or_high'])})",
                            pval(r["p"]),
                            pval(r["p_holm"]),
                            "yes" if _reliable(r["p_holm"], alpha) else "no",
                        ]
                        for _, r in a.glmm.contrasts.iterrows()
                    ],
                ),
                "",
            ]
            icpt = f.coef.iloc[0]
            lines += [
                f"The intercept, {num(icpt['estimate'], 3)} (SE {num(icpt['se'], 3)}), is the log-odds of "
                f"a right answer under {f.reference} for a typical participant on a typical unit "
                f"({pct(1 / (1 + math.exp(-icpt['estimate'])))}). An odds ratio is for the same "
                "person on the same unit, so it is larger than the ratio of the pooled odds.",
                "",
            ]
            for w in a.glmm.warnings:
                lines += [f"Warning: {w}.", ""]

    # confidence
    if len(a.calibration):
        lines += ["## Confidence calibration", ""]
        lines += [
            md_table(
                ["condition", "answers", "mean confidence, right", "mean confidence, wrong", "type-2 AUC"],
                [
                    [
                        r["condition"],
                        r["n"],
                        num(r["mean_conf_right"]),
                        num(r["mean_conf_wrong"]),
                        num(r["auc"]),
                    ]
                    for _, r in a.confidence.iterrows()
                ],
            ),
            "",
        ]
        levels = sorted(a.calibration["confidence"].unique())
        conds = [c for c in [*d.conditions, "all"] if (a.calibration["condition"] == c).any()]
        rows = []
        for level in levels:
            row: list[Any] = [f"{level:g}"]
            for c in conds:
                m = a.calibration[(a.calibration["condition"] == c) & (a.calibration["confidence"] == level)]
                row.append(f"{pct(m.iloc[0]['accuracy'], 0)} (n={int(m.iloc[0]['n'])})" if len(m) else "—")
            rows.append(row)
        lines += ["Accuracy at each confidence level:", "", md_table(["confidence", *conds], rows), ""]
        if "calibration" in figures:
            lines += [f"![confidence calibration]({figures['calibration']})", ""]

    # response times
    if len(a.rt):
        lines += ["## Response times", ""]
        lines += [
            md_table(
                ["condition", "answers", "median (IQR) s", "geometric mean s", "median right / wrong s"],
                [
                    [
                        r["condition"],
                        r["n"],
                        f"{num(r['median'], 1)} ({num(r['q25'], 1)}–{num(r['q75'], 1)})",
                        num(r["geo_mean"], 1),
                        f"{num(r['median_right'], 1)} / {num(r['median_wrong'], 1)}",
                    ]
                    for _, r in a.rt.iterrows()
                ],
            ),
            "",
        ]
        if len(a.rt_paired):
            lines += [
                "Each participant's median time, paired between conditions (Holm):",
                "",
                md_table(
                    ["difference", "participants", "mean (95% CI) s", "p Holm"],
                    [
                        [
                            f"{r['b']} − {r['a']}",
                            int(r["n_pairs"]),
                            f"{num(r['diff'])} ({num(r['diff_low'])} to {num(r['diff_high'])})",
                            pval(r["p_t_holm"]),
                        ]
                        for _, r in a.rt_paired.iterrows()
                    ],
                ),
                "",
            ]
        if "rt" in figures:
            lines += [f"![response times]({figures['rt']})", ""]

    # agreement
    lines += ["## Agreement and consistency", ""]
    if len(a.error_consistency):
        lines += [
            "Error consistency (Cohen's kappa on right/wrong between two different participants over the "
            f"units both answered, at least {a.settings.min_shared_units} shared; 0 = no more shared errors "
            "than chance, 1 = the same errors):",
            "",
            md_table(
                ["conditions", "mean kappa", "SD", "participant pairs", "pairs undefined", "shared units"],
                [
                    [
                        f"{r['a']} / {r['b']}",
                        num(r["kappa_mean"]),
                        num(r["kappa_sd"]),
                        r["n_pairs"],
                        r["n_undefined"],
                        num(r["shared_mean"], 1),
                    ]
                    for _, r in a.error_consistency.iterrows()
                ],
            ),
            "",
        ]
    if len(a.test_retest):
        lines += [
            "Test-retest on repeated trials (the same trial shown again later):",
            "",
            md_table(
                [
                    "condition",
                    "pairs",
                    "same answer",
                    "kappa (SE)",
                    "kappa right/wrong",
                    "accuracy 1st / 2nd",
                ],
                [
                    [
                        r["condition"],
                        r["n_pairs"],
                        pct(r["agreement"]),
                        f"{num(r['kappa'])} ({num(r['kappa_se'])})",
                        num(r["kappa_correct"]),
                        f"{pct(r['first_accuracy'], 0)} / {pct(r['second_accuracy'], 0)}",
                    ]
                    for _, r in a.test_retest.iterrows()
                ],
            ),
            "",
        ]
    else:
        lines += ["No repeated trials: no test-retest check.", ""]
    if len(a.krippendorff):
        levels = [c for c in a.krippendorff.columns if c.startswith("alpha_")]
        lines += [
            f"Krippendorff's alpha between participants ({a.krippendorff_items}):",
            "",
            md_table(
                [
                    "condition",
                    "participants",
                    "items",
                    "pairable items",
                    *[c.replace("alpha_", "alpha ") for c in levels],
                ],
                [
                    [
                        r["condition"],
                        r["n_participants"],
                        r["n_items"],
                        r["n_pairable_items"],
                        *[num(r[c]) for c in levels],
                    ]
                    for _, r in a.krippendorff.iterrows()
                ],
            ),
            "",
        ]

    # power
    if a.power:
        lines += ["## Power for a follow-up", ""]
        lines += [
            md_table(
                [
                    "difference",
                    "baseline → target",
                    "log odds ratio",
                    "SD of difference",
                    f"n for {pct(a.power[0].power_target, 0)} power (simulated)",
                    "n (normal approx.)",
                    "simulations per n",
                ],
                [
                    [
                        pp(r.delta),
                        f"{pct(r.baseline_accuracy)} → {pct(r.target_accuracy)}",
                        num(r.log_odds_ratio, 3),
                        num(r.sd_diff, 3),
                        r.n_required if r.n_required else f"> {int(r.curve['n'].max())}",
                        r.n_normal,
                        r.n_sims,
                    ]
                    for r in a.power
                ],
            ),
            "",
            f"Design of the simulated follow-up: 2 conditions, {a.power[0].trials_per_condition} trials per "
            f"condition, {a.power[0].n_units} units, "
            f"{'the same units in both conditions' if a.power[0].units_shared else 'units drawn per condition'}; "
            f"participant variance {num(a.power[0].var_participant, 3)}, unit variance "
            f"{num(a.power[0].var_unit, 3)} (from the fit). Monte-Carlo SE of each power estimate ≤ "
            f"{pct(max(r.curve['mc_se'].max() for r in a.power))}.",
            "",
        ]
        for r in a.power:
            for note in r.notes:
                lines += [f"Note: {note}.", ""]
        if "power" in figures:
            lines += [f"![power]({figures['power']})", ""]

    lines += ["## Methods: which test and why", "", METHODS]
    if a.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in a.notes] + [""]
    lines += ["## Provenance", ""]
    versions = ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items() if v)
    lines += [
        f"- command: `{command}`" if command else "- command: (library call)",
        f"- seed {a.settings.seed}, {a.settings.n_boot} bootstrap resamples, {a.settings.power_sims} "
        "power simulations per n",
        f"- started {provenance.get('started_at')}, {num(provenance.get('wall_seconds'), 1)} s, "
        f"git {provenance.get('git_commit') or 'n/a'}",
        f"- versions: {versions}",
        "",
    ]
    return "\n".join(lines)
