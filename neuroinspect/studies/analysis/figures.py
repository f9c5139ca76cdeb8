"""PNG figures of a study analysis (matplotlib, Agg backend; 150 dpi).

* ``accuracy.png``: accuracy per condition; one dot per participant (grey lines join a participant's
  conditions), the participant mean ± 2 SEM, the trial-level accuracy with its Wilson interval,
  chance, and the Holm-adjusted paired p-value of each condition against the baseline.
* ``calibration.png``: accuracy at each confidence level per condition (Wilson intervals) above the
  number of answers at each level.
* ``rt.png``: response-time distributions per condition on a log scale, with medians.
* ``power.png``: simulated power against participants, the target, and the normal approximation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.studies.analysis.pipeline import StudyAnalysis

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
BASELINE_COLOR = "#8C8C8C"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _colors(analysis: StudyAnalysis) -> dict[str, str]:
    out = {}
    i = 0
    for cond in analysis.design.conditions:
        if cond == analysis.design.baseline:
            out[cond] = BASELINE_COLOR
        else:
            out[cond] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _save(fig: Any, path: Path) -> Path:
    from neuroinspect.fileio import atomic_write

    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=150, bbox_inches="tight"))
    _plt().close(fig)
    return path


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def accuracy_figure(analysis: StudyAnalysis, path: Path) -> Path:
    """Accuracy (or mean rating) per condition with participant dots and intervals."""
    plt = _plt()
    design = analysis.design
    conds = list(design.conditions)
    colors = _colors(analysis)
    rating = design.is_rating
    value = "mean_rating" if rating else "accuracy"
    per = analysis.per_participant
    fig, ax = plt.subplots(figsize=(1.9 * len(conds) + 2.2, 4.6))
    x = {c: i for i, c in enumerate(conds)}
    rng = np.random.default_rng(0)
    wide = per.pivot(index="participant", columns="condition", values=value) if len(per) else None
    if wide is not None:
        jitter = {p: rng.uniform(-0.13, 0.13) for p in wide.index}
        if len(wide) <= 80 and len(conds) >= 2:
            for p, row in wide.iterrows():
                xs = [x[c] - 0.12 + jitter[p] for c in conds if c in row and np.isfinite(row[c])]
                ys = [row[c] for c in conds if c in row and np.isfinite(row[c])]
                ax.plot(xs, ys, color="0.85", lw=0.5, alpha=0.8, zorder=1)
        for c in conds:
            if c not in wide:
                continue
            vals = wide[c].dropna()
            ax.scatter(
                [x[c] - 0.12 + jitter[p] for p in vals.index],
                vals.to_numpy(),
                s=16,
                color=colors[c],
                alpha=0.55,
                edgecolors="none",
                zorder=2,
            )
    table = analysis.table.set_index("condition")
    for c in conds:
        if c not in table.index:
            continue
        row = table.loc[c]
        if rating:
            mean, err = row["mean_rating"], row["rating_2sem"]
        else:
            mean, err = row["participant_mean"], row["participant_2sem"]
        ax.errorbar(
            x[c] + 0.22,
            mean,
            yerr=err if np.isfinite(err) else None,
            fmt="o",
            color="black",
            ms=7,
            capsize=4,
            lw=1.6,
            zorder=4,
            label="participant mean ± 2 SEM" if c == conds[0] else None,
        )
        if not rating:
            acc = row["accuracy"]
            ax.errorbar(
                x[c] + 0.36,
                acc,
                yerr=[[max(acc - row["ci_low"], 0.0)], [max(row["ci_high"] - acc, 0.0)]],
                fmt="D",
                mfc="white",
                color="#444444",
                ms=5,
                capsize=3,
                lw=1.0,
                zorder=4,
                label="all trials, Wilson 95% CI" if c == conds[0] else None,
            )
    if not rating and design.chance is not None:
        ax.axhline(design.chance, color="#C44E52", ls="--", lw=1, zorder=0)
        ax.text(
            len(conds) - 0.45,
            design.chance + 0.01,
            f"chance {design.chance:.0%}",
            color="#C44E52",
            ha="right",
            va="bottom",
            fontsize=8,
        )
        ax.set_ylim(-0.02, 1.12)
        ax.yaxis.set_major_formatter(_percent())
        ax.set_ylabel("accuracy")
    else:
        ax.set_ylabel("rating (participant mean)")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.22 * (high - low))  # headroom for the p-values above the dots
    # Holm-adjusted paired p-values against the reference, above each condition
    ref = conds[0] if conds else None
    if len(analysis.paired) and ref is not None:
        top = 1.04 if not rating else ax.get_ylim()[1] - 0.02 * (ax.get_ylim()[1] - ax.get_ylim()[0])
        for _, r in analysis.paired[analysis.paired["a"] == ref].iterrows():
            sign = "+" if r["diff"] >= 0 else "−"
            unit = "pp" if not rating else ""
            scale = 100 if not rating else 1
            ax.text(
                x[r["b"]] + 0.1,
                top,
                f"{sign}{abs(r['diff']) * scale:.1f}{unit} vs {ref}\n{_p_text(r['p_t_holm'])} (Holm)",
                ha="center",
                va="bottom" if not rating else "top",
                fontsize=7.5,
            )
    ax.set_xticks(range(len(conds)))
    labels = [f"{c}\n(baseline)" if c == design.baseline else c for c in conds]
    ax.set_xticklabels(labels)
    ax.set_xlim(-0.6, len(conds) - 0.4)
    n_kept = analysis.n_participants_total - len(analysis.exclusions.excluded_participants)
    who = {
        "human": "participants",
        "simulated": "SIMULATED participants",
        "mixed": "participants (some simulated)",
    }
    ax.set_title(
        f"{design.title}: {design.task}, {n_kept} {who[analysis.participants_kind]}"
        f" ({len(analysis.exclusions.excluded_participants)} excluded)",
        fontsize=10,
    )
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower left", fontsize=7.5, frameon=False)
    ax.grid(axis="y", color="0.93", zorder=0)
    return _save(fig, path)


def _percent() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{100 * v:.0f}%")


def calibration_figure(analysis: StudyAnalysis, path: Path) -> Path | None:
    """Accuracy by confidence level per condition, with answer counts below; None without confidence."""
    calib = analysis.calibration
    if calib is None or len(calib) == 0:
        return None
    plt = _plt()
    colors = _colors(analysis)
    conds = [c for c in analysis.design.conditions if (calib["condition"] == c).any()]
    levels = sorted(calib["confidence"].unique())
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(6.4, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08}
    )
    width = 0.8 / max(len(conds), 1)
    for i, c in enumerate(conds):
        sub = calib[calib["condition"] == c]
        off = (i - (len(conds) - 1) / 2) * min(width, 0.12)
        ax.errorbar(
            sub["confidence"] + off,
            sub["accuracy"],
            # clipped: at 0% or 100% the Wilson bound equals the estimate up to rounding
            yerr=[
                np.clip(sub["accuracy"] - sub["ci_low"], 0, None),
                np.clip(sub["ci_high"] - sub["accuracy"], 0, None),
            ],
            fmt="o-",
            color=colors[c],
            ms=5,
            capsize=2.5,
            lw=1.4,
            label=c,
        )
        axn.bar(
            sub["confidence"] + (i - (len(conds) - 1) / 2) * width,
            sub["n"],
            width=width,
            color=colors[c],
            alpha=0.8,
        )
    if analysis.design.chance is not None:
        ax.axhline(analysis.design.chance, color="#C44E52", ls="--", lw=1)
    ax.set_ylim(-0.02, 1.05)
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylabel("accuracy (Wilson 95% CI)")
    ax.set_title("Are people right more often when they are sure?", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="0.93")
    axn.set_ylabel("answers")
    axn.set_xlabel("confidence level (1 = guessing)")
    axn.set_xticks(levels)
    axn.set_xticklabels([f"{v:g}" for v in levels])
    axn.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def rt_figure(analysis: StudyAnalysis, path: Path) -> Path | None:
    """Response-time distributions per condition (violins on a log axis, medians marked)."""
    from neuroinspect.studies.analysis.accuracy import main_trials

    kept = analysis.exclusions.kept
    main = main_trials(kept)
    main = main[main["rt_s"].notna() & (main["rt_s"] > 0)]
    conds = [c for c in analysis.design.conditions if (main["condition"] == c).any()]
    if not conds:
        return None
    plt = _plt()
    colors = _colors(analysis)
    fig, ax = plt.subplots(figsize=(1.6 * len(conds) + 2.4, 4.2))
    data = [np.log10(main[main["condition"] == c]["rt_s"].to_numpy(dtype=float)) for c in conds]
    parts = ax.violinplot(data, positions=range(len(conds)), showextrema=False, widths=0.8)
    for body, c in zip(parts["bodies"], conds, strict=True):
        body.set_facecolor(colors[c])
        body.set_alpha(0.55)
        body.set_edgecolor("none")
    for i, d in enumerate(data):
        q25, med, q75 = np.quantile(d, [0.25, 0.5, 0.75])
        ax.vlines(i, q25, q75, color="black", lw=4)
        ax.scatter([i], [med], color="white", s=18, zorder=3, edgecolors="black", linewidths=0.8)
        ax.text(i + 0.08, med, f"{10**med:.1f} s", va="center", fontsize=8)
    fast = analysis.design.rules.too_fast_s
    if fast:
        ax.axhline(np.log10(fast), color="#C44E52", ls="--", lw=1)
        ax.text(
            len(conds) - 0.5,
            np.log10(fast),
            f"too fast (< {fast:g} s)",
            color="#C44E52",
            fontsize=7.5,
            ha="right",
            va="bottom",
        )
    ticks = [
        t
        for t in (0.1, 0.3, 1, 3, 10, 30, 100, 300)
        if np.log10(t) >= min(d.min() for d in data) - 0.3 and np.log10(t) <= max(d.max() for d in data) + 0.3
    ]
    ax.set_yticks(np.log10(ticks))
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    ax.set_ylabel("response time (s, log scale)")
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels(conds)
    ax.set_title("Response times per condition (median and quartiles)", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def power_figure(analysis: StudyAnalysis, path: Path) -> Path | None:
    """Simulated power against participants for each planned difference."""
    if not analysis.power:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, res in enumerate(analysis.power):
        color = PALETTE[i % len(PALETTE)]
        c = res.curve
        ax.errorbar(
            c["n"],
            c["power"],
            yerr=1.96 * c["mc_se"],
            fmt="o-",
            color=color,
            ms=4,
            lw=1.3,
            capsize=2,
            label=f"+{100 * res.delta:.0f} pp over {100 * res.baseline_accuracy:.0f}%: "
            f"n = {res.n_required if res.n_required else '>' + str(int(c['n'].max()))} (simulated), "
            f"{res.n_normal} (normal approx.)",
        )
        if res.n_normal > 0:
            ax.axvline(res.n_normal, color=color, ls=":", lw=1)
    ax.axhline(analysis.power[0].power_target, color="black", ls="--", lw=0.8)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    lo = min(int(r.curve["n"].min()) for r in analysis.power)
    hi = max(int(r.curve["n"].max()) for r in analysis.power)
    ticks = [t for t in (3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000) if lo <= t <= hi * 1.2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("participants in the follow-up (log scale)")
    ax.set_ylabel(f"power (paired t-test, α = {analysis.power[0].alpha:g})")
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left")
    ax.set_title("Participants needed to detect a difference (simulated from the fitted model)", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(color="0.93")
    return _save(fig, path)


def write_figures(analysis: StudyAnalysis, folder: Path) -> dict[str, Path]:
    """All figures that apply, written atomically into ``folder``; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {"accuracy": accuracy_figure(analysis, folder / "accuracy.png")}
    for name, fn in (("calibration", calibration_figure), ("rt", rt_figure), ("power", power_figure)):
        path = fn(analysis, folder / f"{name}.png")
        if path is not None:
            out[name] = path
    return out
