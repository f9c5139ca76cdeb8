"""``neuroinspect visualize``: what neurons encode, with any registered visualizer.

Flow: load the checkpoint → check neurons and classes → (optionally) load a dataset split with the
model's evaluation transform → load CLIP for CLIP-guided methods (failing at once when its weights
are not available) → ``visualizer.visualize(...)`` → faithfulness metrics per (neuron, class) pair
→ concept recovery per pair on the bundled benchmarks → images, overlays and a JSON sidecar per
pair, a contact sheet (PNG + HTML) per method, and one ``task="visualization"`` result record per pair
(JSON Lines).

Concept recovery (:mod:`neuroinspect.methods.concept_recovery`): when the dataset the command loads
(``--dataset``, or the checkpoint's for natural / attribution methods) is a bundled benchmark
(``spurious-shapes``, ``colored-digits``) and neither ``--no-faithfulness`` nor
``--no-concept-recovery`` is given, the checkpoint's per-neuron ground truth is measured on the split
(``--truth-samples`` counterfactual samples, seeded by ``--seed``) and attribute classifiers are
trained on the benchmark's train split (held-out: val; seeded; ``--attr-set`` settings); both are
cached on disk, so a second run reuses them. Each pair then gets ``concept_recovery`` (truth label and
preferred value, the attribute its images show, ``recovered``, ``value_match``, classifier accuracies)
in its sidecar's ``metrics`` and in its record's ``metrics`` (plus the flat ``concept_recovered`` and
``concept_value_match``). On other datasets, or without a loaded dataset, the field is absent.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import asdict
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import (
    HelpFormatter,
    add_common,
    add_overwrite,
    check_class_idx,
    check_neurons,
    dataset_params,
    parse_int_list,
    parse_settings,
    progress_on,
)
from neuroinspect.errors import CheckpointError, UserError

EXAMPLE = """\
Examples:
  neuroinspect clip train --dataset spurious-shapes --out runs/clip.pt
  neuroinspect visualize --method clip_illusion --ckpt runs/shapes/best.pt --neurons 12 40 --class-idx 1 \\
      --clip synthetic-clip:runs/clip.pt --dataset spurious-shapes --out runs/vis
  neuroinspect visualize --method clip_illusion --ckpt food/best.pt --neurons 1039 1172 --class-idx 93 \\
      --clip ViT-B-32:laion2b_s34b_b79k --iters 450 --device cuda --out runs/food-vis
  neuroinspect visualize --method exemplars --ckpt runs/shapes/best.pt --neurons 12 --dataset spurious-shapes --out runs/vis
  neuroinspect visualize --method clip_illusion ... --set use_clip=false --set param=pixel   (ablations)
