"""The experiment runner: dataset → model → features → finders → editors → records (DESIGN.md pipeline).

``neuroinspect demo`` and ``neuroinspect bench run EXPERIMENT.toml`` both call :func:`run_experiment`,
once per seed. It is the orchestration only: every step it takes (the class, the finders, the causal
truth, the selection, each edit and its record) is a function of :mod:`neuroinspect.harness.pipeline`,
the same functions the sweep's stage nodes call (:mod:`neuroinspect.harness.stages`). Data flows one
way: this module computes; :mod:`neuroinspect.harness.report` draws and writes.

The class to debug (documented contract, used when the config gives no ``class_idx``): the class with
the lowest accuracy on the finder's split (``finder_split``, "val" by default) under the loaded or
trained model; a tie goes to the lowest class index; classes without samples in that split are never
chosen (:func:`~neuroinspect.harness.pipeline.choose_class`).

Automatic neuron selection (documented contract, used when the config gives no ``neurons``): each
selector is handed the first ``candidate_pool × num_neurons`` neurons of its finder's ``neuron_list``
("insufficient" by default: the paper's debug script edits neurons from that list, spec §2.6) in
:meth:`FinderResult.ordered` order (the printed list, topped up from the finder's ranking of the same
list); ``top`` keeps the first ``num_neurons``. The main set is (``finder``, ``selector``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.datasets import get_dataset
from neuroinspect.datasets.base import ImageDataset
from neuroinspect.datasets.fingerprint import fingerprint_splits, stamp
from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write_json
from neuroinspect.harness import pipeline as pl
from neuroinspect.harness.checkpoint import SEED_FIELD, Checkpoint, checkpoint_for_seed, load_checkpoint
from neuroinspect.harness.choice import make_selectors, resolve_pipelines, select_sets, split_variant
from neuroinspect.harness.config import ExperimentConfig
from neuroinspect.harness.evaluation import checkpoint_eval_transform
from neuroinspect.harness.features import FeatureCache
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
    effects: Any = None  # causal effects on the mistakes (methods.causal_truth.MistakeEffects)
    causal: Any = None  # direction-matched causal truth (methods.causal_truth.CausalTruth)
    sets: dict[str, Any] = field(default_factory=dict)  # neuron sets by key (harness.choice.NeuronSet)
    main_set: str = ""
    grid: list[dict[str, Any]] = field(default_factory=list)  # every (editor, neuron set) edit
    edited_visuals: dict[int, Any] = field(default_factory=dict)  # one visualization per edited neuron


def _train_or_load(
    cfg: ExperimentConfig, seed: int, out_dir: Path, device: Any, show_progress: bool, log: Log
) -> tuple[Checkpoint, dict[str, Any]]:
    model_dir = out_dir / "model"
    if cfg.checkpoint:
        # "{seed}" in the path makes it a per-seed model cache: loaded when present, trained into it when not
        path = Path(checkpoint_for_seed(cfg.checkpoint, seed))
        if path.is_file() or SEED_FIELD not in str(cfg.checkpoint):
            ckpt = load_checkpoint(path, expect_dataset=cfg.dataset)
            return ckpt, {"checkpoint": str(path), "trained": False}
        from neuroinspect.harness.training import BEST_NAME

        if path.name != BEST_NAME:
            raise UserError(
                f"checkpoint = {cfg.checkpoint!r}: a per-seed model cache must name the training's "
                f"output file, e.g. runs/models/seed-{{seed}}/{BEST_NAME}."
            )
        model_dir = path.parent
    return pl.train_model(
        dataset=cfg.dataset,
        root=cfg.root,
        dataset_params=cfg.dataset_params,
        model=cfg.model,
        image_size=cfg.image_size,
        pretrained=cfg.pretrained,
        preset=cfg.preset,
        train=cfg.train,
        seed=seed,
        out_dir=model_dir,
        device=device,
        show_progress=show_progress,
        log=log,
    )


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
    from neuroinspect.harness.mitigation import measure
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.methods.editors import load_all as load_editors
    from neuroinspect.methods.finders import FINDERS
    from neuroinspect.methods.finders import load_all as load_finders

    load_finders()
    load_editors()
    for name in cfg.finders:
        FINDERS.get(split_variant(name)[0])
    for name in cfg.editors:
        EDITORS.get(split_variant(name)[0])
    resolve_pipelines(cfg)
    selectors = make_selectors(cfg) if not cfg.neurons else {}
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
            s: pl.split_features(
                ckpt,
                ds,
                transform,
                cache,
                batch_size=cfg.batch_size,
                device=device,
                show_progress=show_progress,
            )
            for s, ds in splits.items()
        }
    timings["features"] = prov_feat.wall_seconds or 0.0
    train_fs, val_fs, test_fs = feats["train"], feats[cfg.finder_split], feats["test"]
    test_ds = splits["test"]
    train_counts = pl.train_group_counts(train_fs, test_ds.num_groups)
    decision = surface.decision.cpu()

    # -- the class to debug ----------------------------------------------------------------------
    class_idx = pl.choose_class(decision, val_fs, cfg.class_idx, seed=seed)
    if cfg.class_idx is None:
        acc = pl.worst_class_accuracy(decision, val_fs, class_idx)
        log(
            f"worst class on {cfg.finder_split}: {class_idx} ({ckpt.classes[class_idx]}, accuracy {100 * acc:.1f}%)"
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
            result.finder_results[name] = pl.run_finder(
                name,
                cfg.finder_settings.get(name, {}),
                decision,
                val_fs,
                class_idx,
                seed=seed,
                show_progress=show_progress,
            )
    timings["finders"] = prov_find.wall_seconds or 0.0
    main = result.finder_results[cfg.finder]
    atomic_write_json(
        out_dir / "debug.json", {name: r.to_json() for name, r in result.finder_results.items()}
    )
    result.mistakes = pl.class_mistakes(val_fs, class_idx)
    bad = [n for n in (cfg.neurons or []) if not 0 <= n < decision.in_features]
    if bad:
        raise UserError(
            f"neuron {bad[0]} is out of range: the decision layer has {decision.in_features} inputs."
        )

    # -- ground truth (bundled benchmarks): attribute labels (descriptive) and causal effects on the mistakes
    attribute_labels: list[str] | None = None
    if spec.kind == "benchmark":
        from neuroinspect.methods.groundtruth_scoring import neuron_attribute_scores

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
            effects, result.causal = pl.measure_causal(
                surface,
                splits[cfg.finder_split],
                transform,
                decision,
                class_idx,
                result.mistakes,
                threshold=cfg.causal_threshold,
                batch_size=cfg.batch_size,
                device=device,
                show_progress=show_progress,
            )
        timings["ground_truth"] = prov_truth.wall_seconds or 0.0
        result.truth = truth
        result.effects = effects
        attribute_labels = list(truth.labels)
        atomic_write_json(out_dir / "neuron_truth.json", {**truth.to_json(), "causal": effects.to_json()})
        log(
            f"causal truth on {effects.num_mistakes} mistakes: the other background flips {100 * effects.flip_rate:.0f}% of them; "
            f"causal neurons (E_n >= {cfg.causal_threshold} x max): {result.causal.counts()}"
        )

    # -- the selection step: finder -> selector (and the controls) --------------------------------------
    with Provenance(str(device)) as prov_sel:
        ctx = None
        if not cfg.neurons:
            from neuroinspect.harness.choice import needs_clip, resolve_clip

            clip = resolve_clip(cfg, device, log, show_progress) if needs_clip(selectors) else None
            ctx = pl.selection_context(
                surface=surface,
                decision=decision,
                class_idx=class_idx,
                class_names=list(ckpt.classes),
                val_fs=val_fs,
                finder_ds=splits[cfg.finder_split],
                benchmark=spec.kind == "benchmark",
                train_ds=splits["train"],
                selectors=selectors,
                clip=clip,
                seed=seed,
                device=device,
                show_progress=show_progress,
                log=log,
            )
        sets = select_sets(
            cfg,
            result.finder_results,
            selectors,
            ctx,
            num_features=decision.in_features,
            seed=seed,
            effects=result.effects,
            log=log,
        )
        surface.decision.to(device)
    timings["selectors"] = prov_sel.wall_seconds or 0.0
    main_key = "manual" if cfg.neurons else f"{cfg.finder}+{cfg.selector}"
    result.sets = sets
    result.main_set = main_key
    neurons = list(sets[main_key].neurons)
    gamma = pl.set_gamma(main, neurons, cfg.gamma)
    result.neurons, result.gamma = neurons, gamma
    which = "both lists" if cfg.neuron_list == "both" else f"{cfg.neuron_list} list"
    log(f"neurons to edit ({main_key}, {which}): {neurons}; gamma = {gamma:.4f}")
    if neurons:
        # one picture per edited neuron for the report: the selectors' images, else natural exemplars
        from neuroinspect.methods.selectors import NeuronVisuals

        visuals = ctx.visuals if ctx is not None and ctx.visuals is not None else None
        args = _visual_args(selectors) if visuals is not None else {}
        if visuals is None:
            visuals = NeuronVisuals(
                surface,
                class_idx,
                dataset=splits[cfg.finder_split],
                seed=seed,
                device=device,
                show_progress=False,
            )
            args = {
                "method": "exemplars",
                "settings": {
                    "k": 4,
                    "bottom_k": 0,
                    "checkpoint_sha": ckpt.sha256,
                    "cache_dir": str(out_dir / "cache"),
                },
                "conditioned": False,
            }
        result.edited_visuals = dict(zip(neurons, visuals.get(neurons, **args), strict=True))
        surface.decision.to(device)
    atomic_write_json(out_dir / "selection.json", {k: _set_json(v) for k, v in sets.items()})

    if result.effects is not None:
        from neuroinspect.harness.choice import causal_records

        recs, result.recovery = causal_records(
            result.finder_results,
            sets,
            result.effects,
            result.causal,
            k=cfg.num_neurons,
            ks=tuple(cfg.recovery_k),
            attribute_labels=attribute_labels,
            dataset=cfg.dataset,
            model=model_name,
            seed=seed,
            provenance=prov_truth.as_dict(),
            config={
                "experiment": cfg.name,
                "finder_split": cfg.finder_split,
                "neuron_list": cfg.neuron_list,
                "candidate_pool": cfg.candidate_pool,
                "dataset_params": cfg.dataset_params,
            },
        )
        records.extend(recs)

    # -- editors: every editor on every neuron set (editors without neurons run once) ------------------
    from neuroinspect.harness.mitigation import save_edited_checkpoint

    edited_dir = out_dir / "edited"
    for name in cfg.editors:
        base, variant = split_variant(name)
        editor_cls = EDITORS.get(base)
        if editor_cls.uses_group_labels and train_fs.groups is None:
            result.skipped[name] = "needs group labels; the dataset has none"
            continue
        uses = editor_cls.uses_neurons
        legacy = base == "random-neurons"  # the editor draws its own neurons around the main set
        targets = list(sets) if uses and not legacy else [main_key]
        for key in targets:
            ns = sets[key]
            imp = result.finder_results.get(ns.imp_finder or cfg.finder) or main
            with Provenance(str(device)) as prov_edit:
                edit, after = pl.edit_and_measure(
                    name,
                    cfg.editor_settings.get(name, {}),
                    decision,
                    train_fs,
                    val_fs,
                    test_fs,
                    class_idx,
                    ns.neurons if uses else None,
                    gamma=pl.set_gamma(imp, ns.neurons, cfg.gamma),
                    seed=seed,
                    n_boot=cfg.n_boot,
                    train_counts=train_counts,
                    show_progress=show_progress,
                )
            rec = pl.edit_record(
                edit,
                before,
                after,
                editor=name,
                ns=ns if uses else None,
                dataset=cfg.dataset,
                model=model_name,
                seed=seed,
                experiment=cfg.name,
                dataset_params=cfg.dataset_params,
                k=cfg.num_neurons,
                neuron_list=cfg.neuron_list,
                gamma_auto=cfg.gamma == "auto",
                provenance=prov_edit.as_dict(),
            )
            records.append(rec)
            entry = {
                "after": after,
                "result": edit.summary(),
                "record": rec,
                "editor": name,
                "source": key if uses else None,
            }
            result.grid.append(entry)
            if key == main_key:
                result.edits[name] = entry
            if name == "neuroinspect" and key == main_key:
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
    timings["editors"] = sum(float(e["result"]["wall_seconds"]) for e in result.grid)
    pl.relative_to_fc(records)

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
            "main_set": main_key,
            "gamma": gamma,
            "before": before,
            "after": {k: v["after"] for k, v in result.edits.items()},
            "grid": [
                {
                    "editor": e["editor"],
                    "source": e["source"],
                    "after": {
                        k: e["after"].get(k)
                        for k in ("test_acc", "worst_group_acc", "worst_class_acc", "class_acc")
                    },
                }
                for e in result.grid
            ],
            "recovery": result.recovery,
            "skipped": result.skipped,
            "train": train_summary,
            "timings": {k: round(v, 2) for k, v in timings.items()},
        },
    )
    return result


def _visual_args(selectors: Mapping[str, Any]) -> dict[str, Any]:
    """The visualizer settings of the first visual selector (so the report reuses its images)."""
    from neuroinspect.harness.choice import visual_request

    for sel in selectors.values():
        args = visual_request(sel)
        if args is not None:
            return args
    return {}


def _set_json(ns: Any) -> dict[str, Any]:
    return {
        "finder": ns.finder,
        "selector": ns.selector,
        "neurons": list(ns.neurons),
        "candidates": list(ns.candidates),
        "selection": None if ns.selection is None else ns.selection.to_json(),
    }


def load_summary(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
