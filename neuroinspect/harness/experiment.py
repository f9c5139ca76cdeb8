"""The experiment runner: dataset → model → features → finders → editors → records (DESIGN.md pipeline).

``neuroinspect demo`` and ``neuroinspect bench run`` both call :func:`run_experiment`, once per seed.
Data flows one way: this module computes; :mod:`neuroinspect.harness.report` draws and writes.

The class to debug (documented contract, used when the config gives no ``class_idx``): the class with
the lowest accuracy on the finder's split (``finder_split``, "val" by default) under the loaded or
trained model; a tie goes to the lowest class index; classes without samples in that split are never
chosen.

Automatic neuron selection (documented contract, used when the config gives no ``neurons``): the first
``num_neurons`` entries of the main finder's ``neuron_list`` ("insufficient" by default: the paper's
debug script edits neurons from that list, spec §2.6), in the finder's order. When that list holds
fewer neurons (the vote cut can leave it short), it is topped up from the finder's full ranking of the
same list, so every editor receives the same number of neurons.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroinspect.datasets import get_dataset
from neuroinspect.datasets.base import ImageDataset
from neuroinspect.datasets.fingerprint import fingerprint_splits, stamp
from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write_json
from neuroinspect.harness.checkpoint import Checkpoint, load_checkpoint
from neuroinspect.harness.config import ExperimentConfig
from neuroinspect.harness.evaluation import checkpoint_eval_transform
from neuroinspect.harness.features import FeatureCache, FeatureSet
from neuroinspect.harness.metrics import classification_metrics, group_counts
from neuroinspect.harness.records import append_records
from neuroinspect.runtime import Provenance, resolve_device, seed_everything

Log = Callable[[str], None]


@dataclass
class ExperimentResult:
    """Everything one seed of an experiment produced (plain data for the report)."""

    config: ExperimentConfig
    seed: int
    out_dir: Path
    checkpoint: Path
    class_idx: int
    class_names: list[str]
    group_names: list[str] | None
    neurons: list[int]
    gamma: float | None
    before: dict[str, Any]
    finder_results: dict[str, Any] = field(default_factory=dict)
    truth: Any = None
    recovery: dict[str, dict[str, Any]] = field(default_factory=dict)
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    train_summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    mistakes: list[dict[str, Any]] = field(default_factory=list)
    datasets: dict[str, ImageDataset] = field(default_factory=dict)
    surface: Any = None


def _metrics(
    decision: torch.nn.Linear,
    fs: FeatureSet,
    class_idx: int | None,
    train_counts: list[int] | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    with torch.no_grad():
        preds = decision(fs.features).argmax(1).numpy()
    K = decision.out_features
    num_groups = fs.meta.get("num_groups") or None
    return classification_metrics(
        preds,
        fs.labels.numpy(),
        groups=None if fs.groups is None else fs.groups.numpy(),
        num_classes=K,
        num_groups=num_groups,
        class_idx=class_idx,
        train_group_counts=train_counts,
        n_boot=n_boot,
        seed=seed,
    )


def _train_or_load(
    cfg: ExperimentConfig, seed: int, out_dir: Path, device: Any, show_progress: bool, log: Log
) -> tuple[Checkpoint, dict[str, Any]]:
    if cfg.checkpoint:
        ckpt = load_checkpoint(cfg.checkpoint, expect_dataset=cfg.dataset)
        return ckpt, {"checkpoint": str(cfg.checkpoint), "trained": False}
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.presets import get_preset
    from neuroinspect.harness.training import build_datasets, train_classifier

    preset = get_preset(cfg.preset, cfg.dataset)
    if cfg.pretrained is not None:  # the config's choice, false included, wins over the preset's
        preset = preset.with_overrides(pretrained=cfg.pretrained)
    if cfg.train:
        preset = preset.with_overrides(**cfg.train)
    spec = get_dataset(cfg.dataset)
    probe = spec.load(cfg.root, "val" if "val" in spec.splits else spec.splits[0], None, **cfg.dataset_params)
    image_size = cfg.image_size or getattr(preset, "image_size", None) or spec.default_image_size
    pretrained = preset.resolve_pretrained(cfg.model)
    surface = create_model(cfg.model, probe.num_classes, pretrained=pretrained, image_size=image_size)
    train_ds, val_ds = build_datasets(
        cfg.dataset, cfg.root, surface.data_config, preset, params=cfg.dataset_params
    )
    log(
        f"training {cfg.model} on {cfg.dataset} ({len(train_ds)} images, {preset.epochs} epochs, seed {seed})"
    )
    res = train_classifier(
        surface,
        train_ds,
        val_ds,
        preset,
        device=device,
        seed=seed,
        out_dir=out_dir / "model",
        show_progress=show_progress,
        class_names=train_ds.classes,
        dataset_name=cfg.dataset,
        dataset_params=dict(cfg.dataset_params),
    )
    if res.checkpoint_path is None:
        raise UserError("training produced no checkpoint; check the training preset (epochs >= 1).")
    ckpt = load_checkpoint(res.checkpoint_path, expect_dataset=cfg.dataset)
    summary = {
        "trained": True,
        "preset": cfg.preset,
        "train_config": preset.as_dict(),
        "best_epoch": res.best_epoch,
        "best_metrics": res.best_metrics,
        "wall_seconds": round(res.wall_seconds, 1),
        "n_train": len(train_ds),
    }
    return ckpt, summary


def select_neurons(result: Any, which: str, k: int) -> list[int]:
    """The automatic neuron choice described in the module docstring."""
    lists = ["insufficient", "excessive"] if which == "both" else [which]
    picked: list[int] = []
    for name in lists:
        for n in result.top_neurons(name, k):
            if n not in picked:
                picked.append(n)
    for name in lists:
        for n in result.ranking(name):
            if len(picked) >= k:
                break
            if n not in picked:
                picked.append(n)
    return picked[:k]


def run_experiment(
    cfg: ExperimentConfig,
    seed: int,
    out_dir: str | Path,
    *,
    show_progress: bool = True,
    log: Log = print,
    results_path: str | Path | None = None,
    replace_records: bool = False,
) -> ExperimentResult:
    """Run one seed of ``cfg`` into ``out_dir``; append its records to ``results_path``
    (default ``out_dir/results.jsonl``; ``replace_records``: records of the same runs already there
    are replaced instead of refused). Returns the :class:`ExperimentResult`."""
    from neuroinspect.harness.mitigation import measure, mitigation_record
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.methods.editors import load_all as load_editors
    from neuroinspect.methods.finders import FINDERS
    from neuroinspect.methods.finders import load_all as load_finders

    load_finders()
    load_editors()
    for name in cfg.finders:
        FINDERS.get(name)
    for name in cfg.editors:
        EDITORS.get(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    seed_everything(seed)
    timings: dict[str, float] = {}

    with Provenance(str(device)) as prov_train:
        ckpt, train_summary = _train_or_load(cfg, seed, out_dir, device, show_progress, log)
    timings["train"] = prov_train.wall_seconds or 0.0
    # A loaded checkpoint is measured on the data it was made for: its dataset parameters are the
    # defaults, the config's override them (as in `evaluate`, `debug` and `edit`).
    cfg = dataclasses.replace(cfg, dataset_params={**ckpt.dataset_params, **cfg.dataset_params})
    surface = ckpt.surface.to(device).eval()
    spec = get_dataset(cfg.dataset)
    transform = checkpoint_eval_transform(ckpt, cfg.dataset)
    splits = {
        s: spec.load(cfg.root, s, transform, **cfg.dataset_params)
        for s in ("train", cfg.finder_split, "test")
    }
    cache = FeatureCache(out_dir / "cache")
    with Provenance(str(device)) as prov_feat:
        feats = {
            s: cache.get_or_compute(
                surface,
                ckpt.sha256 or "",
                ds,
                batch_size=cfg.batch_size,
                device=device,
                show_progress=show_progress,
            )
            for s, ds in splits.items()
        }
    timings["features"] = prov_feat.wall_seconds or 0.0
    train_fs, val_fs, test_fs = feats["train"], feats[cfg.finder_split], feats["test"]
    test_ds = splits["test"]
    train_counts = (
        group_counts(train_fs.groups.numpy(), test_ds.num_groups) if train_fs.groups is not None else None
    )
    decision = surface.decision.cpu()

    # -- the class to debug ----------------------------------------------------------------------
    if cfg.class_idx is None:
        val_metrics = _metrics(decision, val_fs, None, train_counts, n_boot=0, seed=seed)
        per_class = [np.inf if v is None else v for v in val_metrics["per_class_acc"]]
        class_idx = int(np.argmin(per_class))  # the first minimum: ties go to the lowest index
        log(
            f"worst class on {cfg.finder_split}: {class_idx} ({ckpt.classes[class_idx]}, accuracy {100 * per_class[class_idx]:.1f}%)"
        )
    else:
        class_idx = int(cfg.class_idx)
        if not 0 <= class_idx < decision.out_features:
            raise UserError(
                f"class_idx {class_idx} is out of range: the model has {decision.out_features} classes."
            )
    before = measure(
        decision, test_fs, class_idx, train_group_counts=train_counts, n_boot=cfg.n_boot, seed=seed
    )

    result = ExperimentResult(
        config=cfg,
        seed=seed,
        out_dir=out_dir,
        checkpoint=Path(ckpt.path) if ckpt.path else out_dir,
        class_idx=class_idx,
        class_names=list(ckpt.classes),
        group_names=test_ds.group_names,
        neurons=[],
        gamma=None,
        before=before,
        train_summary=train_summary,
        timings=timings,
        datasets=splits,
        surface=surface,
    )
    from neuroinspect.harness.models import model_name as _model_name

    model_name = _model_name(ckpt.surface)
    records: list[dict[str, Any]] = []

    # -- finders ----------------------------------------------------------------------------------
    with Provenance(str(device)) as prov_find:
        for name in cfg.finders:
            finder = FINDERS.get(name)(**cfg.finder_settings.get(name, {}))
            result.finder_results[name] = finder.find(
                decision, val_fs, class_idx, seed=seed, show_progress=show_progress
            )
    timings["finders"] = prov_find.wall_seconds or 0.0
    main = result.finder_results[cfg.finder]
    atomic_write_json(
        out_dir / "debug.json", {name: r.to_json() for name, r in result.finder_results.items()}
    )
    mistakes_mask = (val_fs.labels == class_idx) & (val_fs.preds != class_idx)
    result.mistakes = [
        {"index": int(i), "path": val_fs.paths[j], "pred": int(val_fs.preds[j])}
        for j, i in enumerate(val_fs.indices.tolist())
        if bool(mistakes_mask[j])
    ]

    neurons = list(cfg.neurons) if cfg.neurons else select_neurons(main, cfg.neuron_list, cfg.num_neurons)
    bad = [n for n in neurons if not 0 <= n < decision.in_features]
    if bad:
        raise UserError(
            f"neuron {bad[0]} is out of range: the decision layer has {decision.in_features} inputs."
        )
    gamma = main.gamma_for(neurons) if cfg.gamma == "auto" else float(cfg.gamma)
    result.neurons, result.gamma = neurons, gamma
    log(f"neurons to edit ({cfg.finder}, {cfg.neuron_list}): {neurons}; gamma = {gamma:.4f}")

    # -- ground truth (bundled benchmarks) ----------------------------------------------------------
    if spec.kind == "benchmark":
        from neuroinspect.methods.groundtruth_scoring import neuron_attribute_scores, neuron_recovery_record

        with Provenance(str(device)) as prov_truth:
            truth = neuron_attribute_scores(
                surface,
                test_ds,
                transform,
                n_samples=cfg.truth_samples,
                seed=seed,
                batch_size=cfg.batch_size,
                device=device,
                show_progress=show_progress,
            )
        timings["ground_truth"] = prov_truth.wall_seconds or 0.0
        result.truth = truth
        atomic_write_json(out_dir / "neuron_truth.json", truth.to_json())
        for name, fres in result.finder_results.items():
            rec = neuron_recovery_record(
                fres,
                truth,
                decision,
                dataset=cfg.dataset,
                model=model_name,
                seed=seed,
                provenance=prov_truth.as_dict(),
                ks=tuple(cfg.recovery_k),
                config={
                    "experiment": cfg.name,
                    "finder_split": cfg.finder_split,
                    **fres.settings,
                    "dataset_params": cfg.dataset_params,
                },
            )
            records.append(rec)
            result.recovery[name] = rec["metrics"]

    # -- editors ------------------------------------------------------------------------------------
    edited_dir = out_dir / "edited"
    for name in cfg.editors:
        editor_cls = EDITORS.get(name)
        if editor_cls.uses_group_labels and train_fs.groups is None:
            result.skipped[name] = "needs group labels; the dataset has none"
            continue
        settings = dict(cfg.editor_settings.get(name, {}))
        if "gamma" in editor_cls.hyperparameters() and "gamma" not in settings:
            settings["gamma"] = gamma
        editor = editor_cls(**settings)
        with Provenance(str(device)) as prov_edit:
            edit = editor.edit(
                decision, train_fs, val_fs, class_idx, neurons, seed=seed, show_progress=show_progress
            )
            after = measure(
                edit.decision,
                test_fs,
                class_idx,
                train_group_counts=train_counts,
                n_boot=cfg.n_boot,
                seed=seed,
            )
        rec = mitigation_record(
            edit,
            before,
            after,
            dataset=cfg.dataset,
            model=model_name,
            seed=seed,
            finder=cfg.finder if editor_cls.uses_neurons else "none",
            provenance=prov_edit.as_dict(),
            config={"experiment": cfg.name, "dataset_params": cfg.dataset_params},
            gamma_rule="auto" if cfg.gamma == "auto" and editor_cls.uses_neurons else None,
        )
        records.append(rec)
        result.edits[name] = {"after": after, "result": edit.summary(), "record": rec}
        if name == "neuroinspect":
            from neuroinspect.harness.mitigation import save_edited_checkpoint

            save_edited_checkpoint(
                edited_dir / f"{name}.pt",
                ckpt,
                edit.decision,
                editor=name,
                neurons=edit.neurons,
                class_idx=class_idx,
                settings=edit.settings,
                metrics={"before": rec["metrics"]["before"], "after": rec["metrics"]["after"]},
            )
    timings["editors"] = sum(float(e["result"]["wall_seconds"]) for e in result.edits.values())

    stamp(records, fingerprint_splits(splits))  # the data they measured on (leaderboards compare it)
    for rec in records:  # how the debugged class was chosen: a per-seed worst class is a rule, not a class
        rec["config"]["class_rule"] = "worst_val" if cfg.class_idx is None else "fixed"
    result.records = records
    append_records(results_path or out_dir / "results.jsonl", records, replace=replace_records)
    atomic_write_json(
        out_dir / "summary.json",
        {
            "config": cfg.as_dict(),
            "seed": seed,
            "class_idx": class_idx,
            "class_name": ckpt.classes[class_idx],
            "neurons": neurons,
            "gamma": gamma,
            "before": before,
            "after": {k: v["after"] for k, v in result.edits.items()},
            "recovery": result.recovery,
            "skipped": result.skipped,
            "train": train_summary,
            "timings": {k: round(v, 2) for k, v in timings.items()},
        },
    )
    return result


def load_summary(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
