"""A generative model of a study, for power analysis, the coverage benchmark and tests.

Not to be confused with ``neuroinspect study simulate`` (model observers answering real trials in
the study app): this is the statistical model the analysis fits, run forwards::

    logit P(correct) = logit[condition] + a_participant + a_unit,
    a_participant ~ N(0, var_participant),  a_unit ~ N(0, var_unit)

Accuracies given to :func:`model_from_accuracies` are *marginal* (population-averaged: the share of
right answers of a random participant on a random unit), which is what "a condition at 90%
accuracy" means to a reader; the conditional log-odds the mixed model estimates are solved from them
by Gauss-Hermite quadrature over the random effects.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


def expit(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def marginal_accuracy(logit: float, var_total: float) -> float:
    """E[expit(logit + e)] for e ~ N(0, var_total): the population-averaged accuracy."""
    return float(np.sum(_GH_WEIGHTS * expit(logit + math.sqrt(max(var_total, 0.0)) * _GH_NODES)))


def logit_for_accuracy(accuracy: float, var_total: float) -> float:
    """The conditional log-odds whose marginal accuracy (random-effect variance ``var_total``) is
    ``accuracy`` (in (0, 1))."""
    from scipy.optimize import brentq

    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"accuracy must be in (0, 1), got {accuracy}")
    return float(brentq(lambda t: marginal_accuracy(t, var_total) - accuracy, -40.0, 40.0, xtol=1e-12))


@dataclass(frozen=True)
class StudyModel:
    """Conditional log-odds per condition (the first is the reference) and the random-intercept
    variances on the log-odds scale."""

    logits: Mapping[str, float]
    var_participant: float
    var_unit: float

    @property
    def conditions(self) -> list[str]:
        return list(self.logits)

    def marginal(self, condition: str) -> float:
        return marginal_accuracy(self.logits[condition], self.var_participant + self.var_unit)

    def log_odds_ratio(self, a: str, b: str) -> float:
        """The fixed effect of ``b`` against ``a`` (what the mixed model estimates)."""
        return float(self.logits[b] - self.logits[a])


def model_from_accuracies(
    accuracies: Mapping[str, float], var_participant: float, var_unit: float
) -> StudyModel:
    """The model whose conditions have these marginal accuracies."""
    var = var_participant + var_unit
    return StudyModel(
        {c: logit_for_accuracy(a, var) for c, a in accuracies.items()}, var_participant, var_unit
    )


def _unit_indices(
    rng: np.random.Generator, shape: tuple[int, ...], n_units: int, n_trials: int, shared: bool
) -> np.ndarray:
    """Unit index per trial, shape ``shape + (K, T)``; without replacement within a participant and
    condition when ``n_trials <= n_units``; the same units in every condition when ``shared``."""
    n_cond = shape[-1]
    lead = shape[:-1]
    if n_trials <= n_units:
        k = 1 if shared else n_cond
        keys = rng.random(lead + (k, n_units))
        idx = np.argsort(keys, axis=-1)[..., :n_trials]
    else:
        k = 1 if shared else n_cond
        idx = rng.integers(0, n_units, size=lead + (k, n_trials))
    if shared:
        idx = np.repeat(idx, n_cond, axis=-2)
    return idx


def simulate_counts(
    model: StudyModel,
    n_participants: int,
    n_units: int,
    trials_per_condition: int,
    n_sims: int,
    rng: np.random.Generator,
    units_shared: bool = False,
) -> np.ndarray:
    """Right answers per (simulation, participant, condition): an int array of shape
    ``(n_sims, n_participants, K)`` out of ``trials_per_condition`` trials each."""
    logits = np.array([model.logits[c] for c in model.conditions])
    n_cond = logits.size
    a_p = rng.normal(0.0, math.sqrt(model.var_participant), size=(n_sims, n_participants, 1, 1))
    a_u = rng.normal(0.0, math.sqrt(model.var_unit), size=(n_sims, n_units))
    idx = _unit_indices(rng, (n_sims, n_participants, n_cond), n_units, trials_per_condition, units_shared)
    unit_effect = np.take_along_axis(
        a_u[:, None, None, :], idx.reshape(n_sims, n_participants, n_cond, -1), axis=-1
    )
    eta = logits[None, None, :, None] + a_p + unit_effect
    right = rng.random(eta.shape) < expit(eta)
    return right.sum(axis=-1)


class _Session:
    """One simulated participant's session: answers trials and keeps the clock."""

    #: confidence 1-6 from the latent evidence for the right answer: wrong answers (latent < 0)
    #: get 1-2, clear right answers up to 6, so the simulated observer is calibrated
    THRESHOLDS = np.array([-0.7, 0.3, 0.9, 1.6, 2.4])

    def __init__(
        self,
        pid: str,
        careless: bool,
        rng: np.random.Generator,
        options: list[str],
        start: Any,
        fixed: dict[str, Any],
    ) -> None:
        import pandas as pd

        self.pid, self.careless, self.rng, self.options = pid, careless, rng, options
        self.started = start
        self.instructions = float(rng.uniform(20, 90)) if not careless else 3.0
        self.clock = start + pd.Timedelta(seconds=self.instructions)
        self.position = 0
        self.fixed = fixed
        self.rows: list[dict[str, Any]] = []
        self.mains: list[dict[str, Any]] = []

    def _answer(self, eta: float, truth: str) -> tuple[str, int, int, float]:
        rng = self.rng
        latent = eta + rng.logistic()
        conf = int(1 + np.searchsorted(self.THRESHOLDS, latent))
        rt = float(np.exp(math.log(3.0) - 0.15 * min(abs(latent), 4.0) + rng.normal(0, 0.35)))
        if self.careless:
            return self.options[0], int(truth == self.options[0]), 1, float(rng.uniform(0.1, 0.25))
        if latent > 0:
            return truth, 1, conf, rt
        wrong = [o for o in self.options if o != truth]
        return wrong[int(rng.integers(len(wrong)))], 0, conf, rt

    def add(
        self,
        kind: str,
        cond: str,
        unit: str,
        trial_id: str,
        block: int,
        eta: float,
        truth: str | None = None,
        **extra: Any,
    ) -> None:
        import pandas as pd

        # the right answer belongs to the trial (the same screen for everyone who sees it)
        truth = (
            truth if truth is not None else self.options[zlib.crc32(trial_id.encode()) % len(self.options)]
        )
        response, correct, conf, rt = self._answer(eta, truth)
        shown = self.clock
        self.clock = shown + pd.Timedelta(seconds=rt + 1.0)
        row = {
            "participant": self.pid,
            "condition": cond,
            "unit": unit,
            "trial_id": trial_id,
            "trial_kind": kind,
            "block": block,
            "response": response,
            "correct": correct,
            "confidence": conf,
            "rt_s": round(rt, 3),
            **self.fixed,
            "position": self.position,
            "truth": truth,
            "shown_at": shown.round("ms").isoformat(),
            "answered_at": (shown + pd.Timedelta(seconds=rt)).round("ms").isoformat(),
            "instructions_s": round(self.instructions, 1),
            "session_started_at": self.started.isoformat(),
            **extra,
        }
        self.position += 1
        self.rows.append(row)
        if kind == "main":
            self.mains.append(row)

    def finish(self) -> list[dict[str, Any]]:
        done = self.clock.round("ms").isoformat()
        for row in self.rows:
            row["session_completed_at"] = done
        return self.rows


