"""Calibrate ``spurious-shapes``: does the default benchmark fool a standard model?

Trains a random-init timm ``resnet18`` on the default ``spurious-shapes`` (64 px) with the project's
training code (:func:`neuroinspect.harness.training.train_classifier`) and the benchmark's training
preset (``default`` / ``spurious-shapes``), once per seed, and scores the group-balanced test split.

Target (DESIGN.md "Bundled benchmarks"): a model that learns the task (average test accuracy
>= 85%) but leans on the background (worst-group test accuracy at least 15 points below the
average), on the mean over seeds 0, 1, 2; per-seed verdicts are printed too.

Example::

    .venv/bin/python benchmarks/calibrate_shapes.py                 # seeds 0,1,2, 2 threads
    .venv/bin/python benchmarks/calibrate_shapes.py --seeds 0 --param contrast=0.4 --set epochs=4
    .venv/bin/python benchmarks/calibrate_shapes.py --smoke       # seconds: a check, not a figure

Prints per seed: average test accuracy, worst-group accuracy, the gap, per-group accuracy, CPU and
wall seconds of training; then mean ± std over seeds and a final line
``calibration: avg=<..> worst_group=<..> gap=<..> pass=<True/False>``.
The training seed varies; the dataset keeps its own ``seed`` parameter (default 0) unless
``--vary-data-seed`` is given. CPU seconds include every thread of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import SMOKE_DATA, add_smoke, apply_smoke  # noqa: E402  (benchmarks/ is on sys.path)

import neuroinspect  # noqa: E402,F401
from neuroinspect.commands.common import parse_int_list, parse_settings  # noqa: E402
from neuroinspect.datasets import get_dataset  # noqa: E402
from neuroinspect.errors import UserError  # noqa: E402
from neuroinspect.harness.metrics import classification_metrics  # noqa: E402
from neuroinspect.harness.models import create_model  # noqa: E402
from neuroinspect.harness.presets import get_preset  # noqa: E402
from neuroinspect.harness.training import build_datasets, predict, train_classifier  # noqa: E402
from neuroinspect.harness.transforms import eval_transform  # noqa: E402
from neuroinspect.runtime import seed_everything  # noqa: E402

DATASET = "spurious-shapes"
TARGET_AVG = 0.85
TARGET_GAP = 0.15


def run_seed(
    seed: int, data_params: dict[str, Any], preset: str, overrides: dict[str, Any], arch: str
) -> dict[str, Any]:
    """Train one model and score the test split; returns the figures printed for one seed."""
    spec = get_dataset(DATASET)
    config = get_preset(preset, DATASET).with_overrides(**overrides)
    image_size = config.image_size or spec.default_image_size
    seed_everything(seed)  # the model's random init
    surface = create_model(
        config.model or arch,
        num_classes=len(spec.resolve(data_params)["shapes"]),
        pretrained=False,
        image_size=image_size,
    )
    t_data = time.perf_counter()
    train_ds, val_ds = build_datasets(DATASET, None, surface.data_config, config, params=data_params)
    test_ds = spec.load(None, "test", eval_transform(surface.data_config, "benchmark"), **data_params)
    data_seconds = time.perf_counter() - t_data

    cpu0, wall0 = time.process_time(), time.perf_counter()

    def log_epoch(row: dict[str, Any]) -> None:
        print(
            f"  seed {seed} epoch {row['epoch'] + 1}/{config.epochs}: train acc {row['train_acc']:.4f}, "
            f"val acc {row['val_acc']:.4f}, val worst-group {row['val_worst_group_acc']:.4f} ({row['seconds']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    result = train_classifier(
        surface, train_ds, val_ds, config, seed=seed, show_progress=False, on_epoch_end=log_epoch
    )
    cpu_seconds, wall_seconds = time.process_time() - cpu0, time.perf_counter() - wall0

    out = predict(result.surface, test_ds, batch_size=256)
    m = classification_metrics(
        out["preds"],
        out["labels"],
        groups=out["groups"],
        num_classes=test_ds.num_classes,
        num_groups=test_ds.num_groups,
        n_boot=0,
    )
    return {
        "seed": seed,
        "avg": float(m["test_acc"]),
        "worst_group": float(m["worst_group_acc"]),
        "gap": float(m["test_acc"] - m["worst_group_acc"]),
        "group_acc": dict(zip(test_ds.group_names or [], [float(a) for a in m["group_acc"]], strict=True)),
        "best_epoch": result.best_epoch,
        "val_acc": [round(float(r["val_acc"]), 4) for r in result.history],
        "train_acc": [round(float(r["train_acc"]), 4) for r in result.history],
        "cpu_seconds": cpu_seconds,
        "wall_seconds": wall_seconds,
        "data_seconds": data_seconds,
        "train_size": len(train_ds),
        "test_size": len(test_ds),
        "config": config.as_dict(),
    }


def verdict(avg: float, worst: float) -> bool:
    return avg >= TARGET_AVG and avg - worst >= TARGET_GAP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, e.g. 0,1,2")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="spurious-shapes parameter (repeatable)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training-config override (repeatable)",
    )
    parser.add_argument(
        "--preset", default="default", help="training preset (its spurious-shapes entry is used)"
    )
    parser.add_argument("--arch", default="resnet18", help="timm architecture when the preset names none")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--vary-data-seed", action="store_true", help="also use the training seed as the dataset seed"
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    add_smoke(parser)
    args = parser.parse_args(argv)
    apply_smoke(parser, args, {"seeds": "0", "threads": 1})

    torch.set_num_threads(args.threads)
    seeds = parse_int_list(args.seeds, "--seeds")
    try:
        data_params = parse_settings(args.param, "--param")
        overrides = parse_settings(args.set, "--set")
    except UserError as err:
        raise SystemExit(str(err)) from None
    if args.smoke:  # one epoch on a tiny benchmark at 32 px; --param / --set still win
        data_params = {**SMOKE_DATA, "image_size": 32, **data_params}
        overrides = {"epochs": 1, "image_size": 32, **overrides}
    resolved = get_dataset(DATASET).resolve(data_params)
    print(f"dataset {DATASET}: " + ", ".join(f"{k}={v}" for k, v in resolved.items()))
    print(
        f"preset {args.preset!r} with overrides {overrides or '{}'}; torch threads {args.threads}; cpu count {os.cpu_count()}"
    )
    print(f"target: avg >= {TARGET_AVG:.2f} and avg - worst_group >= {TARGET_GAP:.2f}")

    rows = []
    for seed in seeds:
        params = dict(data_params, seed=seed) if args.vary_data_seed else data_params
        row = run_seed(seed, params, args.preset, overrides, args.arch)
        rows.append(row)
        groups = "  ".join(f"{name} {acc:.3f}" for name, acc in row["group_acc"].items())
        print(
            f"seed {seed}: avg {row['avg']:.4f}  worst_group {row['worst_group']:.4f}  gap {row['gap']:.4f}  "
            f"pass {verdict(row['avg'], row['worst_group'])}  | {groups}  | best epoch {row['best_epoch'] + 1}, "
            f"val acc per epoch {row['val_acc']}  | train {row['cpu_seconds']:.0f} CPU s, {row['wall_seconds']:.0f} wall s "
            f"(data {row['data_seconds']:.1f} s; n_train {row['train_size']}, n_test {row['test_size']})",
            flush=True,
        )

    def stat(key: str) -> tuple[float, float]:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0

    summary = {k: stat(k) for k in ("avg", "worst_group", "gap", "cpu_seconds", "wall_seconds")}
    for key, (mean, std) in summary.items():
        print(f"{key}: {mean:.4f} ± {std:.4f} (mean ± std over {len(rows)} seeds)")
    group_names = list(rows[0]["group_acc"])
    print(
        "group acc (mean): "
        + "  ".join(f"{g} {np.mean([r['group_acc'][g] for r in rows]):.3f}" for g in group_names)
    )
    avg, worst, gap = summary["avg"][0], summary["worst_group"][0], summary["gap"][0]
    all_seeds = all(verdict(r["avg"], r["worst_group"]) for r in rows)
    print(f"every seed passes: {all_seeds}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"dataset_params": resolved, "rows": rows, "summary": summary}, indent=2, default=str)
        )
    ok = verdict(avg, worst)
    print(f"calibration: avg={avg:.4f} worst_group={worst:.4f} gap={gap:.4f} pass={ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
