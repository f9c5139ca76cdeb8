"""``neuroinspect clip``: a small CLIP for a bundled benchmark (offline guidance for CLIP-Illusion).

``clip train`` trains a tiny open_clip model contrastively on captions made from the benchmark's
known attributes and prints its top-1 caption retrieval on the held-out test split (overall and
per attribute). ``clip eval`` measures the same for any CLIP spec (e.g. a real open_clip model).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from neuroinspect.commands.common import add_common, add_overwrite, dataset_params, progress_on
from neuroinspect.errors import UserError

EXAMPLE = """\
Examples:
  neuroinspect clip train --dataset spurious-shapes --out runs/clip/shapes-clip.pt
  neuroinspect clip train --dataset colored-digits --epochs 10 --seed 1 --out digits-clip.pt
  neuroinspect clip eval --clip synthetic-clip:runs/clip/shapes-clip.pt --dataset spurious-shapes
  neuroinspect visualize --method clip_illusion --clip synthetic-clip:runs/clip/shapes-clip.pt ...
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "clip",
        help="train a small CLIP for a bundled benchmark (offline guidance)",
        description=(
            "Real CLIP weights need the model hub. For the bundled benchmarks, train a tiny CLIP offline on "
            "captions made from their known attributes ('a photo of a triangle on water') and use it with "
            "--clip synthetic-clip:PATH."
        ),
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="clip_command", metavar="ACTION")
    t = sub.add_parser(
        "train",
        help="train a small CLIP on a bundled benchmark and report held-out caption retrieval",
        description=(
            "Train a tiny open_clip model (a small CNN image tower through timm, a transformer text tower) "
            "contrastively on a bundled benchmark and print its top-1 caption retrieval on the test split. By default the CLIP sees the "
            "benchmark rendered with balanced attributes (align=0.5: a CLIP's world knowledge is not confounded "
            "like the classifier's training set) from a data seed of its own; --param overrides that."
        ),
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    t.add_argument("--dataset", required=True, help="a bundled benchmark, e.g. spurious-shapes")
    t.add_argument("--out", default=None, help="output file (default: $NEUROINSPECT_CACHE/clip/<dataset>.pt)")
    t.add_argument("--epochs", type=int, default=8, help="contrastive passes over the training renders")
    t.add_argument("--batch-size", type=int, default=128, help="images per contrastive batch")
    t.add_argument(
        "--lr", type=float, default=2e-3, help="AdamW learning rate (cosine schedule, 5%% warm-up)"
    )
    t.add_argument(
        "--image-size", type=int, default=None, help="CLIP input size (default: the benchmark's, at most 32)"
    )
    t.add_argument(
        "--pretrain-steps",
        type=int,
        default=600,
        help="supervised image-tower steps before the contrastive ones",
    )
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    t.add_argument("--root", default=None, help="dataset root (bundled benchmarks need none)")
    t.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="benchmark parameter (repeatable)"
    )
    t.add_argument(
        "--confounded", action="store_true", help="train on the benchmark's own (confounded) attribute mix"
    )
    t.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_overwrite(t)
    add_common(t)
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "eval",
        help="caption retrieval of a CLIP on a bundled benchmark's split",
        description="Top-1 caption retrieval (overall, per attribute) and zero-shot class accuracy of a CLIP.",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    e.add_argument("--clip", required=True, help="CLIP spec: ARCH:TAG, ARCH:PATH, synthetic-clip:PATH")
    e.add_argument("--dataset", required=True, help="a bundled benchmark, e.g. spurious-shapes")
    e.add_argument("--split", default="test", help="the split to measure on")
    e.add_argument("--root", default=None, help="dataset root (bundled benchmarks need none)")
    e.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="benchmark parameter (repeatable)"
    )
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_common(e, seed=False)
    e.set_defaults(func=run_eval)
    p.set_defaults(func=lambda args: _no_action(p))
    return p


def _no_action(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _benchmark(name: str) -> Any:
    from neuroinspect.datasets import get_dataset

    spec = get_dataset(name)
    if getattr(spec, "kind", "real") != "benchmark":
        from neuroinspect.datasets import DATASETS

        benches = sorted(n for n in DATASETS.names() if getattr(DATASETS.get(n), "kind", "") == "benchmark")
        raise UserError(
            f"{name!r} is a real dataset without attribute labels; a synthetic CLIP needs a bundled benchmark: {', '.join(benches)}."
        )
    return spec


def format_metrics(m: dict[str, Any]) -> str:
    """The retrieval metrics as a few readable lines."""
    lines = [
        f"top-1 caption retrieval: {m['top1']:.3f}  ({m['n_images']} held-out images, {m['n_captions']} captions, "
        f"chance {m['chance_top1']:.3f})",
        f"  core attribute:     {m['core_acc']:.3f}  "
        + "  ".join(f"{k} {v:.3f}" for k, v in m.get("core_acc_by_value", {}).items()),
        f"  spurious attribute: {m['spurious_acc']:.3f}  "
        + "  ".join(f"{k} {v:.3f}" for k, v in m.get("spurious_acc_by_value", {}).items()),
        f"  zero-shot class accuracy (32 templates): {m['zero_shot_class_acc']:.3f}",
    ]
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    from neuroinspect.clip.loader import default_synthetic_path
    from neuroinspect.clip.synthetic import train_synthetic_clip
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import resolve_device, seed_everything

    spec = _benchmark(args.dataset)
    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}.")
    params = dataset_params(args)
    defaults = getattr(spec, "defaults", {})
    if not args.confounded and "align" in defaults and "align" not in params:
        params["align"] = 0.5
    if "seed" in defaults and "seed" not in params:
        params["seed"] = 1000 + int(args.seed)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    outputs = Outputs(overwrite=args.overwrite)
    out = outputs.file(
        args.out or default_synthetic_path(args.dataset), "--out", example=f"{args.dataset}-clip.pt"
    )
    with outputs.guard():
        result = train_synthetic_clip(
            args.dataset,
            out,
            root=args.root,
            params=params,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            image_size=args.image_size,
            seed=args.seed,
            device=device,
            max_steps=args.max_steps,
            pretrain_steps=args.pretrain_steps,
            show_progress=progress_on(args),
        )
    if args.json:
        print(
            json.dumps(
                {"path": str(result.path), "metrics": result.metrics, "train_config": result.train_config},
                indent=2,
            )
        )
    else:
        print(f"synthetic CLIP for {args.dataset}: {result.path}")
        print(
            f"trained {result.train_config['pretrain_steps']} image-tower + {result.train_config['steps']} contrastive steps "
            f"on {result.train_config['n_train']} images "
            f"in {result.metrics['train_seconds']:.0f} s (data params: {params})"
        )
        print(format_metrics(result.metrics))
        print(f"use it with: --clip synthetic-clip:{result.path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from neuroinspect.clip.loader import load_clip
    from neuroinspect.clip.synthetic import retrieval_metrics
    from neuroinspect.datasets import load_dataset
    from neuroinspect.runtime import resolve_device

    _benchmark(args.dataset)
    device = resolve_device(args.device)
    clip = load_clip(args.clip, device=device)
    dataset = load_dataset(args.dataset, args.root, args.split, None, **dataset_params(args))
    metrics = retrieval_metrics(clip, dataset)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{args.clip} on {args.dataset}/{args.split}")
        print(format_metrics(metrics))
    return 0
