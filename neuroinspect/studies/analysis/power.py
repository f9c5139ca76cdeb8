"""Power for a planned follow-up: how many participants does it take to detect an accuracy
difference ``delta`` between the baseline and one explanation condition, at alpha = 0.05 with power
0.8?

By simulation from the fitted model (:mod:`.simulate`): the reference condition's log-odds and the
participant and unit variances come from the mixed model fitted to this study; the second
condition's log-odds are set so its marginal accuracy is the baseline's plus ``delta``; trials per
condition, the number of units and whether a participant sees the same units in both conditions
follow this study's design. Each simulated follow-up is analysed with the test this analysis uses
for the comparison, the paired t-test on participant-level accuracy, two-sided; a detection is
p < alpha with the difference in the right direction. The power at n participants is the detection
rate over ``n_sims`` simulated follow-ups (Monte-Carlo SE shown); the smallest n on a grid (refined
by bisection) whose power reaches the target is reported.

Beside it, the normal approximation n = ((z_{1-alpha/2} + z_{power}) * sd_d / delta)^2, with sd_d the
SD across participants of the accuracy difference under the same model and design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroinspect.studies.analysis.simulate import (
    StudyModel,
    logit_for_accuracy,
    marginal_accuracy,
    participant_accuracy_sd,
    simulate_counts,
)

GRID = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500)
#: elements per simulation chunk (participants x conditions x units), to bound memory
_CHUNK_ELEMENTS = 4_000_000


@dataclass
class PowerResult:
    """``curve``: one row per n evaluated (``n``, ``power``, ``mc_se``), sorted by n;
    ``n_required`` is None when even the largest n of the grid falls short."""

    delta: float
    baseline_accuracy: float
    target_accuracy: float
    log_odds_ratio: float
    var_participant: float
    var_unit: float
    n_units: int
    trials_per_condition: int
    units_shared: bool
    alpha: float
    power_target: float
    n_sims: int
    seed: int
    curve: Any
    n_required: int | None
    sd_diff: float
    n_normal: int
    notes: list[str] = field(default_factory=list)


def paired_t_detections(counts: np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """Per simulation (axis 0): did the two-sided paired t-test on participant accuracies
    (``counts[..., 1] - counts[..., 0]`` over ``trials``) find b > a at ``alpha``? Boolean, shape (S,).

    ``counts``: (S, participants, 2) right answers out of ``trials`` per condition; ``alpha``: the
    significance level, a fraction in (0, 1) (a ValueError otherwise: 5 for 5% would make every
    simulation with b ahead a detection)."""
    from scipy import stats

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha is a significance level in (0, 1), got {alpha!r} (0.05 for 5%)")
    delta = counts[..., 1] - counts[..., 0]
    diff = delta.astype(float) / trials
    n = diff.shape[1]
    mean = diff.mean(axis=1)
    sd = diff.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    p = 2.0 * stats.t.sf(np.abs(t), n - 1)
    # Every participant moved by the same number of trials (or none moved) leaves no spread to test
    # against: not a detection, as compare.paired_test gives no p-value then. Decided on the whole
    # counts, not on sd > 0: the mean of equal differences such as 3 x 0.1 is rounded, which leaves
    # an sd of 1e-17, a t of 1e16 and p = 0.
    spread = np.any(delta != delta[:, :1], axis=1)
    p = np.where(spread, p, 1.0)
    return (p < alpha) & (mean > 0)


def simulated_power(
    model: StudyModel,
    n_participants: int,
    n_units: int,
    trials_per_condition: int,
    n_sims: int,
    seed: int = 0,
    alpha: float = 0.05,
    units_shared: bool = False,
) -> float:
    """Detection rate of the paired t-test (second condition of ``model`` against the first) over
    ``n_sims`` simulated studies of ``n_participants``; seeded by (seed, n) so it does not depend on
    which other n were evaluated."""
    rng = np.random.default_rng([seed, n_participants])
    per_sim = n_participants * 2 * max(n_units, trials_per_condition)
    chunk = max(1, _CHUNK_ELEMENTS // per_sim)
    hits = 0
    done = 0
    while done < n_sims:
        s = min(chunk, n_sims - done)
        counts = simulate_counts(model, n_participants, n_units, trials_per_condition, s, rng, units_shared)
        hits += int(paired_t_detections(counts, trials_per_condition, alpha).sum())
        done += s
    return hits / n_sims


def normal_approx_n(sd_diff: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Participants for a two-sided one-sample (paired) z-test to detect mean difference ``delta``
    with SD ``sd_diff``: ceil(((z_{1-alpha/2} + z_power) sd / delta)^2)."""
    from scipy.stats import norm

    if delta <= 0 or not math.isfinite(sd_diff):
        return -1
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return int(math.ceil((z * sd_diff / delta) ** 2))