"""

#: CLI option → the constructor argument names it may map to (first accepted one wins).
_OPTION_ARGS: dict[str, tuple[str, ...]] = {
    "iters": ("iters", "steps", "n_steps"),
    "images_per_pair": ("images_per_pair", "n_images", "k", "top_k", "n_inputs"),
    "size": ("image_size", "size"),
    "ref": ("ref",),
    "clip": ("clip",),
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "visualize",
        help="show what neurons encode (visualizers)",
        description=(
            "Visualize neurons (inputs of the decision layer) with a registered visualizer, optionally conditioned "
            "on a class: CLIP-Illusion, Lucent, natural exemplars, Captum attributions. Writes PNGs, activation-map "
            "overlays and a JSON sidecar per (neuron, class) pair under OUT/<method>/<neuron>/<class|none>/, a "
            "contact sheet per method, and one result record per pair."
        ),
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--method", required=True, help="visualizer name (see `neuroinspect methods list --kind visualizers`)"
    )
    p.add_argument("--ckpt", required=True, help="checkpoint written by `neuroinspect train`")
    p.add_argument("--neurons", required=True, nargs="+", help="neuron indices (space or comma separated)")
    p.add_argument(
        "--class-idx",
        nargs="*",
        default=None,
        help="one class for all neurons, or one per neuron (none: unconditioned)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset for natural / attribution methods, class strings and reference activations",
    )
    p.add_argument("--root", default=None, help="dataset root folder (real datasets)")
    p.add_argument("--split", default="val", help="dataset split")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="dataset parameter (repeatable)"
    )
    p.add_argument(
        "--clip",
        default=None,
        help="CLIP spec for CLIP-guided methods: ARCH:TAG, ARCH:PATH, synthetic-clip:PATH",
    )
    p.add_argument("--iters", type=int, default=None, help="optimization steps (synthetic methods)")
    p.add_argument("--images-per-pair", type=int, default=None, help="images per (neuron, class) pair")
    p.add_argument("--size", type=int, default=None, help="image size (default: the model's input size)")
    p.add_argument(
        "--ref", action="store_true", help="reference parity switches of the method (e.g. coupled loss)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other method hyperparameter (repeatable)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--results", default=None, help="result records file (default: OUT/results.jsonl)")
    p.add_argument("--no-faithfulness", action="store_true", help="skip the faithfulness metrics")
    p.add_argument(
        "--no-concept-recovery",
        action="store_true",
        help="skip concept recovery (bundled benchmarks only: ground truth per neuron + attribute classifiers)",
    )
    p.add_argument(
        "--truth-samples",
        type=int,
        default=64,
        help="samples of the split re-rendered with every core x spurious value for the neuron ground truth",
    )
    p.add_argument(
        "--attr-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute classifier setting for concept recovery, e.g. epochs=20 or method=logreg (repeatable)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="batch size for feature extraction and metrics")
    add_overwrite(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


# -- argument handling ---------------------------------------------------------------------------------
def method_kwargs(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor arguments from the CLI options the method accepts; a UserError for one it does not."""
    params = inspect.signature(cls).parameters
    accepted = {k for k in params if k != "self"}
    out: dict[str, Any] = {}
    for option, names in _OPTION_ARGS.items():
        value = getattr(args, option)
        if value is None or value is False:
            continue
        target = next((n for n in names if n in accepted), None)
        if target is None:
            flag = "--" + option.replace("_", "-")
            raise UserError(
                f"{flag} does not apply to --method {args.method}; drop it (its options: {', '.join(sorted(accepted))})."
            )
        out[target] = value
    for key, value in parse_settings(args.set, "--set").items():
        if key not in accepted:
            raise UserError(
                f"--method {args.method} has no hyperparameter {key!r}; valid ones: {', '.join(sorted(accepted))}."
            )
        if isinstance(value, list) and isinstance(params[key].default, tuple):
            value = tuple(value)
        out[key] = value
    return out


def parse_classes(values: list[str] | None, n_neurons: int) -> list[int | None]:
    if not values:
        return [None] * n_neurons
    classes: list[int | None] = []
    for v in values:
        if v.lower() in ("none", "-"):
            classes.extend([None])
        else:
            classes.extend(parse_int_list(v, "class indices"))
    if len(classes) == 1:
        return classes * n_neurons
    if len(classes) != n_neurons:
        raise UserError(
            f"{len(classes)} --class-idx values for {n_neurons} neurons; give one class for all or one per neuron."
        )
    return classes


def class_strings(ckpt: Any, dataset: Any) -> list[str]:
    """CLIP class strings: the dataset's prompts, else its registered domain's strings, else the checkpoint's class names."""
    if dataset is not None and getattr(dataset, "prompts", None):
        return list(dataset.prompts)
    try:
        from neuroinspect.datasets import DATASETS
        from neuroinspect.datasets.classnames import DOMAIN_PROMPTS

        if ckpt.dataset in DATASETS:
            domain = getattr(DATASETS.get(ckpt.dataset), "domain", "")
            strings = DOMAIN_PROMPTS.get(domain)
            if strings is not None and len(strings) == len(ckpt.classes):
                return list(strings)
    except ImportError:  # pragma: no cover - classnames ships with the package
        pass
    return list(ckpt.classes)


def _load_dataset(args: argparse.Namespace, ckpt: Any, surface: Any) -> Any:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.transforms import eval_transform, transform_kind

    name = args.dataset or ckpt.dataset
    spec = get_dataset(name)
    spec.check_split(args.split)
    params = dict(ckpt.dataset_params) if ckpt.dataset == name else {}
    params.update(dataset_params(args))
    transform = eval_transform(surface.data_config, transform_kind(name), dataset=name)
    dataset = spec.load(args.root, args.split, transform, **params)
    if dataset.num_classes != surface.num_classes:
        raise CheckpointError(
            f"{args.ckpt} has {surface.num_classes} classes but {name}/{args.split} has {dataset.num_classes}. "
            "Use a checkpoint trained on this dataset (and the same --param values)."
        )
    return dataset, transform, params