def simulate_study(
    model: StudyModel,
    n_participants: int,
    n_units: int,
    trials_per_condition: int,
    seed: int = 0,
    task: str = "2afc",
    n_options: int = 2,
    units_shared: bool = False,
    catch_per_participant: int = 3,
    repeated_per_participant: int = 4,
    n_inattentive: int = 0,
    study_id: str = "simulated",
) -> Any:
    """A long-format response table (:mod:`neuroinspect.studies.responses`) drawn from ``model``.

    Each participant answers ``trials_per_condition`` main trials per condition in blocks (the
    block order rotates across participants), ``catch_per_participant`` catch trials (attentive
    participants pass 98% of them) and ``repeated_per_participant`` repeats of earlier main trials
    (the same screen again). Answers come from a latent ``eta + logistic noise`` (right when
    positive), so confidence (1-6, rising with the latent) is calibrated and response times
    (log-normal, median about 3 s) are shorter when the answer is clear. ``n_inattentive`` extra
    participants fail catch trials and answer "A" fast on every trial, for the exclusion rules to
    catch. ``simulated`` is 1 throughout.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    conditions = model.conditions
    options = [chr(ord("A") + i) for i in range(n_options)]
    a_u = rng.normal(0.0, math.sqrt(model.var_unit), size=n_units)
    t0 = pd.Timestamp("2026-01-01T09:00:00Z")
    fixed = {"study_id": study_id, "simulated": 1, "task": task, "n_options": n_options}
    rows: list[dict[str, Any]] = []
    for p in range(n_participants + n_inattentive):
        careless = p >= n_participants
        a_p = rng.normal(0.0, math.sqrt(model.var_participant))
        idx = _unit_indices(rng, (len(conditions),), n_units, trials_per_condition, units_shared)
        order = [conditions[(p + i) % len(conditions)] for i in range(len(conditions))]
        session = _Session(f"sim{p:03d}", careless, rng, options, t0 + pd.Timedelta(minutes=30 * p), fixed)
        # a catch trial shows the answer in the references: attentive people get it right
        catch_eta = -4.0 if careless else 4.0
        for block, cond in enumerate(order):
            k = conditions.index(cond)
            seen: dict[int, int] = {}
            for t in range(trials_per_condition):
                u = int(idx[k, t])
                seen[u] = seen.get(u, 0) + 1  # a unit shown twice (more trials than units) is a new query
                eta = model.logits[cond] + a_p + a_u[u]
                session.add("main", cond, f"neuron:{u}", f"{cond}/neuron:{u}/q{seen[u]}", block, eta)
            if block < catch_per_participant:
                session.add("catch", cond, "catch", f"catch{block}", block, catch_eta)
        for extra in range(len(order), catch_per_participant):
            session.add("catch", order[-1], "catch", f"catch{extra}", len(order) - 1, catch_eta)
        mains = session.mains
        picks = rng.choice(len(mains), size=min(repeated_per_participant, len(mains)), replace=False)
        for j in sorted(int(i) for i in picks):
            orig = mains[j]
            u = int(str(orig["unit"]).split(":")[1])
            session.add(
                "repeated",
                str(orig["condition"]),
                str(orig["unit"]),
                f"{orig['trial_id']}/repeat",
                len(order) - 1,
                model.logits[str(orig["condition"])] + a_p + a_u[u],
                truth=str(orig["truth"]),
                repeat_of=orig["trial_id"],
            )
        rows += session.finish()
    return pd.DataFrame(rows)


def participant_accuracy_sd(
    model: StudyModel,
    a: str,
    b: str,
    n_units: int,
    trials_per_condition: int,
    units_shared: bool = False,
    n: int = 20000,
    seed: int = 0,
) -> float:
    """SD across participants of the accuracy difference b - a at this design, by simulating ``n``
    participants (the ingredient of the normal approximation to the paired test's sample size)."""
    sub = StudyModel({a: model.logits[a], b: model.logits[b]}, model.var_participant, model.var_unit)
    counts = simulate_counts(
        sub, n, n_units, trials_per_condition, 1, np.random.default_rng(seed), units_shared
    )[0]
    diff = (counts[:, 1] - counts[:, 0]) / trials_per_condition
    return float(diff.std(ddof=1))
