"""NeuroInspect's decision-layer edit: cross-entropy plus the retaining-ratio regularizer (spec §5.2).

For a batch with pooled features f_i (B×D), logits z_i = W f_i + b and the same logits with the
neurons S knocked out, z̃_i = W (f_i ⊙ m) + b (m zero at S), let p_i = softmax(z_i) and
p̃_i = softmax(z̃_i). Gradients flow through both. The reference ships three variants:

- ``flowers_food`` (``scripts/edit_decision.py``): r_i = p_{i,c} / (p̃_{i,c} + 1e-9) for every
  sample of the batch, **L = CE + λ3 · ‖r − γ‖₂** (an L2 norm over the batch, not a mean of squares).
- ``waterbirds`` (``scripts/edit_decision_waterbird.py``): r̄ = the mean over all B×K entries of
  p / (p̃ + 1e-9), **L = CE + λ3 · |r̄ − γ|**; epochs are selected on val worst-class accuracy.
- ``metashift`` (``exp_spurious/edit_decision.py``): r_i = p_{i,c} / (p̃_{i,c} + 1e-15),
  **L = CE + ‖r − 1‖₂** (λ3 = 1 and γ = 1 unless given).

γ > 1 keeps class c only mildly dependent on S; the debug flow sets it from the knock-out
importance, γ = 1 + (min_{n∈S} imp[n] − 1)/3 (spec §2.5); the caller passes it (default 1.0).

The reference applies the ratio to every sample of the batch, not only to class c (spec bug 21).
That is kept as the default: the images of *other* classes that carry the spurious feature are
where S pushes probability towards c, so constraining them is part of the mitigation.
``ratio_samples="class"`` restricts the term to samples labelled c instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.methods.editors.base import EditContext, SelectionRule, TrainedEditor, register_editor

RATIO_SAMPLES = ("all", "class")


@dataclass(frozen=True)
class Variant:
    """One reference variant of the loss, with the reference script's training settings (``ref=True``)."""

    name: str
    #: "l2": ‖r − γ‖₂ over the batch of class-c ratios; "mean_abs": |mean of all B×K ratios − γ|
    reduction: str
    eps: float
    lambda3: float
    gamma: float
    select: str
    ref_hparams: dict[str, Any] = field(default_factory=dict)
    script: str = ""


VARIANTS: dict[str, Variant] = {
    "flowers_food": Variant(
        name="flowers_food",
        reduction="l2",
        eps=1e-9,
        lambda3=1e-2,
        gamma=1.0,
        select="acc",
        ref_hparams={
            "lr": 1e-3,
            "weight_decay": 0.0,
            "batch_size": 128,
            "epochs": 20,
            "schedule": "warmup",
            "patience": 5,
        },
        script="scripts/edit_decision.py",
    ),
    "waterbirds": Variant(
        name="waterbirds",
        reduction="mean_abs",
        eps=1e-9,
        lambda3=1e-2,
        gamma=1.0,
        select="worst_class",
        ref_hparams={
            "lr": 1e-4,
            "weight_decay": 1e-4,
            "batch_size": 32,
            "epochs": 20,
            "schedule": "constant",
            "patience": 5,
        },
        script="scripts/edit_decision_waterbird.py",
    ),
    "metashift": Variant(
        name="metashift",
        reduction="l2",
        eps=1e-15,
        lambda3=1.0,
        gamma=1.0,
        select="acc",
        ref_hparams={
            "lr": 1e-3,
            "weight_decay": 0.0,
            "batch_size": 16,
            "epochs": 20,
            "schedule": "warmup",
            "patience": None,
        },
        script="exp_spurious/edit_decision.py",
    ),
}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise UserError(f"unknown NeuroInspect loss variant {name!r}; choose one of {', '.join(VARIANTS)}.")
    return VARIANTS[name]


