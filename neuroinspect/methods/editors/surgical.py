"""The ``surgical`` editor: change only the chosen neurons' columns of the decision layer.

Every gradient-trained editor (``neuroinspect``, ``cw``, ``focal``, ``fc``) retrains the whole K×D
layer with cross-entropy, and that retraining alone moves worst-group accuracy as much as the edit
does, whatever neurons it is given (README, "Debugging and mitigation"). This editor touches nothing
but the neurons S, so the neuron choice is all that can make it help or hurt.

It **partially mean-ablates** S: neuron n's contribution W[k, n]·a_n to each logit k becomes
s·W[k, n]·a_n + (1 − s)·W[k, n]·μ_n, with μ_n the neuron's mean activation over a split. That is

    W'[:, n] = s · W[:, n]                        for n ∈ S  (every other column bit-identical)
    b'       = b + (1 − s) · Σ_{n∈S} W[:, n] μ_n  (``bias="compensate"``; ``bias="keep"``: b' = b)

s = 1 is the original layer and s = 0 replaces S by constants (the information S carries is gone,
its average contribution stays); s < 0 reverses S's evidence around its mean, a counterweight for
the same shortcut carried, more weakly, by neurons outside S (the background's effect is spread over
many neurons). μ is the mean over ``mean_split``: ``"val"`` (default; the validation split has
balanced groups, so its mean is the neutral point; no labels are read) or ``"train"``.

s is chosen from ``strengths`` by the validation metric of the other editors (``select``: overall
accuracy, or worst-class accuracy), ties going to the weaker edit (the s closest to 1), so the edit
never lowers that validation metric; with ``prefixes`` it also chooses how many of S's first
neurons to edit (S is taken in the order given, e.g. a finder's ranking). It uses no group labels.
``rows="class"`` changes only class c's row of those columns (its dependence on S) and leaves the
other classes' use of S alone.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.editors.base import (
    SELECT_METRICS,
    Editor,
    EditResult,
    check_edit_inputs,
    layer_accuracy,
    register_editor,
)

STRENGTHS = (1.0, 0.75, 0.5, 0.25, 0.0, -0.25, -0.5, -0.75, -1.0)
BIAS_MODES = ("compensate", "keep")
ROW_MODES = ("all", "class")
MEAN_SPLITS = ("train", "val")


def ablate(
    decision: nn.Linear,
    neurons: Sequence[int],
    strength: float,
    mean_activation: torch.Tensor,
    *,
    bias: str = "compensate",
    rows: str = "all",
    class_idx: int | None = None,
) -> nn.Linear:
    """A new layer with S = ``neurons`` partially mean-ablated at keep-factor ``strength`` (module docstring).

    ``mean_activation``: (D,) μ. Entries outside S's columns (and, with ``rows="class"``, outside
    row ``class_idx``) are copied bit for bit; so is the bias with ``bias="keep"``.
    """
    if bias not in BIAS_MODES:
        raise UserError(f"surgical: bias must be one of {', '.join(BIAS_MODES)}, got {bias!r}.")
    if rows not in ROW_MODES:
        raise UserError(f"surgical: rows must be one of {', '.join(ROW_MODES)}, got {rows!r}.")
    out = nn.Linear(decision.in_features, decision.out_features, bias=decision.bias is not None)
    out = out.to(dtype=decision.weight.dtype)
    S = torch.as_tensor(sorted({int(n) for n in neurons}), dtype=torch.long)
    with torch.no_grad():
        W = decision.weight.detach().cpu().clone()
        out.weight.copy_(W)
        if decision.bias is not None:
            out.bias.copy_(decision.bias.detach().cpu())
        if S.numel() == 0 or strength == 1.0:
            return out
        row_idx = (
            torch.arange(W.shape[0])
            if rows == "all"
            else torch.as_tensor([int(class_idx if class_idx is not None else 0)])
        )
        cols = W[row_idx][:, S].double()  # (R, |S|)
        new_cols = (float(strength) * cols).to(W.dtype)
        block = out.weight[row_idx]
        block[:, S] = new_cols
        out.weight[row_idx] = block
        if bias == "compensate" and decision.bias is not None:
            mu = mean_activation.detach().double().cpu()[S]
            shift = (1.0 - float(strength)) * (cols @ mu)  # (R,)
            b = decision.bias.detach().cpu().double().clone()
            b[row_idx] += shift
            out.bias.copy_(b.to(out.bias.dtype))
    return out


@register_editor("surgical")
class SurgicalEditor(Editor):
    """Mean-ablate (or reverse) only the chosen neurons' decision weights, strength picked on val; no retraining."""

    def __init__(
        self,
        *,
        strengths: Sequence[float] = STRENGTHS,
        bias: str = "compensate",
        rows: str = "all",
        mean_split: str = "val",
        select: str = "acc",
        prefixes: Sequence[int] | None = None,
    ) -> None:
        self.strengths = sorted({float(s) for s in strengths}, key=lambda v: abs(v - 1.0))
        if not self.strengths or any(not -2.0 <= s <= 1.0 for s in self.strengths):
            raise UserError(
                "surgical: strengths must be keep-factors in [-2, 1], e.g. [1.0, 0.5, 0.0, -0.5]."
            )
        self.prefixes = None if prefixes is None else sorted({int(p) for p in prefixes})
        if self.prefixes is not None and (not self.prefixes or self.prefixes[0] < 1):
            raise UserError("surgical: prefixes must be positive neuron counts, e.g. [5, 10, 20, 40].")
        if bias not in BIAS_MODES:
            raise UserError(f"surgical: bias must be one of {', '.join(BIAS_MODES)}, got {bias!r}.")
        if rows not in ROW_MODES:
            raise UserError(f"surgical: rows must be one of {', '.join(ROW_MODES)}, got {rows!r}.")
        if mean_split not in MEAN_SPLITS:
            raise UserError(
                f"surgical: mean_split must be one of {', '.join(MEAN_SPLITS)}, got {mean_split!r}."
            )
        if select not in SELECT_METRICS:
            raise UserError(f"surgical: select must be one of {', '.join(SELECT_METRICS)}, got {select!r}.")
        self.bias = bias
        self.rows = rows
        self.mean_split = mean_split
        self.select = select

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
        t0 = time.perf_counter()
        S = check_edit_inputs(decision, train, val, class_idx, neurons, need_neurons=True, editor=self.name)
        source = train if self.mean_split == "train" else val
        mu = source.features.double().mean(dim=0)
        xv = val.features.float()
        yv = val.labels.long()
        before = layer_accuracy(_float(decision), xv, yv)
        key = "acc" if self.select == "acc" else "worst_class_acc"
        other = "worst_class_acc" if key == "acc" else "acc"
        history: list[dict[str, Any]] = []
        best: tuple[float, float] | None = None
        best_s, best_n = 1.0, len(S)
        sizes = [len(S)] if self.prefixes is None else [p for p in self.prefixes if p <= len(S)] or [len(S)]
        for n in sizes:  # fewest neurons first: ties keep the smaller edit
            for s in self.strengths:  # the weakest edit (s closest to 1) first, for the same reason
                layer = ablate(
                    decision, S[:n], s, mu, bias=self.bias, rows=self.rows, class_idx=int(class_idx)
                )
                v = layer_accuracy(_float(layer), xv, yv)
                history.append(
                    {
                        "neurons": n,
                        "strength": s,
                        "val_acc": v["acc"],
                        "val_worst_class_acc": v["worst_class_acc"],
                    }
                )
                score = (v[key], v[other])
                if best is None or score > best:
                    best, best_s, best_n = score, s, n
        if best_s == 1.0:
            best_n = len(S) if self.prefixes is None else sizes[0]
        S = S[:best_n]
        out = ablate(decision, S, best_s, mu, bias=self.bias, rows=self.rows, class_idx=int(class_idx))
        after = layer_accuracy(_float(out), xv, yv)
        for row in history:
            row["selected"] = row["strength"] == best_s and row["neurons"] == best_n
        return EditResult(
            editor=self.name,
            decision=out,
            class_idx=int(class_idx),
            neurons=list(S),
            selected_epoch=None,
            history=history,
            settings=self.settings(),
            info={
                "seed": int(seed),
                "strength": best_s,
                "neurons_edited": len(S),
                "num_val": len(val),
                "num_train": len(train),
            },
            val_before=before,
            val_after=after,
            wall_seconds=time.perf_counter() - t0,
            notes=[]
            if best_s < 1.0
            else ["no strength improved the validation metric: the layer is unchanged"],
        )


def _float(layer: nn.Linear) -> nn.Linear:
    return layer if layer.weight.dtype == torch.float32 else copy.deepcopy(layer).float()


__all__ = ["STRENGTHS", "SurgicalEditor", "ablate"]
