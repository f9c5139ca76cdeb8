"""Decision-layer editing: one epoch on cached features versus one epoch that recomputes the backbone.

The reference (spec §5) edits the decision layer by running the whole model on every batch, every
epoch (and evaluates the validation split through the model after each epoch), although only the
decision layer is trained. The backbone is frozen, so ``neuroinspect edit`` computes the pooled
features once (the feature cache) and trains on them.

This script:

1. trains (or loads from ``--work``, or takes ``--ckpt``) a small random-init ``resnet18`` on
   ``spurious-shapes`` at 64 px with :func:`neuroinspect.harness.training.train_classifier` and the
   benchmark's training preset (``--epochs`` overrides its epoch count);
2. renders the train / val / test splits with the evaluation transform and keeps the image tensors in
   memory (so the recompute side pays for the backbone only, not for decoding or transforms: its
   time is a lower bound of the reference's);
3. extracts the pooled features once (timed: the one-time cost of caching);
4. runs one epoch of the ``neuroinspect`` editor (default settings, batch 128, same seed, same
   batches, same selection) twice: on the cached features, and with the backbone (frozen, eval mode,
   no gradients) recomputed on every training batch and on the validation split at the end of the
   epoch (:meth:`~neuroinspect.methods.editors.base.TrainedEditor.fit`'s hooks);
5. prints both times, the final validation and test accuracies of both (PASS when they agree within
   0.5 points), the speed-up amortized over a 20-epoch edit including the one-time extraction, and,
   last, ``ratio: <speed-up of one cached epoch>`` (target >= 20).

Example::

    .venv/bin/python benchmarks/editing.py                       # CPU, 2 threads
    .venv/bin/python benchmarks/editing.py --device cuda
    .venv/bin/python benchmarks/editing.py --ckpt runs/shapes/best.pt
    .venv/bin/python benchmarks/editing.py --smoke                # seconds: a check, not a figure

Timings on a shared machine are inflated by other processes; compare ratios, not seconds.
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

import torch  # noqa: E402
from _common import (  # noqa: E402  (benchmarks/ is on sys.path)
    DATASET,
    SMOKE_DATA,
    add_smoke,
    apply_smoke,
    batched_features,
    get_model,
)

import neuroinspect  # noqa: E402,F401
from neuroinspect.datasets import get_dataset  # noqa: E402
from neuroinspect.harness.checkpoint import load_checkpoint  # noqa: E402
from neuroinspect.harness.features import FeatureSet, default_cache_dir  # noqa: E402
from neuroinspect.harness.models import ModelSurface  # noqa: E402
from neuroinspect.harness.transforms import eval_transform  # noqa: E402
from neuroinspect.methods.editors.base import layer_accuracy  # noqa: E402
from neuroinspect.methods.editors.neuroinspect_editor import NeuroInspectEditor  # noqa: E402
from neuroinspect.runtime import describe_device, resolve_device  # noqa: E402

TOLERANCE = 0.005  # 0.5 accuracy points
TARGET = 20.0
AMORTIZE_EPOCHS = 20  # the editor's default epoch count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_split(
    split: str, surface: ModelSurface, image_size: int, params: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images (N×3×S×S, normalized), labels (N) and groups (N or None) of one split."""
    ds = get_dataset(DATASET).load(
        None, split, eval_transform(surface.data_config, "benchmark"), **{**params, "image_size": image_size}
    )
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    groups = torch.as_tensor(ds.groups) if ds.groups is not None else None
    return x, torch.as_tensor(ds.labels), groups


