"""``neuroinspect evaluate``: accuracy, per-class, worst-class and worst-group accuracy with intervals."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import HelpFormatter, add_common, add_overwrite, dataset_params, progress_on
from neuroinspect.errors import UserError

EPILOG = """\
Examples:
  neuroinspect evaluate --dataset spurious-shapes --ckpt runs/shapes-r18/best.pt
  neuroinspect evaluate --dataset waterbirds --root data --ckpt runs/wb/best.pt --class-idx 1 \\
      --out results/evaluation.jsonl --json runs/wb/test_metrics.json

The table gives percentile-bootstrap intervals (resampling test images within each class, or each
(group, class) cell when the dataset has groups). --out appends a validated `evaluation` record
(JSON Lines) whose seed is the checkpoint's training seed, so that the leaderboard averages models
trained with different seeds (--seed, which seeds the bootstrap, when the checkpoint records none);
--json writes the full metrics dict. Features are cached per checkpoint, split and
transform ($NEUROINSPECT_CACHE), so later `debug` / `edit` runs reuse them.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:

    p = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class, worst-class and worst-group accuracy with confidence intervals",
        description="Evaluate a neuroinspect checkpoint on a dataset split.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", default=None, help="registered dataset name (default: the checkpoint's)")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `neuroinspect train` (best.pt)")
    p.add_argument("--root", default=None, help="dataset root folder (real datasets)")
    p.add_argument("--split", default="test", help="split to evaluate")
    p.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="dataset parameter override, repeatable"
    )
    p.add_argument(
        "--class-idx", type=int, default=None, help="class whose accuracy is reported as class_acc"
    )
    p.add_argument(
        "--model", default=None, help="expected architecture; an error if the checkpoint holds another"
    )
    p.add_argument("--batch-size", type=int, default=128, help="feature extraction batch size")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (0: none)")
    p.add_argument("--ci", type=float, default=0.95, help="interval coverage")
    tf = p.add_mutually_exclusive_group()
    tf.add_argument(
        "--ref-transforms",
        dest="ref_transforms",
        action="store_true",
        default=None,
        help="the reference's eval transforms",
    )
    tf.add_argument(
        "--timm-transforms", dest="ref_transforms", action="store_false", help="timm's eval transform"
    )
    p.add_argument("--out", default=None, help="append an evaluation record to this JSON Lines file")
    p.add_argument("--json", default=None, help="write the full metrics dict to this JSON file")
    add_overwrite(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from neuroinspect.fileio import atomic_write_json
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.evaluation import (
        check_class_index,
        evaluate_checkpoint,
        evaluation_record,
        format_metrics_table,
    )
    from neuroinspect.harness.records import append_records
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import Provenance, resolve_device

    if args.n_boot < 0:
        raise UserError(f"--n-boot {args.n_boot} must be >= 0.")
    if not 0 < args.ci < 1:
        raise UserError(f"--ci {args.ci} must be between 0 and 1, e.g. 0.95.")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be at least 1.")
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.ckpt, expect_dataset=args.dataset, map_location="cpu")
    dataset = args.dataset or ckpt.dataset
    check_class_index(args.class_idx, ckpt.classes)
    outputs = Outputs(overwrite=args.overwrite)
    if args.json:
        outputs.file(args.json, "--json", example="metrics.json")
    if args.out:
        outputs.records(args.out, "--out")
    with Provenance(device=str(device)) as prov:
        metrics, fs = evaluate_checkpoint(
            ckpt,
            dataset,
            root=args.root,
            split=args.split,
            params=dataset_params(args),
            batch_size=args.batch_size,
            device=device,
            class_idx=args.class_idx,
            n_boot=args.n_boot,
            ci=args.ci,
            seed=args.seed,
            ref_transforms=args.ref_transforms,
            model=args.model,
            show_progress=progress_on(args),
        )
    print(f"{ckpt.surface.spec.arch} ({Path(args.ckpt)}) on {dataset}/{args.split}")
    print(format_metrics_table(metrics, ckpt.classes))
    if args.json:
        atomic_write_json(args.json, metrics)
        print(f"metrics written to {args.json}")
    if args.out:
        # The record's seed is the run's: the model's training seed, not the bootstrap's.
        train_seed = ckpt.train_config.get("seed")
        if not isinstance(train_seed, int) or isinstance(train_seed, bool):
            train_seed = args.seed
        record = evaluation_record(
            metrics,
            ckpt,
            prov,
            seed=train_seed,
            config={"cache_key": fs.meta.get("cache_key"), "bootstrap_seed": args.seed},
        )
        append_records(args.out, [record], replace=args.overwrite)
        print(f"evaluation record {record['run_id']} appended to {args.out}")
    return 0
