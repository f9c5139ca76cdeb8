"""Evaluation of a checkpoint on a dataset split: metrics with intervals, a terminal table, a record.

:func:`evaluate_checkpoint` checks that the checkpoint fits the dataset (name, class count, class
names), extracts the split's features once through the feature cache (with the single evaluation
transform of :mod:`neuroinspect.harness.transforms`, so finders later see exactly these
predictions), and scores them with :func:`classification_metrics`. The train-weighted group mean
uses the training split's group counts, stored in the checkpoint at training time (or counted from
the training split's metadata for older checkpoints).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from neuroinspect.datasets.base import ImageDataset
from neuroinspect.datasets.fingerprint import RECORD_FIELD as FINGERPRINT
from neuroinspect.datasets.fingerprint import fingerprint_splits
from neuroinspect.errors import CheckpointError, UserError
from neuroinspect.harness.checkpoint import Checkpoint, load_checkpoint
from neuroinspect.harness.features import FeatureCache, FeatureSet, extract_features
from neuroinspect.harness.metrics import classification_metrics, group_counts
from neuroinspect.harness.models import model_name
from neuroinspect.harness.records import make_record
from neuroinspect.harness.transforms import Transform, describe, eval_transform, transform_kind
from neuroinspect.runtime import Provenance


def checkpoint_eval_transform(ckpt: Checkpoint, dataset_name: str, ref: bool | None = None) -> Transform:
    """The evaluation transform for ``ckpt`` on ``dataset_name``: the reference's transforms when the
    checkpoint was trained with them (``paper`` preset) unless ``ref`` says otherwise."""
    if ref is None:
        ref = ckpt.extra.get("eval_transform") == "ref" or bool(
            ckpt.train_config.get("ref_transforms", False)
        )
    return eval_transform(
        ckpt.surface.data_config, transform_kind(dataset_name), ref=ref, dataset=dataset_name
    )


def check_compatible(ckpt: Checkpoint, dataset: ImageDataset, model: str | None = None) -> None:
    """A :class:`CheckpointError` naming the fix when ``ckpt`` does not fit ``dataset`` (or ``model``)."""
    where = ckpt.path or "the checkpoint"
    if model is not None and model.split(".")[0] != ckpt.surface.spec.arch:
        raise CheckpointError(
            f"{where} holds a {ckpt.surface.spec.arch}, not a {model}. Drop --model or pass --model {ckpt.surface.spec.arch}."
        )
    if ckpt.dataset != dataset.name:
        raise CheckpointError(
            f"{where} was trained on {ckpt.dataset!r}, not {dataset.name!r}. Pass --dataset {ckpt.dataset} or a matching checkpoint."
        )
    if ckpt.surface.num_classes != dataset.num_classes:
        raise CheckpointError(
            f"{where} has {ckpt.surface.num_classes} classes but {dataset.name}/{dataset.split} has {dataset.num_classes}. "
            "Use a checkpoint trained with the same dataset parameters (--param)."
        )
    for i, (a, b) in enumerate(zip(ckpt.classes, dataset.classes, strict=True)):
        if a != b:
            raise CheckpointError(
                f"class {i} of {where} is {a!r} but {dataset.name} calls it {b!r}: the class order differs. "
                "Use a checkpoint trained on this version of the dataset."
            )


def check_class_index(class_idx: int | None, classes: Sequence[str]) -> None:
    """A :class:`UserError` when ``class_idx`` is not a valid class of ``classes``."""
    if class_idx is None:
        return
    k = len(classes)
    if not 0 <= class_idx < k:
        shown = ", ".join(f"{i}={c}" for i, c in enumerate(list(classes)[:10])) + (", ..." if k > 10 else "")
        raise UserError(
            f"--class-idx {class_idx} is out of range: the model has {k} classes, 0..{k - 1} ({shown})."
        )


def _train_group_counts(
    ckpt: Checkpoint, dataset_name: str, root: str | Path | None, params: dict[str, Any], num_groups: int
) -> list[int] | None:
    stored = ckpt.extra.get("train_group_counts")
    if stored is not None and len(stored) == num_groups:
        return [int(c) for c in stored]
    from neuroinspect.datasets import get_dataset

    spec = get_dataset(dataset_name)
    if "train" not in spec.splits:
        return None
    train = spec.load(root, "train", None, **params)  # metadata only: no image is opened
    return group_counts(train.groups, num_groups) if train.groups is not None else None


def evaluate_checkpoint(
    ckpt: Checkpoint | str | Path,
    dataset_name: str | None = None,
    root: str | Path | None = None,
    split: str = "test",
    params: dict[str, Any] | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    class_idx: int | None = None,
    cache: FeatureCache | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    ref_transforms: bool | None = None,
    model: str | None = None,
    show_progress: bool = True,
) -> tuple[dict[str, Any], FeatureSet]:
    """Score ``ckpt`` on ``split`` of ``dataset_name`` (default: the checkpoint's dataset).

    ``params`` override the dataset parameters stored in the checkpoint. Features come from
    ``cache`` (default: :class:`FeatureCache` at ``$NEUROINSPECT_CACHE``). Returns the metrics dict of
    :func:`classification_metrics` (plus ``dataset``, ``split``, ``classes``, ``transform``) and the
    :class:`FeatureSet` (N×D features, N×K logits) that the finders and editors reuse.
    """
    from neuroinspect.datasets import get_dataset

    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt, map_location="cpu")
    dataset_name = dataset_name or ckpt.dataset
    spec = get_dataset(dataset_name)
    spec.check_split(split)
    if ckpt.dataset != dataset_name:
        raise CheckpointError(
            f"{ckpt.path or 'the checkpoint'} was trained on {ckpt.dataset!r}, not {dataset_name!r}. "
            f"Pass --dataset {ckpt.dataset} or a matching checkpoint."
        )
    merged = {**ckpt.dataset_params, **(params or {})}
    transform = checkpoint_eval_transform(ckpt, dataset_name, ref_transforms)
    dataset = spec.load(root, split, transform, **merged)
    check_compatible(ckpt, dataset, model)
    check_class_index(class_idx, ckpt.classes)
    if len(dataset) == 0:
        raise UserError(f"the {split} split of {dataset_name} is empty; check --root and --param.")
    desc = describe(transform)
    if ckpt.sha256 is not None:
        cache = cache if cache is not None else FeatureCache()
        fs = cache.get_or_compute(
            ckpt.surface,
            ckpt.sha256,
            dataset,
            batch_size=batch_size,
            device=device,
            transform_desc=desc,
            show_progress=show_progress,
        )
    else:
        fs = extract_features(
            ckpt.surface, dataset, batch_size=batch_size, device=device, show_progress=show_progress
        )
    train_counts = None
    if fs.groups is not None and dataset.num_groups:
        train_counts = _train_group_counts(ckpt, dataset_name, root, merged, dataset.num_groups)
    metrics = classification_metrics(
        fs.logits,
        fs.labels,
        groups=fs.groups,
        num_classes=ckpt.surface.num_classes,
        num_groups=dataset.num_groups or None,
        class_idx=class_idx,
        train_group_counts=train_counts,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
    )
    metrics.update(
        {
            "dataset": dataset_name,
            "split": split,
            "classes": list(ckpt.classes),
            "group_names": dataset.group_names,
            "transform": desc,
            "train_group_counts": train_counts,
            "dataset_fingerprint": fingerprint_splits({split: dataset}),
        }
    )
    return metrics, fs


def evaluation_record(
    metrics: Mapping[str, Any],
    ckpt: Checkpoint,
    provenance: Provenance | Mapping[str, Any],
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    method: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A validated ``task="evaluation"`` result record for ``metrics`` of :func:`evaluate_checkpoint`."""
    prov = provenance.as_dict() if isinstance(provenance, Provenance) else dict(provenance)
    cfg = {
        "split": metrics.get("split"),
        "checkpoint": str(ckpt.path) if ckpt.path else None,
        "checkpoint_sha256": ckpt.sha256,
        "dataset_params": ckpt.dataset_params,
        "train_config": ckpt.train_config,
        "transform": metrics.get("transform"),
        "n_boot": metrics.get("n_boot"),
        "ci_level": metrics.get("ci_level"),
        "bootstrap": metrics.get("bootstrap"),
        **dict(config or {}),
    }
    keep = {k: v for k, v in metrics.items() if k not in ("classes", "transform", "dataset", FINGERPRINT)}
    return make_record(
        task="evaluation",
        dataset=str(metrics.get("dataset") or ckpt.dataset),
        model=model_name(ckpt.surface),
        method=dict(method or {"evaluator": "accuracy"}),
        seed=seed,
        metrics=keep,
        config=cfg,
        provenance=prov,
        class_idx=metrics.get("class_idx"),
        **({FINGERPRINT: metrics[FINGERPRINT]} if metrics.get(FINGERPRINT) else {}),
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:6.2f}%"


def _ci(metrics: Mapping[str, Any], key: str) -> str:
    iv = (metrics.get("ci") or {}).get(key)
    return "" if not iv else f"[{100 * iv[0]:6.2f}, {100 * iv[1]:6.2f}]"


def _interval(iv: Sequence[float] | None) -> str:
    return "" if not iv else f"[{100 * iv[0]:6.2f}, {100 * iv[1]:6.2f}]  "


def format_metrics_table(
    metrics: Mapping[str, Any], class_names: Sequence[str] | None = None, max_classes: int = 20
) -> str:
    """A plain-text table of the scalar metrics with their intervals, per-class and per-group rows.

    With more than ``max_classes`` classes only the worst ``max_classes`` are listed.
    """
    names = list(class_names or metrics.get("classes") or [])

    def cname(k: int) -> str:
        return f"{k} {names[k]}" if k < len(names) else str(k)

    level = metrics.get("ci_level", 0.95)
    head = f"{'metric':<42} {'value':>8}  {f'{round(100 * level)}% CI' if metrics.get('ci') else ''}"
    lines = [head, "-" * max(len(head), 70)]
    if metrics.get("ci"):
        lines.insert(
            0,
            f"intervals ({round(100 * level)}%): metrics above, percentile bootstrap of {metrics.get('n_boot')} "
            f"resamples of the test images, {metrics.get('bootstrap', 'stratified')} (each keeps its size); "
            "per class and per group, the Wilson score interval of its own accuracy",
        )

    def row(label: str, key: str) -> None:
        lines.append(f"{label:<42} {_pct(metrics.get(key)):>8}  {_ci(metrics, key)}")

    row("test accuracy", "test_acc")
    if metrics.get("class_idx") is not None:
        row(f"class accuracy ({cname(metrics['class_idx'])})"[:42], "class_acc")
    row(f"worst-class accuracy ({cname(metrics['worst_class'])})"[:42], "worst_class_acc")
    row("macro accuracy (mean over classes)", "macro_acc")
    if metrics.get("group_acc") is not None:
        gnames = metrics.get("group_names") or []
        wg = metrics.get("worst_group")
        label = (
            f"worst-group accuracy (g{wg}{' ' + gnames[wg] if wg is not None and wg < len(gnames) else ''})"
        )
        row(label[:42], "worst_group_acc")
        row("mean accuracy, train-weighted", "mean_acc_train_weighted")
    lines.append(f"{'samples':<42} {metrics.get('n', 0):>8}")
    per_class = metrics.get("per_class_acc") or []
    per_n = metrics.get("per_class_n") or [0] * len(per_class)
    order = list(range(len(per_class)))
    title = "per-class accuracy"
    if len(order) > max_classes:
        order = sorted((k for k in order if per_class[k] is not None), key=lambda k: (per_class[k], k))[
            :max_classes
        ]
        title = f"per-class accuracy (the {max_classes} worst of {len(per_class)} classes)"
    lines += ["", title]
    class_ci = metrics.get("per_class_ci") or []
    for k in order:
        iv = class_ci[k] if k < len(class_ci) else None
        lines.append(f"  {cname(k)[:40]:<40} {_pct(per_class[k]):>8}  {_interval(iv)}(n={per_n[k]})")
    if metrics.get("group_acc") is not None:
        gnames = metrics.get("group_names") or []
        lines += ["", "per-group accuracy"]
        group_ci = metrics.get("group_ci") or []
        for j, acc in enumerate(metrics["group_acc"]):
            label = f"g{j} {gnames[j]}" if j < len(gnames) else f"g{j}"
            iv = group_ci[j] if j < len(group_ci) else None
            lines.append(f"  {label[:40]:<40} {_pct(acc):>8}  {_interval(iv)}(n={metrics['group_n'][j]})")
    for note in metrics.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


__all__ = [
    "check_class_index",
    "check_compatible",
    "checkpoint_eval_transform",
    "evaluate_checkpoint",
    "evaluation_record",
    "format_metrics_table",
]