def _needs_dataset(cls: type) -> bool:
    return getattr(cls, "kind", "synthetic") in ("natural", "attribution")


def _uses_clip(kwargs: dict[str, Any], cls: type) -> bool:
    accepted = inspect.signature(cls).parameters
    if "clip" not in accepted:
        return False
    if "use_clip" in accepted:
        use = kwargs.get("use_clip", accepted["use_clip"].default)
        if not use:
            return False
    return True


# -- the command -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.records import append_records
    from neuroinspect.methods.visualizers import VISUALIZERS, load_all
    from neuroinspect.methods.visualizers.output import (
        contact_sheet,
        save_visualization,
        visualization_record,
    )
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import Provenance, resolve_device, seed_everything

    load_all()
    cls = VISUALIZERS.get(args.method)
    kwargs = method_kwargs(cls, args)
    neurons: list[int] = []
    for tok in args.neurons:
        neurons.extend(parse_int_list(tok, "neuron indices"))
    if not neurons:
        raise UserError("--neurons needs at least one neuron index.")
    concept_settings = _concept_settings(args)  # checked before any work
    device = resolve_device(args.device)
    show = progress_on(args)
    seed_everything(args.seed)
    # One --out can hold several methods (OUT/<method>/) and their shared results.jsonl: the method's
    # own folder is what a previous run of it used.
    outputs = Outputs(overwrite=args.overwrite)
    out_dir = outputs.folder(args.out, "--out", reuse=True)
    outputs.folder(out_dir / args.method, "--out")
    results = outputs.records(args.results or out_dir / "results.jsonl", "--results")

    with outputs.guard(), Provenance(device=str(device)) as prov:
        ckpt = load_checkpoint(args.ckpt)
        surface = ckpt.surface
        if not kwargs.get("layer"):
            check_neurons(neurons, surface.num_features)
        classes = parse_classes(args.class_idx, len(neurons))
        for c in classes:
            if c is not None:
                check_class_idx(c, surface.num_classes, ckpt.classes)

        clip = None
        if _uses_clip(kwargs, cls) and (any(c is not None for c in classes) or kwargs.get("auto_class")):
            from neuroinspect.clip.loader import DEFAULT_CLIP, load_clip

            spec = kwargs.get("clip") or inspect.signature(cls).parameters["clip"].default or DEFAULT_CLIP
            clip = load_clip(
                str(spec), device=device
            )  # fails at once (exit 2) when the weights are not available
            kwargs["clip"] = clip
        if "checkpoint_sha" in inspect.signature(cls).parameters and ckpt.sha256:
            kwargs.setdefault("checkpoint_sha", ckpt.sha256)  # share the feature cache with other commands
        visualizer = cls(**kwargs)

        dataset = transform = None
        params: dict[str, Any] = {}
        if args.dataset or _needs_dataset(cls):
            dataset, transform, params = _load_dataset(args, ckpt, surface)
        class_names = class_strings(ckpt, dataset)

        visualizations = visualizer.visualize(
            surface,
            neurons,
            classes,
            dataset=dataset,
            class_names=class_names,
            seed=args.seed,
            device=device,
            show_progress=show,
        )
        faith = _faithfulness(
            args, visualizations, surface, ckpt, dataset, transform, clip, class_names, device, show
        )
        concepts, concept_config = _concept_recovery(
            args,
            concept_settings,
            visualizations,
            faith,
            surface,
            ckpt,
            dataset,
            transform,
            params,
            device,
            show,
        )

    from neuroinspect.harness.models import model_name as record_model_name

    model_name = record_model_name(surface)
    dataset_name = args.dataset or ckpt.dataset
    context = {
        "checkpoint": {"path": str(ckpt.path), "sha256": ckpt.sha256, "arch": surface.spec.arch},
        "dataset": dataset_name,
        "split": args.split if dataset is not None else None,
        "seed": args.seed,
        "device": str(device),
    }
    provenance = prov.as_dict()
    saved = []
    records = []
    for vis, metrics, concept in zip(visualizations, faith, concepts, strict=True):
        sidecar = {**metrics, "concept_recovery": concept} if (metrics and concept) else metrics
        s = save_visualization(vis, out_dir, class_names, metrics=sidecar, context=context)
        saved.append(s)
        flat = {
            f"faithfulness_{k}": v
            for k, v in (metrics or {}).items()
            if k.endswith("_mean")
            or k
            in ("class_top1", "diversity_feature", "diversity_pixel", "deletion_auc", "deletion_auc_random")
        }
        records.append(
            visualization_record(
                s,
                dataset=dataset_name,
                model=model_name,
                seed=args.seed,
                provenance=provenance,
                config={
                    "checkpoint_sha256": ckpt.sha256,
                    "split": context["split"],
                    "neurons": neurons,
                    "classes": classes,
                    **({"concept_recovery": concept_config} if concept else {}),
                },
                metrics=record_metrics(flat, metrics, concept),
            )
        )
    sheets = []
    for method in sorted({s.visualization.method for s in saved}):
        group = [s for s in saved if s.visualization.method == method]
        title = f"{method} | {model_name} on {dataset_name} | {Path(args.ckpt).name} | seed {args.seed}"
        sheets.append(contact_sheet(group, out_dir / method, title=title))
    append_records(results, records, replace=args.overwrite)
    _print_table(saved)
    for png, html in sheets:
        print(f"contact sheet: {png}  {html}")
    print(f"{len(records)} record(s) appended to {results}")
    return 0


