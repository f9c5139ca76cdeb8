"""Classifier training: seeded, with per-iteration cosine decay, checkpoint selection and a log.

:func:`train_classifier` fine-tunes (or trains from scratch) a :class:`ModelSurface` on a training
split, scores the validation split after every epoch, keeps the epoch with the strictly best
validation metric (the first epoch included: the reference never considers it, spec bug 20), writes it to
``out_dir/best.pt`` with :func:`save_checkpoint` (atomically) and the per-epoch history to
``out_dir/train_log.json``, and returns the model with the best weights loaded.

Same seed, same data, same device → identical weights on CPU: the global RNGs are seeded, the
loader shuffles with its own ``torch.Generator``, and loader workers are seeded from it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from neuroinspect.datasets.base import ImageDataset
from neuroinspect.errors import CheckpointError, UserError
from neuroinspect.fileio import atomic_torch_save, atomic_write_json
from neuroinspect.harness.checkpoint import save_checkpoint
from neuroinspect.harness.metrics import classification_metrics, group_counts
from neuroinspect.harness.models import DataConfig, ModelSurface
from neuroinspect.harness.presets import TrainConfig
from neuroinspect.harness.transforms import describe, eval_transform, train_transform, transform_kind
from neuroinspect.runtime import bars_wanted, describe_device, package_versions, seed_everything

BEST_NAME = "best.pt"
LOG_NAME = "train_log.json"
#: The state after the last completed epoch (weights, optimizer, scheduler, every RNG, history), written
#: atomically after each epoch so that an interrupted run continues with ``resume=True``; removed
#: when the run finishes.
LAST_NAME = "last.pt"
STATE_FORMAT = "neuroinspect-train-state"


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns.

    ``surface`` holds the selected (best) weights, in eval mode. Epochs are counted from 1 (as the
    console prints them): ``best_epoch`` is the selected one, -1 when none qualified. ``history`` has
    one dict per epoch (``epoch``, ``train_loss``, ``train_acc``, ``lr``, ``val_acc``, ``val_worst_class_acc``,
    ``val_worst_group_acc``, ``seconds``, ``selected``).
    """

    surface: ModelSurface
    config: TrainConfig
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    checkpoint_path: Path | None = None
    log_path: Path | None = None
    stopped_early: bool = False
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _seed_worker(worker_id: int) -> None:
    # Each loader worker derives numpy / random seeds from its torch seed (set from the loader's generator).
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _check_tensor_dataset(ds: ImageDataset, what: str) -> None:
    if len(ds) == 0:
        raise UserError(f"the {what} split of {ds.name} is empty; check the dataset root and parameters.")
    if ds.transform is None:
        raise ValueError(
            f"the {what} dataset has no transform; give it one from neuroinspect.harness.transforms "
            "(train_transform / eval_transform) or use build_datasets()."
        )


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (momentum ``config.momentum``) with ``config.lr`` and ``config.weight_decay``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, lr: float, eta_min: float, cosine: bool
) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): linear warm-up, then cosine to ``eta_min``.

    The cosine runs per iteration over ``total_steps`` (the reference's T_max = L·E) and only when
    ``lr > eta_min`` (as in ref, where the scheduler is skipped otherwise).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine or lr <= eta_min:
        return 1.0
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return (eta_min + (lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * t))) / lr


