"""Baseline editors, compared with NeuroInspect on the same cached features.

- ``cw``: retrain the decision layer with class-weighted CE (0.9 for the other classes, 1.0 for the
  edited class), the reference's ``--method cw`` ablation, without the ratio term (spec §5.2).
- ``focal``: focal loss (γ_f = 2) with the same class weights α, the reference's ``--method focal``.
- ``fc``: plain last-layer retraining with CE on the train features (λ3 = 0: the control for the term).
- ``random-neurons``: the ``neuroinspect`` editor on a seeded random S of the same size that avoids
  the given neurons (the control for the neuron choice).
- ``dfr``: Deep Feature Reweighting (Kirichenko et al., ICLR'23), DFR(Val): logistic regression on
  standardized features of group-balanced subsets of the *validation* split. It uses group labels,
  so it is an upper reference rather than a peer of the label-free editors.

The gradient-trained baselines reuse :class:`~neuroinspect.methods.editors.base.TrainedEditor`'s loop
(optimizer, schedule, batches, selection); each defines only its objective.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.editors.base import (
    EditContext,
    Editor,
    EditResult,
    TrainedEditor,
    _new_linear,
    check_edit_inputs,
    layer_accuracy,
    register_editor,
)
from neuroinspect.methods.editors.neuroinspect_editor import NeuroInspectEditor


def class_weights(
    num_classes: int, class_idx: int, other_weight: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """α ∈ R^K: ``other_weight`` for every class, 1.0 for ``class_idx`` (reference: 0.9; Waterbirds 0.95)."""
    w = torch.full((num_classes,), float(other_weight), device=device)
    w[class_idx] = 1.0
    return w


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: torch.Tensor | None = None,
    gamma: float = 2.0,
    detach_modulator: bool = False,
) -> torch.Tensor:
    """mean_i −α_{y_i} (1 − p_{y_i})^γ log p_{y_i} (Lin et al.), B×K logits and B labels → a scalar.

    ``detach_modulator=True`` treats (1 − p)^γ as a constant in the backward pass, as the reference's
    ``FocalLoss`` does (it builds p_t from ``logpt.data``); the loss value is the same.
    """
    logp = torch.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).view(-1)
    pt = logp.exp()
    if detach_modulator:
        pt = pt.detach()
    if alpha is not None:
        logp = logp * alpha.to(logits.device)[labels]
    return (-((1.0 - pt) ** gamma) * logp).mean()


@register_editor("cw")
class ClassWeightedEditor(TrainedEditor):
    """Class-weighted CE retraining of the decision layer (0.9 others / 1.0 the edited class), no neuron term."""

    uses_neurons = False

    def __init__(self, *, other_weight: float = 0.9, **train_kwargs: Any) -> None:
        self.other_weight = float(other_weight)
        if self.other_weight <= 0:
            raise UserError(f"other_weight must be > 0, got {self.other_weight}.")
        super().__init__(**train_kwargs)

    def objective(
        self, layer: nn.Linear, f: torch.Tensor, y: torch.Tensor, ctx: EditContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = layer(f)
        w = class_weights(ctx.num_classes, ctx.class_idx, self.other_weight, logits.device)
        loss = F.cross_entropy(logits, y, weight=w)
        return loss, {"ce": loss}


@register_editor("focal")
class FocalEditor(TrainedEditor):
    """Focal-loss retraining of the decision layer (γ_f = 2, α = 0.9 others / 1.0 the edited class), no neuron term."""

    uses_neurons = False

    def __init__(self, *, focal_gamma: float = 2.0, other_weight: float = 0.9, **train_kwargs: Any) -> None:
        self.focal_gamma = float(focal_gamma)
        self.other_weight = float(other_weight)
        if self.focal_gamma < 0 or self.other_weight <= 0:
            raise UserError("focal_gamma must be >= 0 and other_weight > 0.")
        super().__init__(**train_kwargs)

    def objective(
        self, layer: nn.Linear, f: torch.Tensor, y: torch.Tensor, ctx: EditContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = layer(f)
        alpha = class_weights(ctx.num_classes, ctx.class_idx, self.other_weight, logits.device)
        loss = focal_loss(logits, y, alpha, self.focal_gamma, detach_modulator=self.ref)
        return loss, {"ce": F.cross_entropy(logits.detach(), y)}


@register_editor("fc")
class RetrainEditor(TrainedEditor):
    """Plain last-layer retraining with CE on the train features (no neuron term; the λ3 = 0 control)."""

    uses_neurons = False

    def __init__(self, *, reinit: bool = False, **train_kwargs: Any) -> None:
        self.reinit = bool(reinit)
        super().__init__(**train_kwargs)

    def fit(
        self,
        decision: nn.Linear,
        train: FeatureSet,
        val: FeatureSet,
        class_idx: int,
        neurons: Sequence[int],
        *,
        seed: int = 0,
        **kw: Any,
    ) -> EditResult:
        if self.reinit:
            # nn.Linear's default initialisation, drawn from a seeded generator
            gen = torch.Generator().manual_seed(int(seed) + 1)
            bound = 1.0 / math.sqrt(decision.in_features)
            w = (torch.rand(decision.weight.shape, generator=gen) * 2 - 1) * bound
            b = (torch.rand(decision.out_features, generator=gen) * 2 - 1) * bound
            decision = _new_linear(decision, w, b if decision.bias is not None else None)
        return super().fit(decision, train, val, class_idx, neurons, seed=seed, **kw)

    def objective(
        self, layer: nn.Linear, f: torch.Tensor, y: torch.Tensor, ctx: EditContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = F.cross_entropy(layer(f), y)
        return loss, {"ce": loss}


@register_editor("random-neurons")
class RandomNeuronsEditor(NeuroInspectEditor):
    """The NeuroInspect edit on a seeded random neuron set of the same size, avoiding the given neurons (a control)."""

    def __init__(self, *, neuron_seed: int | None = None, **kwargs: Any) -> None:
        self.neuron_seed = None if neuron_seed is None else int(neuron_seed)
        super().__init__(**kwargs)

    def resolve_neurons(self, num_features: int, neurons: list[int], seed: int) -> list[int]:
        return random_neurons(
            num_features, neurons, self.neuron_seed if self.neuron_seed is not None else seed
        )


def random_neurons(
    num_features: int, exclude: Sequence[int], seed: int, size: int | None = None
) -> list[int]:
    """``size`` (default ``len(exclude)``) distinct neurons drawn uniformly from 0..D-1 minus ``exclude``, sorted."""
    size = len(exclude) if size is None else int(size)
    pool = np.setdiff1d(np.arange(num_features), np.asarray(list(exclude), dtype=np.int64))
    if size > len(pool):
        raise UserError(
            f"cannot draw {size} random neurons outside the {len(exclude)} given ones: the layer has only {num_features} inputs."
        )
    rng = np.random.default_rng(seed)
    return sorted(int(n) for n in rng.choice(pool, size=size, replace=False))


# -- DFR ----------------------------------------------------------------------------------------------

DFR_C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


def _sklearn_penalty_kwargs(penalty: str) -> dict[str, Any]:
    """scikit-learn >= 1.8 spells the penalty as ``l1_ratio``; older versions as ``penalty``."""
    import sklearn

    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        return {"l1_ratio": 1.0 if penalty == "l1" else 0.0}
    return {"penalty": penalty}


def _balanced_subset(candidates: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices from ``candidates`` with the same number (the smallest group's size) from every present group."""
    present = [candidates[groups[candidates] == g] for g in np.unique(groups[candidates])]
    m = min(len(p) for p in present)
    return np.concatenate([rng.permutation(p)[:m] for p in present])


