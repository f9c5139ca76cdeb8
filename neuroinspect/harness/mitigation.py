"""Mitigation results: test metrics before and after an edit, the edited checkpoint, the result record.

- :func:`measure`: accuracy, class-c, worst-class, worst-group and train-weighted accuracy (with
  bootstrap intervals) of a decision layer on cached test features.
- :func:`save_edited_checkpoint`: the original checkpoint's weights with the decision layer replaced.
- :func:`mitigation_record`: a validated ``task="mitigation"`` record whose ``metrics`` hold
  ``before`` / ``after`` blocks (the leaderboard's gain columns are ``after − before``) and whose
  ``config`` holds every setting of the edit (editor hyperparameters, neurons, γ, λ3, variant,
  whether group labels were used).
- :func:`format_mitigation_table`: the before / after / gain table the ``edit`` command prints.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuroinspect.harness.checkpoint import Checkpoint, save_checkpoint
from neuroinspect.harness.features import FeatureSet
from neuroinspect.harness.metrics import accuracy_block, classification_metrics
from neuroinspect.harness.records import make_record
from neuroinspect.runtime import Provenance

#: ``Editor.settings()["select"]`` → the leaderboard's ``config.selection`` vocabulary.
SELECTION_NAMES = {"acc": "val_acc", "worst_class": "val_worst_class_acc"}


@torch.no_grad()
def decision_logits(decision: nn.Linear, features: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """N×K logits of ``decision`` on N×D features, in float32 on the CPU (the layer is not modified)."""
    layer = copy.deepcopy(decision).float().cpu()
    feats = features.float().cpu()
    if len(feats) == 0:
        return torch.zeros(0, layer.out_features)
    return torch.cat([layer(feats[i : i + chunk]) for i in range(0, len(feats), chunk)])


def measure(
    decision: nn.Linear,
    test: FeatureSet,
    class_idx: int | None,
    train_group_counts: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Metrics of ``decision`` on the cached ``test`` features (N×D), with bootstrap intervals.

    Returns :func:`~neuroinspect.harness.metrics.classification_metrics`'s dict: ``test_acc``,
    ``class_acc`` (of ``class_idx``), ``worst_class_acc``, ``worst_group_acc`` (``None`` without
    groups), ``mean_acc_train_weighted`` (test group accuracies weighted by ``train_group_counts``,
    the Waterbirds / GroupDRO convention; ``None`` without them), per-class and per-group
    accuracies and ``ci`` ({metric: [lo, hi]}).
    """
    logits = decision_logits(decision, test.features)
    num_groups = None
    if test.groups is not None:
        num_groups = int(test.meta.get("num_groups") or 0) or None
        if num_groups is None and (test.groups >= 0).any():
            num_groups = int(test.groups.max()) + 1
        if (
            train_group_counts is not None
            and num_groups is not None
            and len(train_group_counts) != num_groups
        ):
            num_groups = max(num_groups, len(train_group_counts))
    return classification_metrics(
        logits,
        test.labels,
        groups=test.groups,
        num_classes=int(decision.out_features),
        num_groups=num_groups,
        class_idx=class_idx,
        train_group_counts=list(train_group_counts)
        if train_group_counts is not None and test.groups is not None
        else None,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
    )


