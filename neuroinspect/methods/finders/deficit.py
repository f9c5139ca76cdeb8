"""``margin-deficit``: an activation-aware finder, beside NeuroInspect's faithful counterfactual.

Why it exists: the counterfactual finder optimizes an additive shift w_i on each mistake's pooled
feature, and the gradient that drives w_i, ∂CE/∂f = −(W[c] − Σ_k p_k W[k]), does not depend on the
feature at all. On a **two-class** task every mistake's shift is therefore parallel to W[c] − W[k]
(cosine ≥ 0.99999 on the bundled benchmark) and every mistake votes the same top 5: the lists rank
decision weights, not what the mistakes look like. (Faithful to the method; see
:mod:`neuroinspect.methods.finders.counterfactual`.)

This finder takes the counterfactual of mistake i to be the class's own prototype, the mean pooled
feature μ⁺ of the correctly classified class-c samples of the split, and splits the margin gap that
closes, neuron by neuron:

    deficit_n = mean over the mistakes of d_i,n · (μ⁺_n − f_i,n),   d_i = W[c] − W[k_i]

with k_i the mistake's predicted class (logit units; Σ_n deficit_n is the mean margin gain of moving
every mistake onto μ⁺). A neuron is responsible when deficit_n > 0 (responsibility = deficit_n). Its
list follows from where the activation must move: μ⁺_n > mean f_n (the mistakes lack it) →
*insufficient*; otherwise (the mistakes carry a feature the correct samples do not) → *excessive*.
It needs no step size, no cap and no vote, and uses the class labels and the model's predictions
only (no group labels). When class c has no correctly classified sample, μ⁺ falls back to 0 and the
score to the mean margin contribution −d_i,n·f_i,n.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.finders.base import Finder, FinderResult, register_finder, select_mistakes
from neuroinspect.methods.finders.baselines import _result


@register_finder("margin-deficit")
class MarginDeficitFinder(Finder):
    """Activation-aware: each neuron's share of the margin gap between the mistakes and the class's correct samples."""

    score_name = "margin deficit"

    def find(
        self,
        decision: nn.Linear,
        features: FeatureSet,
        class_idx: int,
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> FinderResult:
        """Rank the neurons by ``deficit_n`` (module docstring); deterministic (``seed`` is recorded only)."""
        t0 = time.perf_counter()
        m = select_mistakes(decision, features, class_idx)
        W = decision.weight.detach().double().cpu()
        f = m.features.double()  # M×D
        wrong = m.stored_preds.long().clamp(0, W.shape[0] - 1)
        d = W[m.class_idx].unsqueeze(0) - W[wrong]  # M×D
        has_correct = m.correct_features.shape[0] > 0
        proto = (
            m.correct_features.double().mean(dim=0)
            if has_correct
            else torch.zeros(f.shape[1], dtype=torch.float64)
        )
        deficit = (d * (proto.unsqueeze(0) - f)).mean(dim=0)
        raise_helps = proto > f.mean(dim=0)
        imp, imp_ref = self.imp_for(decision, m)
        return _result(
            self,
            m,
            deficit,
            raise_helps,
            imp,
            imp_ref,
            seed,
            t0,
            {"prototype": "correct_class_mean" if has_correct else "zero"},
            extra_counts={"correct": int(m.correct_features.shape[0])},
        )


__all__ = ["MarginDeficitFinder"]