def feature_set(
    feats: torch.Tensor, surface: ModelSurface, labels: torch.Tensor, groups: torch.Tensor | None
) -> FeatureSet:
    with torch.no_grad():
        logits = surface.decision(feats)
    n = len(labels)
    return FeatureSet(feats.cpu(), logits.cpu(), labels, groups, torch.arange(n), [str(i) for i in range(n)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work", type=Path, default=default_cache_dir() / "benchmarks" / "editing", help="model cache folder"
    )
    parser.add_argument(
        "--ckpt", type=Path, default=None, help="use this spurious-shapes checkpoint instead of training one"
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs when no cached model exists")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-neurons", type=int, default=3, help="size of the edited neuron set S")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    add_smoke(parser)
    args = parser.parse_args(argv)
    apply_smoke(parser, args, {"epochs": 1, "image_size": 32, "threads": 1})  # a 1-epoch model, tiny data

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device {describe_device(device)}; torch threads {torch.get_num_threads()}; cpu count {os.cpu_count()}"
    )
    t = time.perf_counter()
    if args.ckpt is not None:
        ckpt = load_checkpoint(args.ckpt, expect_dataset=DATASET)
        surface, ckpt_path, how = ckpt.surface, args.ckpt, "loaded"
        params = dict(ckpt.dataset_params)
        image_size = surface.data_config.image_size
    else:
        params = SMOKE_DATA if args.smoke else {}
        surface, ckpt_path, how = get_model(
            args.work, args.epochs, args.seed, device, args.image_size, params
        )
        image_size = args.image_size
    print(f"model: resnet18 {how} in {time.perf_counter() - t:.0f} s -> {ckpt_path}")
    surface = surface.to(device).freeze()

    t = time.perf_counter()
    x_train, y_train, g_train = load_split("train", surface, image_size, params)
    x_val, y_val, g_val = load_split("val", surface, image_size, params)
    x_test, y_test, g_test = load_split("test", surface, image_size, params)
    print(
        f"data: {len(y_train)} train / {len(y_val)} val / {len(y_test)} test images at {image_size} px, rendered in {time.perf_counter() - t:.1f} s"
    )

    # -- the one-time cost of caching ---------------------------------------------------------------
    batched_features(surface, x_val[:8], device)  # warm-up (allocator, kernels)
    _sync(device)
    t0 = time.perf_counter()
    f_train = batched_features(surface, x_train, device)
    f_val = batched_features(surface, x_val, device)
    _sync(device)
    t_extract = time.perf_counter() - t0
    f_test = batched_features(surface, x_test, device)
    train = feature_set(f_train, surface, y_train, g_train)
    val = feature_set(f_val, surface, y_val, g_val)
    test = feature_set(f_test, surface, y_test, g_test)

    # -- what to edit: the worst validation class and the neurons that push most toward it ---------------
    dec = surface.decision
    acc = layer_accuracy(dec, val.features.to(device), val.labels.to(device))
    per_class = [float((val.preds[val.labels == k] == k).float().mean()) for k in range(dec.out_features)]
    c = min(range(len(per_class)), key=lambda k: per_class[k])
    W = dec.weight.detach().cpu()
    others = torch.cat([W[:c], W[c + 1 :]]).mean(0)
    push = (W[c] - others) * val.features[val.labels == c].mean(0)
    S = sorted(int(n) for n in push.topk(args.num_neurons).indices)
    print(
        f"original: val acc {100 * acc['acc']:.2f}, per class {[round(100 * a, 2) for a in per_class]}; editing class {c} with S = {S}"
    )

    editor = NeuroInspectEditor(epochs=1, device=device)
    print(
        f"editor: neuroinspect, one epoch, batch {editor.batch_size}, lr {editor.lr}, {editor.schedule} schedule, seed {args.seed}"
    )
    editor.fit(dec, val, val, c, S, seed=args.seed, show_progress=False, measure_before=False)  # warm-up

    def train_batch(idx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return surface.features(x_train[idx].to(device)).float()

    _sync(device)
    t0 = time.perf_counter()
    cached = editor.fit(dec, train, val, c, S, seed=args.seed, show_progress=False, measure_before=False)
    _sync(device)
    t_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    recomputed = editor.fit(
        dec,
        train,
        val,
        c,
        S,
        seed=args.seed,
        show_progress=False,
        measure_before=False,
        train_batch_features=train_batch,
        val_features=lambda: batched_features(surface, x_val, device),
    )
    _sync(device)
    t_recompute = time.perf_counter() - t0

    res = {}
    for name, r in (("cached", cached), ("recompute", recomputed)):
        test_acc = layer_accuracy(r.decision.to(device), test.features.to(device), test.labels.to(device))
        res[name] = {
            "val_acc": r.val_after["acc"],
            "test_acc": test_acc["acc"],
            "test_worst_class_acc": test_acc["worst_class_acc"],
        }
    d_val = abs(res["cached"]["val_acc"] - res["recompute"]["val_acc"])
    d_test = abs(res["cached"]["test_acc"] - res["recompute"]["test_acc"])
    max_w = float((cached.decision.weight - recomputed.decision.weight).detach().abs().max())
    ok = d_val <= TOLERANCE and d_test <= TOLERANCE
    ratio = t_recompute / t_cached
    amortized = (AMORTIZE_EPOCHS * t_recompute) / (t_extract + AMORTIZE_EPOCHS * t_cached)

    steps = cached.info["steps_per_epoch"]
    print()
    print(f"one epoch, cached features:      {t_cached:9.3f} s  ({steps} steps + 1 val scoring)")
    print(f"one epoch, backbone recomputed:  {t_recompute:9.3f} s  ({steps} backbone batches + a val pass)")
    print(f"one-time feature extraction:     {t_extract:9.3f} s  (train + val)")
    print(f"{AMORTIZE_EPOCHS}-epoch edit incl. extraction: speed-up {amortized:.1f}x")
    for name in ("cached", "recompute"):
        r = res[name]
        print(
            f"{name:>9}: val acc {100 * r['val_acc']:.2f}  test acc {100 * r['test_acc']:.2f}  test worst-class {100 * r['test_worst_class_acc']:.2f}"
        )
    print(
        f"accuracy difference: val {100 * d_val:.2f} pts, test {100 * d_test:.2f} pts (max |ΔW| {max_w:.2e}) -> {'PASS' if ok else 'FAIL'}"
    )
    print(f"speed-up target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "device": describe_device(device),
                    "threads": torch.get_num_threads(),
                    "checkpoint": str(ckpt_path),
                    "class_idx": c,
                    "neurons": S,
                    "t_cached_epoch": t_cached,
                    "t_recompute_epoch": t_recompute,
                    "t_extract": t_extract,
                    "amortized_speedup": amortized,
                    "accuracies": res,
                    "pass": ok,
                    "ratio": ratio,
                },
                indent=2,
            )
        )
    print(f"ratio: {ratio:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