def retaining_ratio_term(
    logits: torch.Tensor,
    masked_logits: torch.Tensor,
    class_idx: int,
    *,
    variant: str = "flowers_food",
    gamma: float = 1.0,
    eps: float | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """The regularizer of ``variant`` (a scalar): ``‖r − γ‖₂`` or ``|r̄ − γ|`` (module docstring).

    ``logits`` / ``masked_logits``: B×K, the decision layer on f and on f ⊙ m. ``rows``: an optional
    B boolean mask of the samples the term covers (all by default); with no row selected it is 0.
    """
    v = get_variant(variant)
    eps = v.eps if eps is None else float(eps)
    p = torch.softmax(logits, dim=1)
    pt = torch.softmax(masked_logits, dim=1)
    if rows is not None:
        p, pt = p[rows], pt[rows]
        if p.shape[0] == 0:
            return logits.sum() * 0.0
    if v.reduction == "mean_abs":
        return ((p / (pt + eps)).mean() - gamma).abs()
    r = p[:, class_idx] / (pt[:, class_idx] + eps)
    return torch.linalg.vector_norm(r - gamma, ord=2)


def neuroinspect_loss(
    logits: torch.Tensor,
    masked_logits: torch.Tensor,
    labels: torch.Tensor,
    class_idx: int,
    *,
    variant: str = "flowers_food",
    gamma: float = 1.0,
    lambda3: float | None = None,
    eps: float | None = None,
    ratio_samples: str = "all",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, CE, ratio term)`` for one batch: L = CE(logits, labels) + λ3 · term (λ3: the variant's default if ``None``)."""
    v = get_variant(variant)
    lam = v.lambda3 if lambda3 is None else float(lambda3)
    ce = F.cross_entropy(logits, labels)
    rows = labels == class_idx if ratio_samples == "class" else None
    term = retaining_ratio_term(
        logits, masked_logits, class_idx, variant=variant, gamma=gamma, eps=eps, rows=rows
    )
    return ce + lam * term, ce, term


@register_editor("neuroinspect")
class NeuroInspectEditor(TrainedEditor):
    """NeuroInspect: CE plus the retaining-ratio term that limits class c's dependence on neurons S (variants flowers_food / waterbirds / metashift)."""

    def __init__(
        self,
        *,
        variant: str = "flowers_food",
        gamma: float | None = None,
        lambda3: float | None = None,
        eps: float | None = None,
        ratio_samples: str = "all",
        **train_kwargs: Any,
    ) -> None:
        v = get_variant(variant)
        self.variant = v.name
        self.gamma = float(gamma) if gamma is not None else v.gamma
        self.lambda3 = float(lambda3) if lambda3 is not None else v.lambda3
        self.eps = float(eps) if eps is not None else v.eps
        if ratio_samples not in RATIO_SAMPLES:
            raise UserError(
                f"ratio_samples must be one of {', '.join(RATIO_SAMPLES)}, got {ratio_samples!r}."
            )
        self.ratio_samples = ratio_samples
        if self.lambda3 < 0:
            raise UserError(f"lambda3 must be >= 0, got {self.lambda3}.")
        super().__init__(**train_kwargs)

    def default_hparams(self) -> dict[str, Any]:
        v = VARIANTS[self.variant]
        if self.ref:
            return {**v.ref_hparams, "select": v.select}
        return {**super().default_hparams(), "select": v.select}

    def selection_rule(self) -> SelectionRule:
        if self.ref and self.variant == "metashift":
            # save if val_acc > 0.7 and epoch > 1 and val_acc >= best; no early stopping
            return SelectionRule(
                metric=self.select, first_epoch=2, min_val_acc=0.7, ties="latest", patience=self.patience
            )
        return super().selection_rule()

    def objective(
        self, layer: nn.Linear, f: torch.Tensor, y: torch.Tensor, ctx: EditContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = layer(f)
        masked = layer(f * ctx.mask)
        loss, ce, term = neuroinspect_loss(
            logits,
            masked,
            y,
            ctx.class_idx,
            variant=self.variant,
            gamma=self.gamma,
            lambda3=self.lambda3,
            eps=self.eps,
            ratio_samples=self.ratio_samples,
        )
        return loss, {"ce": ce, "ratio": term}


__all__ = [
    "VARIANTS",
    "NeuroInspectEditor",
    "Variant",
    "get_variant",
    "neuroinspect_loss",
    "retaining_ratio_term",
]
