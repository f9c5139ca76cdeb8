"""A frequentist mixed-effects logistic regression of correctness on condition.

Model (lme4 notation)::

    correct ~ condition + (1 | participant) + (1 | unit),   family = binomial(logit)

Crossed random intercepts: some people are better at the task than others, and some units are
easier to understand than others, whatever the condition; ignoring either makes trial-level
intervals too narrow. Fitted by gpboost's ``GPModel(group_data=..., likelihood="bernoulli_logit")``
(Laplace approximation, as ``lme4::glmer``'s default; it matched lme4 on our reference data set,
``tests/data/glmm_lme4.*``). statsmodels only has a *Bayesian* mixed GLM, whose posterior SDs came out
narrower than lme4's standard errors (platform notes), hence gpboost.

The fixed effects use treatment coding against a reference condition (the no-explanation baseline
when there is one): ``exp(beta)`` is the odds ratio of a correct answer in the condition against
the reference *for the same participant on the same unit* (a conditional, subject-specific effect;
the population-averaged difference in accuracy is smaller on the probability scale). Intervals and
p-values are Wald (estimate ± 1.96 SE); p-values over all pairs are Holm-adjusted, as for the paired
tests.

Standard errors: gpboost's own come from a finite-difference Hessian that is sometimes not positive
definite (then NaN). We compute the covariance of the fixed effects as lme4 does when it cannot use
its Hessian (``vcov(fit, use.hessian = FALSE)``): from the penalized least-squares system at the
conditional modes of the random effects, given the fitted variances,
``Cov(beta) = (X'WX - X'WZ (Z'WZ + D^-1)^-1 Z'WX)^-1`` with ``W = diag(mu (1 - mu))`` and ``D`` the
random-effect variances. It is always defined, gives every pairwise contrast from one fit, and
matched lme4's values to 1% on the reference data (lme4's Hessian-based SEs are about 1% larger).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Z95 = 1.959963984540054
#: an estimated log-odds beyond this in size means a condition was (nearly) always right or wrong
SEPARATION_LOGIT = 8.0


@dataclass
class GLMMFit:
    """One fit. ``coef``: one row per fixed effect (``term`` = "(intercept)" or a condition name,
    against ``reference``) with ``estimate``, ``se``, ``z``, ``p``, ``low``, ``high`` on the log-odds
    scale and ``odds_ratio``, ``or_low``, ``or_high``. Variances are of the random intercepts on the
    log-odds scale."""

    reference: str
    coef: Any
    #: covariance of the fixed effects (intercept, then ``terms[1:]``), K x K
    cov: Any
    terms: list[str]
    var_participant: float
    var_unit: float
    se_var_participant: float
    se_var_unit: float
    n_obs: int
    n_participants: int
    n_units: int
    neg_log_likelihood: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class GLMMResult:
    """The fit against the reference plus every pairwise contrast (``contrasts``: one row per pair
    (a, b) with ``log_or`` of b against a, ``se``, ``z``, ``p``, ``p_holm``, ``odds_ratio``,
    ``or_low``, ``or_high``)."""

    fit: GLMMFit
    contrasts: Any
    formula: str = "correct ~ condition + (1 | participant) + (1 | unit)"
    warnings: list[str] = field(default_factory=list)


@contextmanager
def _quiet_stdout() -> Any:
    """gpboost's C++ core prints notes on file descriptor 1; keep them out of reports and pipes."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def fit_glmm(
    df: Any,
    conditions: Sequence[str],
    reference: str | None = None,
    threads: int = 1,
) -> GLMMFit:
    """Fit the model to ``df`` (rows with ``participant``, ``unit``, ``condition``, ``correct`` in
    {0, 1}) with treatment coding against ``reference`` (default: the first condition).

    A random intercept whose grouping has a single level (one participant, one unit) is left out
    and said in ``warnings``. Raises ``ValueError`` when the data cannot identify the model.
    """
    import gpboost as gpb
    import pandas as pd
    from scipy.stats import norm

    conditions = list(conditions)
    reference = reference if reference is not None else conditions[0]
    if reference not in conditions:
        raise ValueError(f"reference {reference!r} is not among the conditions")
    data = df[df["condition"].isin(conditions) & df["correct"].notna()]
    if data.empty:
        raise ValueError("no trials with a right answer")
    others = [c for c in conditions if c != reference and (data["condition"] == c).any()]
    if not others:
        raise ValueError("only one condition has trials")
    notes: list[str] = []
    groups = [g for g in ("participant", "unit") if data[g].nunique() >= 2]
    for g in ("participant", "unit"):
        if g not in groups:
            notes.append(f"one {g} only: its random intercept is left out")
    if not groups:
        raise ValueError("needs at least two participants or two units for a mixed model")
    y = data["correct"].to_numpy(dtype=float)
    if y.min() == y.max():
        raise ValueError("every answer is " + ("right" if y[0] == 1 else "wrong") + ": nothing to model")
    cond = data["condition"].astype(str).to_numpy()
    x = np.column_stack([np.ones(len(data))] + [(cond == c).astype(float) for c in others])
    model = gpb.GPModel(
        group_data=data[groups].astype(str).to_numpy(),
        likelihood="bernoulli_logit",
        num_parallel_threads=int(threads),
        seed=0,
    )
    with _quiet_stdout():
        model.fit(y=y, X=x, params={"trace": False})
        est = np.asarray(model.get_coef(), dtype=float).ravel()
        cov = np.asarray(model.get_cov_pars(std_err=True), dtype=float)
        nll = float(model.get_current_neg_log_likelihood())
    variances = dict(zip(groups, cov[0], strict=True))
    variance_se = dict(zip(groups, cov[1], strict=True))
    codes = [data[g].astype(str).to_numpy() for g in groups]
    beta_cov = fixed_effect_covariance(x, y, est, codes, [variances[g] for g in groups])
    se = np.sqrt(np.clip(np.diag(beta_cov), 0.0, None))
    z = est / se
    p = 2.0 * norm.sf(np.abs(z))
    terms = ["(intercept)"] + others
    table = pd.DataFrame(
        {
            "term": terms,
            "estimate": est,
            "se": se,
            "z": z,
            "p": p,
            "low": est - Z95 * se,
            "high": est + Z95 * se,
        }
    )
    table["odds_ratio"] = np.exp(table["estimate"])
    table["or_low"] = np.exp(table["low"])
    table["or_high"] = np.exp(table["high"])
    if not np.all(np.isfinite(se)):
        notes.append("standard errors are not finite: the model is not identified on these data")
    for term, value in zip(terms, est, strict=True):
        total = value + (est[0] if term != "(intercept)" else 0.0)
        if abs(total) > SEPARATION_LOGIT:
            label = "the reference" if term == "(intercept)" else repr(term)
            notes.append(
                f"{label} is (almost) always answered {'right' if total > 0 else 'wrong'}: its log-odds "
                "are near the edge and its interval is unreliable (separation)"
            )
    return GLMMFit(
        reference=reference,
        coef=table,
        cov=beta_cov,
        terms=terms,
        var_participant=float(variances.get("participant", 0.0)),
        var_unit=float(variances.get("unit", 0.0)),
        se_var_participant=float(variance_se.get("participant", math.nan)),
        se_var_unit=float(variance_se.get("unit", math.nan)),
        n_obs=len(data),
        n_participants=int(data["participant"].nunique()),
        n_units=int(data["unit"].nunique()),
        neg_log_likelihood=nll,
        warnings=notes,
    )