def _faithfulness(
    args: argparse.Namespace,
    visualizations: list[Any],
    surface: Any,
    ckpt: Any,
    dataset: Any,
    transform: Any,
    clip: Any,
    class_names: list[str],
    device: Any,
    show: bool,
) -> list[dict[str, Any] | None]:
    """``faithfulness.compute`` for each visualization (``None`` each when skipped or unavailable)."""
    if args.no_faithfulness or any(getattr(v, "settings", {}).get("layer") for v in visualizations):
        # (a probe of another layer has no pooled-layer neuron to score)
        return [None] * len(visualizations)
    try:
        from neuroinspect.methods.visualizers import faithfulness
    except ImportError:  # pragma: no cover - ships with the package
        return [None] * len(visualizations)
    features = None
    if dataset is not None:
        from neuroinspect.harness.features import FeatureCache
        from neuroinspect.harness.transforms import describe

        features = FeatureCache().get_or_compute(
            surface,
            ckpt.sha256 or str(ckpt.path),
            dataset,
            batch_size=args.batch_size,
            device=device,
            transform_desc=describe(transform),
            show_progress=show,
        )
    from neuroinspect.clip.prompts import prompts_for

    out: list[dict[str, Any] | None] = []
    for vis in visualizations:
        ref = (
            faithfulness.reference_activations(features, vis.neuron)
            if features is not None and vis.neuron < features.num_features
            else None
        )
        text = (
            prompts_for(class_names[vis.class_idx])
            if (clip is not None and vis.class_idx is not None)
            else None
        )
        out.append(
            faithfulness.compute(
                vis,
                surface,
                reference_activations=ref,
                clip=clip,
                class_text=text,
                device=device,
                batch_size=args.batch_size,
                seed=args.seed,
            )
        )
    return out