def save_edited_checkpoint(
    path: str | Path,
    checkpoint: Checkpoint,
    decision: nn.Linear,
    *,
    editor: str,
    neurons: Sequence[int],
    class_idx: int,
    settings: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``checkpoint``'s model with its decision layer replaced by ``decision`` (atomically).

    The backbone weights (BatchNorm statistics included) are the original ones, bit for bit. The
    metadata keeps the original dataset, classes and training config, and adds ``extra.edited_from``
    (the original file's sha256), ``editor``, ``neurons``, ``class_idx`` and the edit's settings.
    ``metrics``: stored as the checkpoint's metrics (e.g. the test metrics after the edit).
    """
    surface = copy.deepcopy(checkpoint.surface).cpu()
    target = surface.decision
    if tuple(target.weight.shape) != tuple(decision.weight.shape):
        raise ValueError(
            f"decision layer of shape {tuple(decision.weight.shape)} does not fit {tuple(target.weight.shape)}"
        )
    with torch.no_grad():
        target.weight.copy_(decision.weight.detach().to(target.weight.dtype).cpu())
        if target.bias is not None and decision.bias is not None:
            target.bias.copy_(decision.bias.detach().to(target.bias.dtype).cpu())
    extra = {
        **checkpoint.extra,
        "edited_from": checkpoint.sha256,
        "edited_from_path": str(checkpoint.path) if checkpoint.path else None,
        "editor": editor,
        "neurons": [int(n) for n in neurons],
        "class_idx": int(class_idx),
        "edit_settings": dict(settings or {}),
    }
    return save_checkpoint(
        path,
        surface,
        checkpoint.classes,
        checkpoint.dataset,
        dataset_params=checkpoint.dataset_params,
        train_config=checkpoint.train_config,
        metrics=dict(metrics or {}),
        extra=extra,
    )


def _metric_block(metrics: Mapping[str, Any]) -> dict[str, Any]:
    block = accuracy_block(metrics)
    block["per_class_acc"] = metrics.get("per_class_acc")
    block["group_acc"] = metrics.get("group_acc")
    return block


def mitigation_record(
    result: Any,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    dataset: str,
    model: str,
    provenance: Provenance | Mapping[str, Any],
    finder: str = "manual",
    selector: str | None = None,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    gamma_rule: str | None = None,
    run_id: str | None = None,
    dataset_fingerprint: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A validated ``task="mitigation"`` record for an :class:`~neuroinspect.methods.editors.EditResult`.

    ``before`` / ``after``: :func:`measure` dicts of the original and the edited layer on the same
    test features. ``finder``: the finder that chose the neurons (``"manual"`` when a person did);
    ``selector``: the selector that picked them from the finder's candidates (added to ``method``).
    ``config``: extra settings (dataset parameters, checkpoint, transform, ...). ``gamma_rule``:
    ``"auto"`` when γ came from the §2.5 heuristic: the record's ``config.gamma`` is then ``"auto"``
    (a setting, the same on every seed) and the value used goes to ``metrics.gamma_used``.
    ``dataset_fingerprint``: :func:`neuroinspect.datasets.fingerprint.fingerprint_splits` of the
    splits the edit used (the record's ``dataset_fingerprint``).

    ``method`` = ``{"editor": ..., "finder": ...}``; ``metrics`` = ``before``, ``after`` (the accuracy
    keys, ``macro_acc``, intervals, per-class and per-group accuracies), ``selected_epoch``,
    ``val_before`` / ``val_after``, ``gamma_used``, ``edit_info``; ``config`` = the editor's settings
    (``select`` written as ``selection``: ``val_acc`` / ``val_worst_class_acc``), ``neurons``,
    ``class_idx``, ``uses_group_labels`` and ``config``.
    """
    settings = dict(result.settings)
    select = settings.pop("select", None)
    cfg: dict[str, Any] = {"editor": result.editor, **settings}
    if select is not None:
        cfg["selection"] = SELECTION_NAMES.get(select, select)
    elif result.uses_group_labels:
        cfg["selection"] = "val_worst_group_acc"
    gamma_used = settings.get("gamma")
    if gamma_rule == "auto" and "gamma" in cfg:
        cfg["gamma"] = "auto"
    cfg.update(
        {
            "neurons": [int(n) for n in result.neurons],
            "class_idx": int(result.class_idx),
            "uses_group_labels": bool(result.uses_group_labels),
            "finder": finder,
        }
    )
    cfg.update(dict(config or {}))
    metrics = {
        "before": _metric_block(before),
        "after": _metric_block(after),
        "selected_epoch": result.selected_epoch,
        "val_before": dict(result.val_before),
        "val_after": dict(result.val_after),
        "gamma_used": gamma_used,
        "edit_info": dict(result.info),
        "edit_wall_seconds": round(float(result.wall_seconds), 3),
    }
    prov = provenance.as_dict() if isinstance(provenance, Provenance) else dict(provenance)
    return make_record(
        task="mitigation",
        dataset=dataset,
        model=model,
        method={"editor": result.editor, "finder": finder, **({"selector": selector} if selector else {})},
        seed=seed,
        metrics=metrics,
        config=cfg,
        provenance=prov,
        class_idx=int(result.class_idx),
        run_id=run_id,
        **({"dataset_fingerprint": dict(dataset_fingerprint)} if dataset_fingerprint else {}),
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _ci(m: Mapping[str, Any], key: str) -> str:
    iv = (m.get("ci") or {}).get(key)
    return "" if not iv else f"[{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]"


def format_mitigation_table(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    class_idx: int | None = None,
    class_names: Sequence[str] | None = None,
) -> str:
    """Before / after / gain (percentage points) of the accuracy metrics, with bootstrap intervals."""
    cname = ""
    if class_idx is not None:
        cname = f" (class {class_idx}{' ' + class_names[class_idx] if class_names and class_idx < len(class_names) else ''})"
    rows = [
        ("test accuracy", "test_acc"),
        (f"class accuracy{cname}", "class_acc"),
        ("worst-class accuracy", "worst_class_acc"),
        ("macro accuracy", "macro_acc"),
        ("worst-group accuracy", "worst_group_acc"),
        ("mean accuracy, train-weighted", "mean_acc_train_weighted"),
    ]
    level = after.get("ci_level") or before.get("ci_level") or 0.95
    with_ci = bool(before.get("ci") or after.get("ci"))
    ci_head = f"{round(100 * level)}% CI" if with_ci else ""
    width = 14 if with_ci else 0

    def cell(m: Mapping[str, Any], key: str) -> str:
        return f"{_pct(m.get(key)):>7}  {_ci(m, key) if with_ci else '':<{width}}"

    head = (
        f"{'metric (%)':<36} {'before':>7}  {ci_head:<{width}} {'after':>7}  {ci_head:<{width}} {'gain':>7}"
    )
    lines = [head, "-" * len(head)]
    for label, key in rows:
        b, a = before.get(key), after.get(key)
        if b is None and a is None:
            continue
        gain = f"{100 * (a - b):+.2f}" if a is not None and b is not None else "n/a"
        lines.append(f"{label[:36]:<36} {cell(before, key)} {cell(after, key)} {gain:>7}")
    return "\n".join(lines)


__all__ = [
    "SELECTION_NAMES",
    "decision_logits",
    "format_mitigation_table",
    "measure",
    "mitigation_record",
    "save_edited_checkpoint",
]
