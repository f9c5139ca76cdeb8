"""Baseline finders with the counterfactual finder's output: ``contribution``, ``gradient``, ``random``.

They answer the same question ("which neurons cause the mistakes of class c?") from the same cached
features, so that a finder's precision@k against the ground truth of the bundled benchmarks can be
compared with simple alternatives. Each computes, per neuron n,

- a *responsibility* r_n ≥ 0 (the ``scores`` vector; larger = more to blame), and
- a *direction*: ``insufficient`` (raising the neuron would help class c, the image lacks it) or
  ``excessive`` (lowering it would help, the feature pushes away from c),

and lists the responsible neurons (r_n > 0) by decreasing r_n, ``top`` per list. The rows' ``prec5``
field holds the method's score r_n (not a percentage; see ``FinderResult.score_name``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.finders.base import Finder, FinderResult, Mistakes, register_finder, select_mistakes


def _rows(resp: torch.Tensor, mask: torch.Tensor, imp: torch.Tensor, top: int) -> list[dict[str, Any]]:
    idx = torch.nonzero(mask & (resp > 0)).flatten().tolist()
    idx.sort(key=lambda n: (-float(resp[n]), n))
    return [{"neuron": int(n), "prec5": float(resp[n]), "imp": float(imp[n])} for n in idx[:top]]


def _result(
    finder: Finder,
    m: Mistakes,
    resp: torch.Tensor,
    raise_helps: torch.Tensor,
    imp: torch.Tensor,
    imp_ref: str,
    seed: int,
    t0: float,
    extra_settings: dict[str, Any] | None = None,
    extra_counts: dict[str, int] | None = None,
) -> FinderResult:
    """Assemble a :class:`FinderResult` from responsibilities (D, ≥ 0) and directions (D bool: raising helps c)."""
    resp = resp.double().clamp_min(0.0)
    ins = torch.where(raise_helps, resp, torch.zeros_like(resp))
    exc = torch.where(~raise_helps, resp, torch.zeros_like(resp))
    samples = [
        {
            "index": int(m.indices[i]),
            "path": m.paths[i],
            "stored_pred": int(m.stored_preds[i]),
            "status": "already_correct" if bool(m.already_correct[i]) else "mistake",
        }
        for i in range(len(m))
    ]
    return FinderResult(
        method=finder.name,
        class_idx=m.class_idx,
        insufficient=_rows(resp, raise_helps, imp, finder.top),
        excessive=_rows(resp, ~raise_helps, imp, finder.top),
        scores=resp,
        insufficient_scores=ins,
        excessive_scores=exc,
        imp=imp,
        counts={
            "mistakes": len(m),
            "corrected": None,
            "never_flipped": None,
            "already_correct": int(m.already_correct.sum()),
            **(extra_counts or {}),
        },
        never_flipped=[],
        settings={**finder.settings(), **(extra_settings or {}), "seed": seed},
        split=m.split,
        score_name=finder.score_name,
        imp_reference=imp_ref,
        samples=samples,
        wall_seconds=time.perf_counter() - t0,
    )


@register_finder("contribution")
class ContributionFinder(Finder):
    """Drop in the class-c logit contribution W[c,n]·f_n on mistakes versus correct class-c samples.

    ``Δ_n = W[c,n] · (mean_{mistakes} f_n − mean_{correct class c} f_n)``, the change of neuron n's
    contribution to the class-c logit between the class's mistakes and its correctly classified
    samples (in logit units). A neuron is responsible when Δ_n < 0 (it gives class c less evidence on
    the mistakes), with responsibility ``−Δ_n``. Its list follows from where the activation moved:
    lower on the mistakes (so W[c,n] > 0) → *insufficient* (a class-c feature is missing); higher
    (so W[c,n] < 0) → *excessive* (a feature that opposes c is present). Neurons with Δ_n ≥ 0 help
    class c more on the mistakes than on the correct samples and are not listed.

    (A plain sign split, Δ < 0 → insufficient and Δ > 0 → excessive, would list neurons that help
    class c as "excessive" and put present, c-opposing features among the insufficient ones; the
    direction above is the counterfactual's: insufficient = add activation, excessive = remove it.)
    When the class has no correctly classified sample, the reference activation is 0 (Δ_n then
    reduces to the mean contribution W[c,n]·f_n on the mistakes).
    """

    score_name = "-Δ contribution"

    def find(
        self,
        decision: nn.Linear,
        features: FeatureSet,
        class_idx: int,
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> FinderResult:
        t0 = time.perf_counter()
        m = select_mistakes(decision, features, class_idx)
        wc = decision.weight.detach().double().cpu()[m.class_idx]
        mistake_mean = m.features.double().mean(dim=0)
        has_correct = m.correct_features.shape[0] > 0
        ref_mean = m.correct_features.double().mean(dim=0) if has_correct else torch.zeros_like(mistake_mean)
        delta_f = mistake_mean - ref_mean
        delta = wc * delta_f
        imp, imp_ref = self.imp_for(decision, m)
        return _result(
            self,
            m,
            -delta,
            delta_f < 0,
            imp,
            imp_ref,
            seed,
            t0,
            {"reference": "correct_class_mean" if has_correct else "zero"},
            # a count of this split, not a setting: records keep settings identical across seeds
            extra_counts={"correct": int(m.correct_features.shape[0])},
        )


@register_finder("gradient")
class GradientFinder(Finder):
    """Gradient × activation of the true-class log-probability, averaged over the class's mistakes.

    Per mistake i: ``g_i = ∂ log p_c / ∂f = W[c] − Σ_k p_{i,k} W[k]`` (D) and the attribution
    ``a_{i,n} = g_{i,n} · (f_{i,n} − b_n)`` with the baseline b (``baseline="zero"``: plain gradient ×
    activation; ``"class_mean"``: the mean feature of the correctly classified class-c samples).
    Why the log-probability: on a linear decision layer the gradient of the class-c *logit* is W[c]
    for every input, so its gradient × activation is just W[c,n]·f_n (the ``contribution`` baseline);
    the log-probability's gradient also weighs the competing classes by how likely each one is for
    this sample, which is what makes the prediction wrong.

    ``ā_n`` = mean over mistakes. Responsible when ā_n < 0 (the neuron's deviation from the baseline
    lowers log p_c), responsibility ``−ā_n``. Direction: mean (f − b) < 0 on the mistakes →
    *insufficient*, ≥ 0 → *excessive*. With the zero baseline and non-negative (post-ReLU) features,
    every responsible neuron is excessive: gradient × activation cannot see a missing feature; use
    ``baseline="class_mean"`` for both lists.
    """

    score_name = "-grad×act"

    def __init__(
        self, *, baseline: str = "zero", top: int = 30, ref: bool = False, device: str | torch.device = "cpu"
    ) -> None:
        super().__init__(top=top, ref=ref, device=device)
        if baseline not in ("zero", "class_mean"):
            raise UserError(f"baseline must be 'zero' or 'class_mean', got {baseline!r}.")
        self.baseline = baseline

    def find(
        self,
        decision: nn.Linear,
        features: FeatureSet,
        class_idx: int,
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> FinderResult:
        t0 = time.perf_counter()
        m = select_mistakes(decision, features, class_idx)
        W = decision.weight.detach().double().cpu()
        b = (
            decision.bias.detach().double().cpu()
            if decision.bias is not None
            else torch.zeros(W.shape[0], dtype=torch.float64)
        )
        f = m.features.double()
        p = F.softmax(f @ W.T + b, dim=1)  # M×K
        g = W[m.class_idx].unsqueeze(0) - p @ W  # M×D, ∂ log p_c / ∂f
        if self.baseline == "class_mean" and m.correct_features.shape[0] > 0:
            base = m.correct_features.double().mean(dim=0)
        else:
            base = torch.zeros(f.shape[1], dtype=torch.float64)
        dev = f - base
        attribution = (g * dev).mean(dim=0)
        imp, imp_ref = self.imp_for(decision, m)
        return _result(self, m, -attribution, dev.mean(dim=0) < 0, imp, imp_ref, seed, t0)


@register_finder("random")
class RandomFinder(Finder):
    """Seeded random ranking of the neurons (a control: chance-level precision@k)."""

    score_name = "random"

    def find(
        self,
        decision: nn.Linear,
        features: FeatureSet,
        class_idx: int,
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> FinderResult:
        t0 = time.perf_counter()
        m = select_mistakes(decision, features, class_idx)
        D = m.features.shape[1]
        rng = np.random.default_rng(seed)
        resp = torch.from_numpy(rng.random(D) + 1e-12)  # strictly positive: every neuron is listed somewhere
        raise_helps = torch.from_numpy(rng.random(D) < 0.5)
        imp, imp_ref = self.imp_for(decision, m)
        return _result(self, m, resp, raise_helps, imp, imp_ref, seed, t0)


__all__ = ["ContributionFinder", "GradientFinder", "RandomFinder"]
