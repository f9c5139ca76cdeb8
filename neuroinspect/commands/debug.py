"""``neuroinspect debug``: rank the neurons behind the mistakes of one class (a finder on cached features).

Flow: load the checkpoint → load the split with the model's evaluation transform → pooled features
from the feature cache (computed once per checkpoint, split and transform) → the finder → a table of
the insufficient and excessive neurons (neuron, Prec@5 or score, imp), the counts and the editing
target γ, and ``debug.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import (
    HelpFormatter,
    add_common,
    add_overwrite,
    check_class_idx,
    dataset_params,
    method_names,
    parse_settings,
    progress_on,
)
from neuroinspect.errors import CheckpointError, UserError
from neuroinspect.fileio import atomic_write_json

EXAMPLE = """\
Examples:
  neuroinspect debug --dataset spurious-shapes --ckpt runs/shapes/best.pt --class-idx 1 --out runs/debug
  neuroinspect debug --dataset food101 --root data --ckpt best.pt --class-idx 93 --split val --ref
"""

TWO_CLASS_NOTICE = (
    "notice: on a two-class task every mistake's counterfactual shift is parallel to W[c] - W[k], so these "
    "lists rank decision weights, not the mistakes (activation-aware: --finder margin-deficit)."
)

# CLI option → finder constructor argument, for options that only some finders take
_FINDER_OPTIONS = {"max_steps": "--max-steps", "cut_ratio": "--cut-ratio"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "debug",
        help="rank the neurons behind a class's mistakes (finders)",
        description=(
            "Find the neurons responsible for the mistakes of one class: the counterfactual shift of each "
            "mistake's pooled feature (NeuroInspect) or a baseline finder, on features cached once per "
            "checkpoint and split. Prints the insufficient / excessive neuron lists with Prec@5 and imp."
        ),
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="registered dataset name (see `neuroinspect data list`)")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `neuroinspect train`")
    p.add_argument("--class-idx", type=int, required=True, help="the class whose mistakes are explained")
    p.add_argument(
        "--finder", default="counterfactual", help=f"one of: {', '.join(sorted(method_names('finders')))}"
    )
    p.add_argument("--split", default="val", help="the split whose mistakes are explained")
    p.add_argument("--root", default=None, help="dataset root folder (real datasets)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="dataset parameter (repeatable)"
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="counterfactual: step cap per mistake; unset means 1000"
    )
    p.add_argument(
        "--cut-ratio",
        type=float,
        default=None,
        help="counterfactual: keep neurons whose Prec@5 exceeds this percent; unset means 3.0",
    )
    p.add_argument(
        "--finder-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other finder setting (repeatable), e.g. baseline=class_mean for --finder gradient",
    )
    p.add_argument("--top", type=int, default=30, help="rows per printed list")
    p.add_argument(
        "--ref",
        action="store_true",
        help="reference parity: its voting, imp on the all-class mean, its transforms",
    )
    p.add_argument("--batch-size", type=int, default=128, help="batch size of the feature extraction")
    p.add_argument("--out", default=None, help="folder for debug.json (nothing is written without it)")
    add_overwrite(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def _finder_kwargs(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    accepted = set(inspect.signature(cls).parameters)
    kwargs: dict[str, Any] = {"top": args.top, "ref": args.ref, "device": args.device}
    for key, flag in _FINDER_OPTIONS.items():
        value = getattr(args, key)
        if value is None:
            continue
        if key not in accepted:
            raise UserError(
                f"{flag} applies to the counterfactual finder, not to --finder {args.finder}; drop {flag}."
            )
        kwargs[key] = value
    for key, value in parse_settings(args.finder_param, "--finder-param").items():
        if key not in accepted or key in ("top", "ref", "device"):
            settable = sorted(k for k in accepted if k not in ("top", "ref", "device"))
            raise UserError(
                f"--finder {args.finder} has no setting {key!r}"
                + (f"; it takes: {', '.join(settable)}." if settable else "; it takes none.")
            )
        kwargs[key] = value
    return kwargs


def _transform(surface: Any, dataset: str, ref: bool) -> Any:
    from neuroinspect.harness.transforms import eval_transform, transform_kind

    return eval_transform(surface.data_config, transform_kind(dataset), ref=ref, dataset=dataset)


def run(args: argparse.Namespace) -> int:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.features import FeatureCache
    from neuroinspect.harness.transforms import describe
    from neuroinspect.methods.finders import FINDERS, load_all
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import Provenance, resolve_device, seed_everything

    load_all()
    finder_cls = FINDERS.get(args.finder)
    kwargs = _finder_kwargs(finder_cls, args)
    device = resolve_device(args.device)
    kwargs["device"] = str(device)
    show = progress_on(args)
    if args.out:
        Outputs(overwrite=args.overwrite).folder(args.out, "--out")
    seed_everything(args.seed)
    with Provenance(device=str(device)) as prov:
        ckpt = load_checkpoint(args.ckpt)
        surface = ckpt.surface.freeze()
        check_class_idx(args.class_idx, surface.num_classes, ckpt.classes)
        finder = finder_cls(**kwargs)

        spec = get_dataset(args.dataset)
        params = dict(ckpt.dataset_params) if ckpt.dataset == args.dataset else {}
        params.update(dataset_params(args))
        spec.check_split(args.split)
        transform = _transform(surface, args.dataset, args.ref)
        dataset = spec.load(args.root, args.split, transform, **params)
        if dataset.num_classes != surface.num_classes:
            raise CheckpointError(
                f"{args.ckpt} has {surface.num_classes} classes but {args.dataset}/{args.split} has {dataset.num_classes}. "
                "Use a checkpoint trained on this dataset (and the same --param values)."
            )
        features = FeatureCache().get_or_compute(
            surface,
            ckpt.sha256 or str(ckpt.path),
            dataset,
            batch_size=args.batch_size,
            device=device,
            transform_desc=describe(transform),
            show_progress=show,
        )
        result = finder.find(surface.decision, features, args.class_idx, seed=args.seed, show_progress=show)
    print(result.format_table(top=args.top, class_names=ckpt.classes))
    if surface.num_classes == 2 and args.finder == "counterfactual":
        print(TWO_CLASS_NOTICE, file=sys.stderr)
    if args.out:
        out = Path(args.out) / "debug.json"
        payload = {
            **result.to_json(),
            "class_name": ckpt.classes[args.class_idx],
            "dataset": args.dataset,
            "dataset_params": params,
            "checkpoint": {"path": str(ckpt.path), "sha256": ckpt.sha256, "arch": surface.spec.arch},
            "num_features": surface.num_features,
            "transform": describe(transform),
            "feature_cache_key": features.meta.get("cache_key"),
            "provenance": prov.as_dict(),
        }
        atomic_write_json(out, payload)
        print(f"\nwrote {out}")
    return 0
