"""The editor interface: rewrite a classifier's decision layer to mitigate a false correlation.

Every editor implements one call, :meth:`Editor.edit`, with the same arguments (Captum's
``attribute`` style): the decision layer ``nn.Linear(D, K)``, the *cached* pooled features of the
train and validation splits (:class:`~neuroinspect.harness.features.FeatureSet`), the class ``c``
being debugged and the neurons ``S`` (indices into the layer's D inputs). The backbone is frozen and
was run in eval mode when the features were cached, so no BatchNorm statistic drifts and no gradient
reaches it (spec §5.1, bug 19). The result is an :class:`EditResult` holding a *new* layer; the
input layer is never modified.

Editors trained by gradient descent (NeuroInspect's retaining-ratio loss, class-weighted CE, focal
loss, plain retraining) share one training loop, :class:`TrainedEditor`; each supplies only its
objective. A new method is one file with ``@register_editor("name")`` on an :class:`Editor` subclass.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.editors.schedules import SCHEDULES, lr_schedule
from neuroinspect.registry import Registry
from neuroinspect.runtime import progress

SELECT_METRICS = ("acc", "worst_class")


@dataclass
class EditResult:
    """What an editor returns.

    - ``decision``: the edited ``nn.Linear(D, K)`` (a new module on the CPU, same dtype as the input).
    - ``neurons``: the neurons S the edit actually used (``random-neurons`` draws its own; empty for
      editors that do not use neurons).
    - ``selected_epoch``: the epoch whose weights were kept, counted from 1 (``None`` for closed-form editors, or when
      no epoch was eligible and the last one was kept; ``notes`` says so).
    - ``history``: one dict per epoch: ``epoch``, ``lr`` (last step), ``loss``, ``ce``, ``ratio``
      (the retaining-ratio term, ``None`` for editors without it), ``val_acc``,
      ``val_worst_class_acc``, ``eligible``, ``selected``. Closed-form editors log their own rows.
    - ``settings``: every hyperparameter used (resolved defaults included): the run's configuration.
    - ``info``: values derived while editing (the seed, split sizes, steps per epoch, whether it
      stopped early, a tuned regularization strength, ...): outcomes, not settings.
    - ``uses_group_labels``: whether group annotations were used (``dfr``: yes; an upper reference).
    - ``val_before`` / ``val_after``: validation accuracy and worst-class accuracy of the input layer
      and of the returned layer.
    """

    editor: str
    decision: nn.Linear
    class_idx: int
    neurons: list[int]
    selected_epoch: int | None
    history: list[dict[str, Any]]
    settings: dict[str, Any]
    uses_group_labels: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    val_before: dict[str, float] = field(default_factory=dict)
    val_after: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but the layer, as JSON-ready values."""
        return {
            "editor": self.editor,
            "class_idx": self.class_idx,
            "neurons": list(self.neurons),
            "selected_epoch": self.selected_epoch,
            "history": self.history,
            "settings": self.settings,
            "uses_group_labels": self.uses_group_labels,
            "info": self.info,
            "val_before": self.val_before,
            "val_after": self.val_after,
            "wall_seconds": round(self.wall_seconds, 3),
            "notes": list(self.notes),
        }


