"""Learning-rate schedules for decision-layer editing (spec §5.3).

The reference's "warm-up" scheduler multiplies the base rate by

    w(τ) = h(τ) · min(1, τ / 0.05),   h(τ) = ½ − ½·cos(π · min(1, (1 − τ) / 0.25)),

a linear ramp-up over the first 5% of training and a half-cosine ramp-down over the last 25%.
It is meant to be evaluated at τ = step / (L·E) over the whole run (L batches per epoch, E epochs).

The reference calls it *after* each optimizer step with ``t`` = the batch index inside the epoch
(spec bug 20), so τ never exceeds 1/E: with E = 20 the rate ramps from 0 to ≈ lr0 *within every
epoch* (a sawtooth), and the very first step runs at the optimizer's initial lr0. ``ref=True``
reproduces that exactly; the default evaluates the schedule over the whole run.
"""

from __future__ import annotations

import math

from neuroinspect.errors import UserError

SCHEDULES = ("warmup", "constant")
RAMPUP = 0.05
RAMPDOWN = 0.25


def warmup_factor(tau: float, rampup: float = RAMPUP, rampdown: float = RAMPDOWN) -> float:
    """w(τ) in [0, 1] for the fraction of training done ``tau`` (0 ≤ τ ≤ 1)."""
    down = min(1.0, (1.0 - tau) / rampdown)
    h = 0.5 - 0.5 * math.cos(down * math.pi)
    return h * min(1.0, tau / rampup)


def lr_at(
    step: int, lr0: float, steps_per_epoch: int, epochs: int, schedule: str = "warmup", ref: bool = False
) -> float:
    """The learning rate used by optimizer step ``step`` (0-based, counted over the whole run).

    - ``"constant"``: ``lr0`` for every step.
    - ``"warmup"``, default: ``lr0 · w(τ)`` with ``τ = (step + 1) / (L·E)``, the share of the run
      completed by this step; the rate climbs over the first 5% of all steps and decays over the
      last 25% (reaching 0 on the final step, the end of the ramp-down).
    - ``"warmup"``, ``ref=True`` (the reference's sawtooth): step 0 runs at ``lr0``; step k ≥ 1 runs
      at ``lr0 · w(t / (L·E))`` with ``t = (k − 1) mod L``, the in-epoch index of the previous step,
      because the reference sets the rate after each step from the in-epoch batch index.
    """
    if schedule not in SCHEDULES:
        raise UserError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError("steps_per_epoch and epochs must be >= 1")
    if schedule == "constant":
        return lr0
    total = steps_per_epoch * epochs
    if ref:
        if step == 0:
            return lr0
        t = (step - 1) % steps_per_epoch
        return lr0 * warmup_factor(t / total)
    return lr0 * warmup_factor((step + 1) / total)


def lr_schedule(
    lr0: float, steps_per_epoch: int, epochs: int, schedule: str = "warmup", ref: bool = False
) -> list[float]:
    """The learning rate of every step of the run, ``L·E`` floats (see :func:`lr_at`)."""
    return [lr_at(k, lr0, steps_per_epoch, epochs, schedule, ref) for k in range(steps_per_epoch * epochs)]


__all__ = ["SCHEDULES", "lr_at", "lr_schedule", "warmup_factor"]