@torch.no_grad()
def predict(
    surface: ModelSurface,
    dataset: ImageDataset,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    amp: bool = False,
) -> dict[str, np.ndarray]:
    """Predictions of ``surface`` (eval mode) on ``dataset``: ``preds``, ``labels``, ``groups`` (N each)."""
    was_training = surface.training
    surface.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    preds, labels, groups = [], [], []
    device = torch.device(device)
    for batch in loader:
        x = batch["image"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = surface(x)
        preds.append(logits.argmax(dim=1).cpu())
        labels.append(batch["label"])
        groups.append(batch["group"])
    surface.train(was_training)
    return {
        "preds": torch.cat(preds).numpy().astype(np.int64),
        "labels": torch.cat(labels).numpy().astype(np.int64),
        "groups": torch.cat(groups).numpy().astype(np.int64),
    }


def _val_metrics(
    surface: ModelSurface, val_ds: ImageDataset, batch_size: int, device: torch.device, amp: bool
) -> dict[str, Any]:
    out = predict(surface, val_ds, batch_size=batch_size, device=device, amp=amp)
    m = classification_metrics(
        out["preds"],
        out["labels"],
        groups=out["groups"] if val_ds.group_names is not None else None,
        num_classes=surface.num_classes,
        num_groups=val_ds.num_groups or None,
        n_boot=0,
    )
    return {
        "val_acc": m["test_acc"],
        "val_worst_class_acc": m["worst_class_acc"],
        "val_worst_group_acc": m["worst_group_acc"],
        "val_macro_acc": m["macro_acc"],
        "val_per_class_acc": m["per_class_acc"],
        "val_group_acc": m["group_acc"],
    }


def _trainable_parameters(surface: ModelSurface, config: TrainConfig) -> list[nn.Parameter]:
    if config.finetune == "head":
        for p in surface.parameters():
            p.requires_grad_(False)
        params = list(surface.decision.parameters())
        for p in params:
            p.requires_grad_(True)
        return params
    for p in surface.parameters():
        p.requires_grad_(True)
    return list(surface.parameters())


def _set_train_mode(surface: ModelSurface, config: TrainConfig) -> None:
    if config.finetune == "head" and not config.ref_bn_drift:
        # A pure decision-layer fit: the frozen backbone keeps its BatchNorm statistics (spec bug 19).
        surface.eval()
        surface.decision.train()
    else:
        surface.train()


def _bar(total: int, desc: str, enabled: bool) -> Any:
    """A bar over an epoch's batches on a terminal; elsewhere (a log, ``--no-progress``) a silent one:
    the epoch's line (:func:`_print_epoch`) reports it."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, disable=not (enabled and bars_wanted()), leave=False, dynamic_ncols=True
    )


def train_classifier(
    surface: ModelSurface,
    train_ds: ImageDataset,
    val_ds: ImageDataset | None,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    class_names: list[str] | None = None,
    dataset_name: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    amp: bool | None = None,
    extra_metadata: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``surface`` on ``train_ds`` and select the best epoch on ``val_ds``.

    Both datasets must carry transforms that yield normalized 3×S×S tensors (see :func:`build_datasets`).
    Selection (``config.selection``): ``val_acc``, ``val_worst_class_acc``, ``val_worst_group_acc``
    (needs group labels) or ``last``; without ``val_ds`` the last epoch is kept. An epoch is selected
    when its metric is strictly better than every earlier one and above ``config.min_val_metric``.
    If no epoch qualifies (the reference's thresholds), the last epoch is kept and ``best_epoch`` is -1
    in the log so that nobody mistakes it for a selected model.

    Writes, when ``out_dir`` is given: ``best.pt`` (the selected weights; metadata: the train config,
    seed, best validation metrics, training group counts) and ``train_log.json`` (per-epoch history),
    both atomically and after every epoch that changes them, and ``last.pt`` (the full training state)
    after every epoch, removed at the end. ``resume``: continue from ``out_dir/last.pt`` (same config,
    seed and data, else a :class:`UserError`); the result is the same as an uninterrupted run's.
    ``amp``: bf16 autocast, default on CUDA.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else amp
    _check_tensor_dataset(train_ds, "training")
    if val_ds is not None:
        _check_tensor_dataset(val_ds, "validation")
    classes = list(class_names if class_names is not None else train_ds.classes)
    if len(classes) != surface.num_classes:
        raise UserError(
            f"the model has {surface.num_classes} outputs but the dataset has {len(classes)} classes; "
            "create the model with num_classes equal to the dataset's class count."
        )
    labels = train_ds.labels
    if labels.size and (labels.min() < 0 or labels.max() >= surface.num_classes):
        raise UserError(
            f"training labels must lie in 0..{surface.num_classes - 1}; found {int(labels.min())}..{int(labels.max())}."
        )
    selection = config.selection
    if val_ds is None:
        selection = "last"
    elif selection == "val_worst_group_acc" and val_ds.group_names is None:
        raise UserError(
            f"selection 'val_worst_group_acc' needs group labels, but {val_ds.name} has none; use val_worst_class_acc."
        )
    dataset_name = dataset_name or train_ds.name
    dataset_params = dict(dataset_params if dataset_params is not None else train_ds.params)
    train_groups = train_ds.groups
    train_group_counts = group_counts(train_groups, train_ds.num_groups) if train_groups is not None else None

    seed_everything(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    loader = DataLoader(
        train_ds,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=config.num_workers,
        worker_init_fn=_seed_worker if config.num_workers > 0 else None,
        drop_last=len(train_ds) > config.batch_size
        and len(train_ds) % config.batch_size == 1,  # no BN on 1 sample
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))

    surface.to(device)
    params = _trainable_parameters(surface, config)
    optimizer = make_optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, total_steps, warmup_steps, config.lr, config.eta_min, config.scheduler == "cosine"
        ),
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    out_path = Path(out_dir) if out_dir is not None else None
    ckpt_path = out_path / BEST_NAME if out_path is not None else None
    log_path = out_path / LOG_NAME if out_path is not None else None
    config_dict = config.as_dict()
    run_info = {
        "seed": seed,
        "dataset": dataset_name,
        "dataset_params": dataset_params,
        "arch": surface.spec.arch,
        "num_classes": surface.num_classes,
        "image_size": surface.data_config.image_size,
        "train_size": len(train_ds),
        "val_size": len(val_ds) if val_ds is not None else 0,
        "train_transform": describe(train_ds.transform),
        "val_transform": describe(val_ds.transform) if val_ds is not None else None,
        "device": describe_device(device),
        "versions": package_versions(),
        "amp": amp,
    }

    history: list[dict[str, Any]] = []
    best_value = -math.inf
    best_epoch = -1
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = {}
    epochs_since_best = 0
    stopped_early = False
    start_epoch = 0
    last_path = out_path / LAST_NAME if out_path is not None else None
    # what must match to resume (the description is derived from the settings: not compared)
    identity = {
        "config": {k: v for k, v in config_dict.items() if k != "description"},
        "seed": seed,
        "dataset": dataset_name,
        "arch": surface.spec.arch,
        "dataset_params": dataset_params,
        "train_size": len(train_ds),
    }
    if resume:
        if last_path is None or not last_path.is_file():
            raise UserError(
                f"nothing to resume: {last_path or 'no output folder'} does not exist (the run finished, or "
                "never completed an epoch). Pass --overwrite to start again."
            )
        state = _load_train_state(last_path, identity)
        surface.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        _set_rng_state(state["rng"], device)
        history = list(state["history"])
        best_value, best_epoch = float(state["best_value"]), int(state["best_epoch"])
        best_metrics, epochs_since_best = dict(state["best_metrics"]), int(state["epochs_since_best"])
        start_epoch = len(history)
        if best_epoch >= 0 and ckpt_path is not None and ckpt_path.is_file():
            best_state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
        t0 -= float(state.get("wall_seconds", 0.0))

    def write_state() -> None:
        if last_path is None:
            return
        atomic_torch_save(
            last_path,
            {
                "format": STATE_FORMAT,
                "identity": identity,
                "model": {k: v.detach().cpu() for k, v in surface.model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "rng": _rng_state(device),
                "history": history,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "epochs_since_best": epochs_since_best,
                "wall_seconds": time.perf_counter() - t0,
            },
        )

    def write_log() -> None:
        if log_path is None:
            return
        atomic_write_json(
            log_path,
            {
                "config": config_dict,
                "run": run_info,
                "selection": selection,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "stopped_early": stopped_early,
                "history": history,
                "wall_seconds": round(time.perf_counter() - t0, 3),
            },
        )

    for epoch in range(start_epoch, config.epochs):
        te = time.perf_counter()
        _set_train_mode(surface, config)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = _bar(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", show_progress)
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            y = torch.as_tensor(batch["label"]).long().to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = surface(x)
                loss = criterion(logits.float(), y)
            if not torch.isfinite(loss):
                bar.close()
                raise UserError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate (now {config.lr:g})."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            n = int(y.shape[0])
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(dim=1) == y).sum())
            seen += n
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        bar.close()
        row: dict[str, Any] = {
            "epoch": epoch + 1,  # counted from 1 everywhere a person reads it (console, log, report)
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "lr": optimizer.param_groups[0]["lr"],
        }
        if val_ds is not None:
            row.update(_val_metrics(surface, val_ds, max(config.batch_size, 64), device, amp))
        value = float(row[selection]) if selection != "last" else float(epoch)
        improved = value > best_value and (selection == "last" or value > config.min_val_metric)
        row["selected"] = improved
        row["seconds"] = round(time.perf_counter() - te, 3)
        history.append(row)
        if improved:
            best_value, best_epoch = value, epoch + 1
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in surface.model.state_dict().items()})
            best_metrics = {k: v for k, v in row.items() if k != "selected"}
            epochs_since_best = 0
            if ckpt_path is not None:
                save_checkpoint(
                    ckpt_path,
                    surface,
                    classes,
                    dataset_name,
                    dataset_params=dataset_params,
                    train_config={**config_dict, "seed": seed, "selection": selection},
                    metrics={"best_epoch": epoch + 1, **best_metrics},
                    extra={
                        "train_group_counts": train_group_counts,
                        "eval_transform": "ref" if config.ref_transforms else "default",
                        "run": run_info,
                        **(extra_metadata or {}),
                    },
                )
        else:
            epochs_since_best += 1
        if show_progress:
            _print_epoch(row, config.epochs)
        if on_epoch_end is not None:
            on_epoch_end(row)
        if config.patience is not None and epochs_since_best >= config.patience and epoch < config.epochs - 1:
            stopped_early = True
            write_log()
            break
        write_log()
        if epoch < config.epochs - 1:
            write_state()

    if best_state is None:
        # No epoch beat min_val_metric: keep the last weights, saved, but flagged (best_epoch = -1).
        best_metrics = {k: v for k, v in history[-1].items() if k != "selected"}
        if ckpt_path is not None:
            save_checkpoint(
                ckpt_path,
                surface,
                classes,
                dataset_name,
                dataset_params=dataset_params,
                train_config={**config_dict, "seed": seed, "selection": selection},
                metrics={"best_epoch": -1, **best_metrics},
                extra={
                    "train_group_counts": train_group_counts,
                    "eval_transform": "ref" if config.ref_transforms else "default",
                    "run": run_info,
                    "warning": f"no epoch exceeded min_val_metric={config.min_val_metric}; these are the last weights",
                    **(extra_metadata or {}),
                },
            )
    else:
        surface.model.load_state_dict(best_state)
    write_log()
    if last_path is not None and last_path.exists():
        last_path.unlink()  # finished: nothing left to resume
    surface.eval()
    for p in surface.parameters():
        p.requires_grad_(True)
    return TrainResult(
        surface=surface,
        config=config,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        history=history,
        checkpoint_path=ckpt_path,
        log_path=log_path,
        stopped_early=stopped_early,
        wall_seconds=time.perf_counter() - t0,
        extra={"train_group_counts": train_group_counts, "run": run_info},
    )


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every random number generator the next epoch draws from (augmentation, dropout, shuffling)."""
    import random

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": list(random.getstate()),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    import random

    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _load_train_state(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The saved training state of ``path``, checked against this run's settings."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise UserError(
            f"cannot resume from {path}: the file is damaged ({type(err).__name__}). Pass --overwrite to start again."
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(
            f"cannot resume from {path}: it is not a training state. Pass --overwrite to start again."
        )
    saved = state["identity"]
    diff = [k for k in identity if saved.get(k) != identity[k]]
    if "config" in diff:
        diff.remove("config")
        diff += [k for k in identity["config"] if saved["config"].get(k) != identity["config"][k]]
    if diff:
        shown = ", ".join(f"{k} {_lookup(saved, k)!r} then, {_lookup(identity, k)!r} now" for k in diff[:4])
        raise UserError(
            f"cannot resume {path.parent}: it was trained with other settings ({shown}). Resume with the same "
            "settings, or pass --overwrite to start again."
        )
    return state


def _lookup(identity: dict[str, Any], key: str) -> Any:
    return identity[key] if key in identity else identity["config"].get(key)


def _print_epoch(row: dict[str, Any], epochs: int) -> None:
    import sys

    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"loss {row['train_loss']:.4f}",
        f"train acc {row['train_acc']:.4f}",
    ]
    if "val_acc" in row:
        parts.append(f"val acc {row['val_acc']:.4f}")
        parts.append(f"val worst-class {row['val_worst_class_acc']:.4f}")
        if row.get("val_worst_group_acc") is not None:
            parts.append(f"val worst-group {row['val_worst_group_acc']:.4f}")
    parts.append(f"{row['seconds']:.1f}s" + (" *" if row["selected"] else ""))
    print(" | ".join(parts), file=sys.stderr)


def build_datasets(
    dataset_name: str,
    root: str | Path | None,
    data_config: DataConfig,
    config: TrainConfig,
    params: dict[str, Any] | None = None,
    train_split: str = "train",
    val_split: str = "val",
) -> tuple[ImageDataset, ImageDataset | None]:
    """The training split with :func:`train_transform` and the validation split with :func:`eval_transform`.

    ``val_split`` falls back to none when the dataset has no such split (the last epoch is kept then).
    """
    from neuroinspect.datasets import get_dataset

    spec = get_dataset(dataset_name)
    kind = transform_kind(dataset_name)
    params = dict(params or {})
    train_tf = train_transform(data_config, config, dataset_kind=kind, dataset=dataset_name)
    val_tf = eval_transform(data_config, kind, ref=config.ref_transforms, dataset=dataset_name)
    spec.check_split(train_split)
    train_ds = spec.load(root, train_split, train_tf, **params)
    val_ds = spec.load(root, val_split, val_tf, **params) if val_split in spec.splits else None
    return train_ds, val_ds


def init_from_checkpoint(surface: ModelSurface, path: str | Path) -> dict[str, Any]:
    """Load the backbone weights of a neuroinspect checkpoint into ``surface`` (the decision layer too
    when the class counts match). The architectures must match; a :class:`CheckpointError` otherwise."""
    from neuroinspect.harness.checkpoint import FORMAT

    path = Path(path).expanduser()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a neuroinspect checkpoint; pass a timm weight file or a checkpoint from `neuroinspect train`."
        )
    if payload["arch"] != surface.spec.arch:
        raise CheckpointError(
            f"{path} holds a {payload['arch']} but --model is {surface.spec.arch}. Pass --model {payload['arch']} or another checkpoint."
        )
    state = dict(payload["state_dict"])
    head_keys = {f"{name}" for name, _ in _decision_param_names(surface)}
    skipped: list[str] = []
    if payload["num_classes"] != surface.num_classes:
        skipped = sorted(k for k in state if k in head_keys)
        for k in skipped:
            state.pop(k)
    missing, unexpected = surface.model.load_state_dict(state, strict=False)
    bad = [k for k in missing if k not in head_keys] + list(unexpected)
    if bad:
        raise CheckpointError(
            f"the weights in {path} do not fit {surface.spec.arch}: {', '.join(bad[:5])}. Use a matching checkpoint."
        )
    return {"init_from": str(path), "skipped": skipped}


def _decision_param_names(surface: ModelSurface) -> list[tuple[str, nn.Parameter]]:
    head = surface.decision
    return [
        (name, p) for name, p in surface.model.named_parameters() if any(p is q for q in head.parameters())
    ]


__all__ = [
    "BEST_NAME",
    "LAST_NAME",
    "LOG_NAME",
    "TrainResult",
    "build_datasets",
    "init_from_checkpoint",
    "lr_factor",
    "make_optimizer",
    "predict",
    "train_classifier",
]