def glmm_comparisons(
    df: Any, conditions: Sequence[str], reference: str | None = None, threads: int = 1
) -> GLMMResult:
    """Fit against ``reference`` (default: the first condition); every pair (a, b) of
    ``conditions`` (in their order) gets the log odds ratio of b against a with its Wald interval,
    from the one fit's fixed-effect covariance; Holm over the pairs."""
    import pandas as pd
    from scipy.stats import norm

    from neuroinspect.studies.analysis.compare import holm

    conditions = list(conditions)
    reference = reference if reference is not None else conditions[0]
    fit = fit_glmm(df, conditions, reference, threads)
    index = {t: i for i, t in enumerate(fit.terms)}
    est = fit.coef["estimate"].to_numpy()
    rows = []
    for i, a in enumerate(conditions):
        for b in conditions[i + 1 :]:
            vec = np.zeros(len(fit.terms))
            for cond, sign in ((b, 1.0), (a, -1.0)):
                if cond == reference:
                    continue
                if cond not in index:
                    break
                vec[index[cond]] += sign
            else:
                log_or = float(vec @ est)
                se = float(math.sqrt(max(vec @ fit.cov @ vec, 0.0)))
                z = log_or / se if se > 0 else math.nan
                rows.append(
                    {
                        "a": a,
                        "b": b,
                        "log_or": log_or,
                        "se": se,
                        "z": z,
                        "p": float(2.0 * norm.sf(abs(z))) if math.isfinite(z) else math.nan,
                        "odds_ratio": math.exp(log_or),
                        "or_low": math.exp(log_or - Z95 * se),
                        "or_high": math.exp(log_or + Z95 * se),
                    }
                )
    contrasts = pd.DataFrame(rows)
    if not contrasts.empty:
        contrasts["p_holm"] = holm(contrasts["p"].tolist())
    return GLMMResult(fit=fit, contrasts=contrasts, warnings=list(fit.warnings))


def fixed_effect_covariance(
    x: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    groups: Sequence[np.ndarray],
    variances: Sequence[float],
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Covariance of the fixed effects of a logistic model with random intercepts, given the
    fixed effects ``beta`` (K,) and the random-intercept ``variances`` (one per grouping in
    ``groups``, each an (n,) array of level labels): the inverse Schur complement of the joint
    Hessian at the conditional modes of the random effects (found by Newton's method).

    ``x``: (n, K) design matrix; ``y``: (n,) 0/1. A grouping with (near) zero variance has its
    random effects fixed at zero.
    """
    from scipy import sparse

    n = len(y)
    blocks = []
    precision = []
    for labels, var in zip(groups, variances, strict=True):
        if not var > 1e-8:
            continue
        _levels, codes = np.unique(labels, return_inverse=True)
        q = int(codes.max()) + 1
        blocks.append(sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, q)))
        precision.append(np.full(q, 1.0 / var))
    offset = x @ beta
    if not blocks:
        mu = 1.0 / (1.0 + np.exp(-offset))
        w = mu * (1.0 - mu)
        return np.linalg.inv(x.T @ (x * w[:, None]))
    z = sparse.hstack(blocks).tocsr()
    dinv = np.concatenate(precision)
    b = np.zeros(z.shape[1])
    for _ in range(max_iter):
        eta = offset + z @ b
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        grad = z.T @ (y - mu) - dinv * b
        hess = (z.T @ sparse.diags(w) @ z).toarray() + np.diag(dinv)
        step = np.linalg.solve(hess, grad)
        b += step
        if float(np.max(np.abs(step))) < tol:
            break
    eta = offset + z @ b
    mu = 1.0 / (1.0 + np.exp(-eta))
    w = mu * (1.0 - mu)
    zwz = (z.T @ sparse.diags(w) @ z).toarray() + np.diag(dinv)
    xwz = np.asarray((z.T @ (x * w[:, None])).T)
    xwx = x.T @ (x * w[:, None])
    schur = xwx - xwz @ np.linalg.solve(zwz, xwz.T)
    return np.linalg.inv(schur)