def power_analysis(
    baseline_logit: float,
    var_participant: float,
    var_unit: float,
    delta: float,
    n_units: int,
    trials_per_condition: int,
    units_shared: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    n_sims: int = 500,
    seed: int = 0,
    grid: tuple[int, ...] = GRID,
    progress: Any = None,
) -> PowerResult:
    """Participants needed for the follow-up (see the module docstring).

    ``baseline_logit``: the reference condition's conditional log-odds (the fitted intercept);
    ``delta``: the marginal accuracy difference to detect. ``progress``: optional callable wrapping
    an iterable (a progress bar).
    """
    import pandas as pd

    var_total = var_participant + var_unit
    base_acc = marginal_accuracy(baseline_logit, var_total)
    target = base_acc + delta
    notes: list[str] = []
    if not 0.0 < target < 1.0:
        raise ValueError(
            f"baseline accuracy {base_acc:.3f} plus {delta:+.3f} leaves (0, 1); choose a smaller difference"
        )
    target_logit = logit_for_accuracy(target, var_total)
    model = StudyModel({"a": baseline_logit, "b": target_logit}, var_participant, var_unit)
    sd_diff = participant_accuracy_sd(model, "a", "b", n_units, trials_per_condition, units_shared, seed=seed)
    n_normal = normal_approx_n(sd_diff, delta, alpha, power)

    results: dict[int, float] = {}

    def evaluate(n: int) -> float:
        if n not in results:
            results[n] = simulated_power(
                model, n, n_units, trials_per_condition, n_sims, seed, alpha, units_shared
            )
        return results[n]

    steps = progress(grid) if progress else grid
    previous = None
    found: int | None = None
    for n in steps:
        if evaluate(n) >= power:
            found = n
            break
        previous = n
    if found is not None and previous is not None:
        lo, hi = previous, found  # power(lo) < target <= power(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if evaluate(mid) >= power:
                hi = mid
            else:
                lo = mid
        # two more grid points show where the curve goes on (for the figure)
        for n in [g for g in grid if g > found][:2]:
            evaluate(n)
        found = hi
    if found is None:
        notes.append(f"power stays under {power:.0%} up to {grid[-1]} participants")
    curve = pd.DataFrame(
        [
            {"n": n, "power": p, "mc_se": math.sqrt(max(p * (1 - p), 1e-12) / n_sims)}
            for n, p in sorted(results.items())
        ]
    )
    return PowerResult(
        delta=delta,
        baseline_accuracy=base_acc,
        target_accuracy=target,
        log_odds_ratio=target_logit - baseline_logit,
        var_participant=var_participant,
        var_unit=var_unit,
        n_units=n_units,
        trials_per_condition=trials_per_condition,
        units_shared=units_shared,
        alpha=alpha,
        power_target=power,
        n_sims=n_sims,
        seed=seed,
        curve=curve,
        n_required=found,
        sd_diff=sd_diff,
        n_normal=n_normal,
        notes=notes,
    )