class Editor:
    """Base class. Subclasses set ``name`` (via :func:`register_editor`) and implement :meth:`edit`.

    Constructor arguments are the method's hyperparameters (keyword-only, with defaults); the call's
    arguments are the same for every method.
    """

    name: ClassVar[str] = ""
    #: whether the editor reads group annotations (it then needs a dataset with groups)
    uses_group_labels: ClassVar[bool] = False
    #: whether the editor reads the neuron set S (``cw``/``focal``/``fc``/``dfr`` do not)
    uses_neurons: ClassVar[bool] = True

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
        """Edit ``decision`` (``nn.Linear(D, K)``, not modified) for class ``class_idx``.

        ``train`` / ``val``: cached pooled features (N×D ``features``, N ``labels``, optional N
        ``groups``). ``neurons``: indices in 0..D-1 of the neurons responsible for the false
        correlation. Returns an :class:`EditResult` with a new layer.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The hyperparameters of this instance, recorded with every result."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and _is_plain(v)}

    @classmethod
    def hyperparameters(cls) -> list[str]:
        """The keyword arguments the constructor accepts (following ``**kwargs`` up the class hierarchy)."""
        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = list(inspect.signature(init).parameters.values())[1:]
            names.extend(
                p.name
                for p in params
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in names
            )
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return names


def _is_plain(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))


EDITORS: Registry[type[Editor]] = Registry("editor")


def register_editor(name: str, summary: str | None = None) -> Callable[[type[Editor]], type[Editor]]:
    """Class decorator: ``@register_editor("neuroinspect")``."""

    def deco(cls: type[Editor]) -> type[Editor]:
        cls.name = name
        return EDITORS.register(name, summary)(cls)

    return deco


# -- input validation --------------------------------------------------------------------------------


def check_edit_inputs(
    decision: nn.Linear,
    train: FeatureSet,
    val: FeatureSet,
    class_idx: int,
    neurons: Sequence[int],
    *,
    need_neurons: bool = True,
    editor: str = "",
) -> list[int]:
    """Validate the arguments of :meth:`Editor.edit`; returns S as a list of unique ints (input order).

    Raises :class:`UserError` naming the fix for a class or neuron index out of range, features of the
    wrong width (a feature cache of another model), empty splits or labels outside 0..K-1.
    """
    if not isinstance(decision, nn.Linear):
        raise UserError(f"editors rewrite an nn.Linear decision layer, got {type(decision).__name__}.")
    D, K = int(decision.in_features), int(decision.out_features)
    who = f"editor {editor!r}: " if editor else ""
    for split, fs in (("train", train), ("val", val)):
        if len(fs) == 0:
            raise UserError(
                f"{who}the {split} split has no samples; editing needs cached features of both train and val."
            )
        if fs.features.ndim != 2 or fs.features.shape[1] != D:
            raise UserError(
                f"{who}the {split} features have shape {tuple(fs.features.shape)} but the decision layer takes {D} inputs: "
                "the features were cached for another model. Recompute them for this checkpoint."
            )
        lo, hi = int(fs.labels.min()), int(fs.labels.max())
        if lo < 0 or hi >= K:
            raise UserError(
                f"{who}the {split} labels span {lo}..{hi} but the decision layer has {K} classes (0..{K - 1})."
            )
    if isinstance(class_idx, bool) or not 0 <= int(class_idx) < K:
        raise UserError(
            f"class index {class_idx} is out of range: the decision layer has {K} classes, 0..{K - 1}."
        )
    out: list[int] = []
    for n in neurons:
        n = int(n)
        if not 0 <= n < D:
            raise UserError(
                f"neuron index {n} is out of range: the decision layer has {D} input neurons, 0..{D - 1}."
            )
        if n not in out:
            out.append(n)
    if need_neurons and not out:
        raise UserError(
            f"{who}needs at least one neuron (pass --neurons N ..., e.g. from `neuroinspect debug`)."
        )
    return out


def neuron_mask(
    num_features: int, neurons: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """m ∈ {0, 1}^D: 1 everywhere except 0 at ``neurons`` (shape D, float32)."""
    m = torch.ones(num_features, device=device)
    if len(neurons):
        m[torch.as_tensor(list(neurons), dtype=torch.long, device=device)] = 0.0
    return m


@torch.no_grad()
def layer_accuracy(
    layer: nn.Linear, features: torch.Tensor, labels: torch.Tensor, chunk: int = 65536
) -> dict[str, float]:
    """Accuracy and worst-class accuracy (over classes present in ``labels``) of ``layer`` on N×D features."""
    preds = torch.cat([layer(features[i : i + chunk]).argmax(dim=1) for i in range(0, len(features), chunk)])
    labels = labels.to(preds.device)
    correct = (preds == labels).float()
    K = int(layer.out_features)
    per_class_n = torch.bincount(labels, minlength=K).float()
    per_class_c = torch.bincount(labels, weights=correct, minlength=K)
    present = per_class_n > 0
    class_acc = per_class_c[present] / per_class_n[present]
    return {"acc": float(correct.mean()), "worst_class_acc": float(class_acc.min())}


# -- the shared training loop ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionRule:
    """How an epoch's weights are chosen on the validation split (spec §5.3).

    - ``metric``: ``"acc"`` (overall val accuracy) or ``"worst_class"`` (worst per-class val accuracy).
    - ``first_epoch``: how many initial epochs are never eligible (0 by default; the reference never
      keeps its epoch 0, i.e. the first epoch: 1). ``eligible`` takes the 0-based epoch index; results
      (history, ``selected_epoch``) count epochs from 1.
    - ``min_val_acc``: an epoch is eligible only if its val accuracy exceeds this (MetaShift ref: 0.7).
    - ``ties``: ``"secondary"`` keeps an epoch only if (metric, other metric) strictly improves;
      ``"latest"`` (the reference) keeps it when the metric is >= the best so far.
    - ``patience``: stop after this many eligible epochs without a new best (``None``: never).
    """

    metric: str = "acc"
    first_epoch: int = 0
    min_val_acc: float | None = None
    ties: str = "secondary"
    patience: int | None = 5

    def key(self, val: dict[str, float]) -> tuple[float, float]:
        if self.metric == "acc":
            return (val["acc"], val["worst_class_acc"])
        return (val["worst_class_acc"], val["acc"])

    def eligible(self, epoch: int, val: dict[str, float]) -> bool:
        return epoch >= self.first_epoch and (self.min_val_acc is None or val["acc"] > self.min_val_acc)

    def improves(self, val: dict[str, float], best: tuple[float, float] | None) -> bool:
        if best is None:
            return True
        key = self.key(val)
        return key[0] >= best[0] if self.ties == "latest" else key > best


@dataclass
class EditContext:
    """What an objective needs besides the batch: the class, the neuron set and its mask (D, on device)."""

    class_idx: int
    neurons: list[int]
    mask: torch.Tensor
    num_classes: int


class TrainedEditor(Editor):
    """An editor that fine-tunes the decision layer with Adam on cached features (spec §5).

    Subclasses implement :meth:`objective`. Hyperparameters left at ``None`` take the values of
    :meth:`default_hparams` (package defaults, or the reference script's values when ``ref=True``):
    Adam on the layer only, lr 1e-3, weight decay 0, batch 128, 20 epochs, the warm-up schedule over
    the whole run, selection of the best epoch on val accuracy with patience 5, the first epoch eligible.

    ``ref=True`` reproduces the reference's training quirks on cached features: the per-epoch
    sawtooth learning rate, the first epoch (MetaShift: the first two) never selected, ties going to the latest
    epoch, and the reference script's unset hyperparameters. It does *not* re-run the backbone in
    train mode (BatchNorm drift, bug 19): features come from the frozen eval-mode backbone.
    """

    def __init__(
        self,
        *,
        lr: float | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        epochs: int | None = None,
        schedule: str | None = None,
        patience: int | None = None,
        select: str | None = None,
        ref: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        self.ref = bool(ref)
        defaults = self.default_hparams()
        self.lr = float(lr if lr is not None else defaults["lr"])
        self.weight_decay = float(weight_decay if weight_decay is not None else defaults["weight_decay"])
        self.batch_size = int(batch_size if batch_size is not None else defaults["batch_size"])
        self.epochs = int(epochs if epochs is not None else defaults["epochs"])
        self.schedule = str(schedule if schedule is not None else defaults["schedule"])
        # patience: None -> default; 0 -> never stop early
        pat = patience if patience is not None else defaults["patience"]
        self.patience = None if pat is None or int(pat) <= 0 else int(pat)
        self.select = str(select if select is not None else defaults["select"])
        self._device = device
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise UserError(f"learning rate must be a positive number, got {self.lr}.")
        if self.weight_decay < 0:
            raise UserError(f"weight decay must be >= 0, got {self.weight_decay}.")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}.")
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}.")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
        if self.select not in SELECT_METRICS:
            raise UserError(
                f"unknown selection metric {self.select!r}; choose one of {', '.join(SELECT_METRICS)}."
            )

    # -- what subclasses customise ------------------------------------------------------------------
    def default_hparams(self) -> dict[str, Any]:
        """Values for hyperparameters left at ``None`` (may depend on ``self.ref``)."""
        return {
            "lr": 1e-3,
            "weight_decay": 0.0,
            "batch_size": 128,
            "epochs": 20,
            "schedule": "warmup",
            "patience": 5,
            "select": "acc",
        }

    def selection_rule(self) -> SelectionRule:
        """The epoch-selection rule; the reference's when ``ref=True`` (the first epoch never kept, ties to the latest)."""
        if self.ref:
            return SelectionRule(metric=self.select, first_epoch=1, ties="latest", patience=self.patience)
        return SelectionRule(metric=self.select, first_epoch=0, ties="secondary", patience=self.patience)

    def resolve_neurons(self, num_features: int, neurons: list[int], seed: int) -> list[int]:
        """The neuron set the edit uses (``random-neurons`` replaces it)."""
        return neurons

    def objective(
        self, layer: nn.Linear, f: torch.Tensor, y: torch.Tensor, ctx: EditContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch (B×D features ``f``, B labels ``y``) and its parts (``ce``, optionally ``ratio``)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return torch.device(self._device)

    # -- the call -----------------------------------------------------------------------------------
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
        return self.fit(decision, train, val, class_idx, neurons, seed=seed, show_progress=show_progress)

    def fit(
        self,
        decision: nn.Linear,
        train: FeatureSet,
        val: FeatureSet,
        class_idx: int,
        neurons: Sequence[int],
        *,
        seed: int = 0,
        show_progress: bool = True,
        train_batch_features: Callable[[torch.Tensor], torch.Tensor] | None = None,
        val_features: Callable[[], torch.Tensor] | None = None,
        measure_before: bool = True,
    ) -> EditResult:
        """:meth:`edit` with two hooks for measuring the cost of *not* caching (``benchmarks/editing.py``).

        ``train_batch_features(idx)``: B×D features of the train samples ``idx`` (B int64 row indices of
        ``train``) computed on the fly instead of read from ``train.features``. ``val_features()``:
        the N_val×D validation features, recomputed at every evaluation. Both must return tensors on
        this editor's device. Batches and results are identical to the cached path.
        ``measure_before=False`` skips scoring the input layer on val (``val_before`` stays empty), so
        that the validation split is scored once per epoch, as in the reference.
        """
        t0 = time.perf_counter()
        S = check_edit_inputs(
            decision, train, val, class_idx, neurons, need_neurons=self.uses_neurons, editor=self.name
        )
        D, K = int(decision.in_features), int(decision.out_features)
        S = self.resolve_neurons(D, S, seed) if self.uses_neurons else []
        device = self.device
        layer = copy.deepcopy(decision).to(device=device, dtype=torch.float32)
        for p in layer.parameters():
            p.requires_grad_(True)
        ctx = EditContext(class_idx=int(class_idx), neurons=S, mask=neuron_mask(D, S, device), num_classes=K)

        X = train.features.to(device=device, dtype=torch.float32) if train_batch_features is None else None
        Y = train.labels.to(device=device, dtype=torch.long)
        Yv = val.labels.to(device=device, dtype=torch.long)
        cached_val = val.features.to(device=device, dtype=torch.float32) if val_features is None else None

        def evaluate(lay: nn.Linear) -> dict[str, float]:
            feats = cached_val if cached_val is not None else val_features()  # type: ignore[misc]
            return layer_accuracy(lay, feats, Yv)

        N, B = len(train), self.batch_size
        L = math.ceil(N / B)
        lrs = lr_schedule(self.lr, L, self.epochs, self.schedule, self.ref)
        opt = torch.optim.Adam(layer.parameters(), lr=lrs[0], weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(int(seed))
        rule = self.selection_rule()

        val_before = evaluate(layer) if measure_before else {}
        history: list[dict[str, Any]] = []
        best_key: tuple[float, float] | None = None
        best_state: tuple[torch.Tensor, torch.Tensor | None] | None = None
        selected: int | None = None
        since_best = 0
        notes: list[str] = []
        step = 0
        for epoch in progress(range(self.epochs), desc=f"edit {self.name}", enabled=show_progress):
            perm = torch.randperm(N, generator=gen)
            sums = {
                "loss": torch.zeros((), device=device),
                "ce": torch.zeros((), device=device),
                "ratio": torch.zeros((), device=device),
            }
            has_ratio = False
            for t in range(L):
                idx = perm[t * B : (t + 1) * B]
                idx_dev = idx.to(device)
                f = X[idx_dev] if X is not None else train_batch_features(idx)  # type: ignore[misc]
                y = Y[idx_dev]
                for group in opt.param_groups:
                    group["lr"] = lrs[step]
                loss, parts = self.objective(layer, f, y, ctx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                n = float(len(idx))
                sums["loss"] += loss.detach() * n
                sums["ce"] += parts["ce"].detach() * n
                if "ratio" in parts:
                    has_ratio = True
                    sums["ratio"] += parts["ratio"].detach() * n
            v = evaluate(layer)
            row: dict[str, Any] = {
                "epoch": epoch + 1,  # counted from 1, as in training logs and on the console
                "lr": lrs[step - 1],
                "loss": float(sums["loss"]) / N,
                "ce": float(sums["ce"]) / N,
                "ratio": float(sums["ratio"]) / N if has_ratio else None,
                "val_acc": v["acc"],
                "val_worst_class_acc": v["worst_class_acc"],
                "eligible": rule.eligible(epoch, v),
                "selected": False,
            }
            history.append(row)
            if not row["eligible"]:
                continue
            if rule.improves(v, best_key):
                best_key = rule.key(v)
                best_state = _snapshot(layer)
                selected = epoch + 1
                since_best = 0
            else:
                since_best += 1
                if rule.patience is not None and since_best >= rule.patience:
                    notes.append(
                        f"stopped early after epoch {epoch + 1}: {rule.patience} eligible epochs without a better val {rule.metric}"
                    )
                    break
        for row in history:
            row["selected"] = row["epoch"] == selected
        if best_state is None:
            notes.append(
                f"no epoch was eligible for selection (first eligible epoch {rule.first_epoch + 1}"
                + (f", val acc > {rule.min_val_acc}" if rule.min_val_acc is not None else "")
                + "); kept the last epoch's weights"
            )
            best_state = _snapshot(layer)
        kept = selected if selected is not None else history[-1]["epoch"]
        val_after = {
            "acc": history[kept - 1]["val_acc"],
            "worst_class_acc": history[kept - 1]["val_worst_class_acc"],
        }
        out = _new_linear(decision, best_state[0], best_state[1])
        info = {
            "seed": int(seed),
            "steps_per_epoch": L,
            "epochs_run": len(history),
            "stopped_early": len(history) < self.epochs,
            "num_train": N,
            "num_val": len(val),
            "selection": {
                "metric": rule.metric,
                "first_epoch": rule.first_epoch,
                "min_val_acc": rule.min_val_acc,
                "ties": rule.ties,
            },
        }
        return EditResult(
            editor=self.name,
            decision=out,
            class_idx=int(class_idx),
            neurons=list(S),
            selected_epoch=selected,
            history=history,
            settings=self.settings(),
            uses_group_labels=self.uses_group_labels,
            info=info,
            val_before=val_before,
            val_after=val_after,
            wall_seconds=time.perf_counter() - t0,
            notes=notes,
        )


def _snapshot(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.weight.detach().clone(), None if layer.bias is None else layer.bias.detach().clone()


def _new_linear(template: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A fresh ``nn.Linear`` shaped like ``template`` holding ``weight`` (K×D) and ``bias`` (K)."""
    has_bias = template.bias is not None
    out = nn.Linear(template.in_features, template.out_features, bias=has_bias)
    with torch.no_grad():
        out.weight.copy_(weight.detach().to(out.weight.dtype).cpu())
        if has_bias:
            b = bias if bias is not None else torch.zeros(template.out_features)
            out.bias.copy_(b.detach().to(out.bias.dtype).cpu())
    return out.to(dtype=template.weight.dtype)


__all__ = [
    "EDITORS",
    "EditContext",
    "EditResult",
    "Editor",
    "SelectionRule",
    "TrainedEditor",
    "check_edit_inputs",
    "layer_accuracy",
    "neuron_mask",
    "register_editor",
]