def _worst_group_acc(preds: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    return float(min((preds[groups == g] == labels[groups == g]).mean() for g in np.unique(groups)))


class _Standardizer:
    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


@register_editor("dfr")
class DFREditor(Editor):
    """Deep Feature Reweighting (DFR-Val): group-balanced logistic regression on validation features; uses group labels (upper reference)."""

    uses_group_labels = True
    uses_neurons = False

    def __init__(
        self,
        *,
        penalty: str = "l1",
        C: float | None = None,
        c_grid: Sequence[float] = DFR_C_GRID,
        num_retrains: int = 20,
        max_iter: int = 1000,
    ) -> None:
        if penalty not in ("l1", "l2"):
            raise UserError(f"dfr penalty must be 'l1' or 'l2', got {penalty!r}.")
        self.penalty = penalty
        self.C = None if C is None else float(C)
        self.c_grid = [float(c) for c in c_grid]
        self.num_retrains = int(num_retrains)
        self.max_iter = int(max_iter)
        if (
            self.num_retrains < 1
            or not self.c_grid
            or any(c <= 0 for c in self.c_grid)
            or (self.C is not None and self.C <= 0)
        ):
            raise UserError("dfr needs num_retrains >= 1 and positive C values.")

    def _fit(
        self, x: np.ndarray, y: np.ndarray, C: float, num_classes: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logistic regression on standardized ``x``; returns (K×D weights, K biases) in that space."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
        if missing:
            raise UserError(
                f"dfr: class {missing[0]} has no sample in the group-balanced validation subset; "
                "DFR needs every class in every balanced draw (use a validation split that covers all groups and classes)."
            )
        if num_classes == 2:
            solver = "liblinear"
        else:
            solver = "saga" if self.penalty == "l1" else "lbfgs"
        model = LogisticRegression(
            C=C,
            solver=solver,
            max_iter=self.max_iter,
            random_state=seed,
            **_sklearn_penalty_kwargs(self.penalty),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model.fit(x, y)
        if num_classes == 2:
            w = model.coef_[0]
            b = float(model.intercept_[0])
            # symmetric two-logit form: softmax([-z/2, z/2]) equals the logistic probability of z
            return np.stack([-w / 2, w / 2]), np.array([-b / 2, b / 2])
        return model.coef_.copy(), model.intercept_.copy()

    def edit(
        self,
        decision: nn.Linear,
        train: FeatureSet,
        val: FeatureSet,
        class_idx: int,
        neurons: Sequence[int],
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> EditResult:
        from neuroinspect.runtime import progress

        t0 = time.perf_counter()
        check_edit_inputs(decision, train, val, class_idx, neurons, need_neurons=False, editor=self.name)
        if val.groups is None or (val.groups < 0).any():
            ds = val.meta.get("dataset", "this dataset")
            raise UserError(
                f"editor 'dfr' needs group labels on the validation split, but {ds} has none. "
                "Use a dataset with groups (e.g. spurious-shapes, waterbirds) or an editor without group labels "
                "(neuroinspect, cw, focal, fc)."
            )
        K = int(decision.out_features)
        x_val = val.features.double().numpy()
        y_val = val.labels.numpy().astype(np.int64)
        g_val = val.groups.numpy().astype(np.int64)
        rng = np.random.default_rng(seed)
        history: list[dict[str, Any]] = []

        C = self.C
        if C is None:
            # DFR's tuning: half of val (group-balanced) to fit, the other half to score worst-group accuracy
            idx = rng.permutation(len(x_val))
            held, fit_pool = idx[: len(idx) // 2], idx[len(idx) // 2 :]
            fit_idx = _balanced_subset(fit_pool, g_val, rng)
            scaler = _Standardizer(x_val[fit_idx])
            scores = []
            for c in progress(self.c_grid, desc="dfr tune C", enabled=show_progress):
                w, b = self._fit(scaler(x_val[fit_idx]), y_val[fit_idx], c, K, seed)
                preds = (scaler(x_val[held]) @ w.T + b).argmax(axis=1)
                score = _worst_group_acc(preds, y_val[held], g_val[held])
                scores.append(score)
                history.append({"stage": "tune", "C": c, "held_out_worst_group_acc": score})
            C = self.c_grid[int(np.argmax(scores))]

        # DFR's evaluation: standardize with the train features, average the models of many balanced draws
        scaler = _Standardizer(train.features.double().numpy())
        ws, bs = [], []
        for i in progress(range(self.num_retrains), desc="dfr retrain", enabled=show_progress):
            sel = _balanced_subset(np.arange(len(x_val)), g_val, rng)
            w, b = self._fit(scaler(x_val[sel]), y_val[sel], C, K, seed + i)
            ws.append(w)
            bs.append(b)
            history.append({"stage": "retrain", "draw": i, "num_samples": int(len(sel))})
        w = np.mean(ws, axis=0)
        b = np.mean(bs, axis=0)
        # back to raw features: W((x − μ)/σ) + b = (W/σ) x + (b − W·(μ/σ))
        w_raw = w / scaler.std[None, :]
        b_raw = b - w @ (scaler.mean / scaler.std)
        out = _new_linear(decision, torch.from_numpy(w_raw).float(), torch.from_numpy(b_raw).float())
        before = layer_accuracy(copy.deepcopy(decision).float(), val.features.float(), val.labels)
        after = layer_accuracy(out.float(), val.features.float(), val.labels)
        info = {
            "C": C,
            "C_tuned": self.C is None,
            "seed": int(seed),
            "num_val": len(val),
            "standardized_with": "train features",
        }
        return EditResult(
            editor=self.name,
            decision=out,
            class_idx=int(class_idx),
            neurons=[],
            selected_epoch=None,
            history=history,
            settings=self.settings(),
            uses_group_labels=True,
            info=info,
            val_before=before,
            val_after=after,
            wall_seconds=time.perf_counter() - t0,
            notes=["dfr trains on the validation split, so its val_after is optimistic; compare on test"],
        )


__all__ = [
    "ClassWeightedEditor",
    "DFREditor",
    "FocalEditor",
    "RandomNeuronsEditor",
    "RetrainEditor",
    "class_weights",
    "focal_loss",
    "random_neurons",
]