def record_metrics(
    flat: dict[str, Any], faith: dict[str, Any] | None, concept: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A record's extra metrics: flat faithfulness means, the full faithfulness dict, concept recovery."""
    if not faith:
        return None
    out = {**flat, "faithfulness": faith}
    if concept:
        out["concept_recovered"] = concept["recovered"]
        out["concept_value_match"] = concept["value_match"]
        out["concept_recovery"] = concept
    return out


def _concept_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The attribute classifier settings (``--attr-set`` over the defaults), or ``None`` when concept
    recovery is off; a UserError for a bad setting or ``--truth-samples``."""
    if args.no_concept_recovery or args.no_faithfulness:
        return None
    from neuroinspect.methods.concept_recovery import classifier_settings

    settings = classifier_settings(parse_settings(args.attr_set, "--attr-set"))
    if args.truth_samples < 1:
        raise UserError(f"--truth-samples must be at least 1, got {args.truth_samples}.")
    return settings


def _concept_recovery(
    args: argparse.Namespace,
    settings: dict[str, Any] | None,
    visualizations: list[Any],
    faith: list[dict[str, Any] | None],
    surface: Any,
    ckpt: Any,
    dataset: Any,
    transform: Any,
    params: dict[str, Any],
    device: Any,
    show: bool,
) -> tuple[list[dict[str, Any] | None], dict[str, Any] | None]:
    """Concept recovery per visualization (``None`` each when skipped) and its run-level config.

    Skipped (silently) when disabled, when faithfulness was skipped, or when the loaded dataset has no
    ground truth (real datasets, no dataset).
    """
    skipped: list[dict[str, Any] | None] = [None] * len(visualizations)
    if settings is None or all(f is None for f in faith):
        return skipped, None
    from neuroinspect.methods import concept_recovery as cr

    if dataset is None or not cr.has_ground_truth(dataset):
        return skipped, None
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.transforms import describe

    truth, truth_info = cr.cached_truth(
        surface,
        ckpt.sha256,
        dataset,
        transform,
        args.truth_samples,
        args.seed,
        transform_desc=describe(transform),
        device=device,
        batch_size=args.batch_size,
        show_progress=show,
    )
    spec = get_dataset(dataset.name)
    train = spec.load(args.root, "train", None, **params)
    heldout = dataset if dataset.split == "val" else spec.load(args.root, "val", None, **params)
    clf, clf_info = cr.cached_classifiers(train, heldout, settings, args.seed, show_progress=show)
    out = [
        None if f is None else cr.recovery(vis, truth, clf, clf_info)
        for vis, f in zip(visualizations, faith, strict=True)
    ]
    acc = {k: clf.accuracy[k]["accuracy"] for k in ("core", "spurious")}
    counts = truth.counts()
    config = {
        "truth": {
            "split": f"{truth.dataset}/{truth.split}",
            "n_samples": len(truth.indices),
            "seed": args.seed,
            "thresholds": asdict(truth.thresholds),
            "counts": counts,
            "cache_key": truth_info["cache_key"],
        },
        "classifiers": {
            **clf.settings,
            "heldout": clf.accuracy.get("heldout"),
            "accuracy": acc,
            "cache_key": clf_info["cache_key"],
        },
        "reliable_accuracy": cr.RELIABLE_ACCURACY,
    }
    reliable = min(acc.values()) >= cr.RELIABLE_ACCURACY
    print(
        f"concept recovery: ground truth on {truth.dataset}/{truth.split} ({len(truth.indices)} samples"
        f"{', cached' if truth_info['cached'] else ''}): "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; attribute classifiers ({clf.method}{', cached' if clf_info['cached'] else ', trained'}) "
        f"held-out accuracy core {acc['core']:.2f}, spurious {acc['spurious']:.2f}"
        + ("" if reliable else f" (below {cr.RELIABLE_ACCURACY}: results flagged unreliable)")
    )
    return out, config


def _recovered_text(concept: dict[str, Any] | None) -> str:
    """``"spurious yes"`` / ``"core no"`` / ``"mixed -"`` (truth label, recovered); ``"-"`` when absent."""
    if not concept:
        return "-"
    rec = concept.get("recovered")
    text = f"{concept['truth_label']} {'-' if rec is None else ('yes' if rec else 'no')}"
    return text if concept.get("reliable", True) else text + "?"


def _print_table(saved: list[Any]) -> None:
    rows = [
        ("method", "neuron", "class", "activation", "class p", "clip", "percentile", "recovered", "folder")
    ]
    for s in saved:
        m = s.meta["summary"]
        f = s.meta.get("metrics") or {}
        pct = f.get("activation_percentile_mean")
        rows.append(
            (
                s.visualization.method,
                str(s.meta["neuron"]),
                "none" if s.meta["class_idx"] is None else str(s.meta["class_idx"]),
                f"{m['mean_activation']:.4g}" if "mean_activation" in m else "-",
                f"{m['mean_class_prob']:.3f}" if "mean_class_prob" in m else "-",
                f"{m['mean_clip_score']:.3f}" if "mean_clip_score" in m else "-",
                f"{pct:.1f}" if isinstance(pct, (int, float)) else "-",
                _recovered_text(f.get("concept_recovery")),
                str(s.directory),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
