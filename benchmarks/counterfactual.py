"""Counterfactual explanation: ours (cached features, all mistakes in one batch) versus the reference's way.

The reference (spec §3) explains one mistake at a time and, at every SGD step, recomputes
``pool(forward_features(x))`` with autograd on and the model's parameters NOT frozen, so every step
is a full backbone forward and backward whose parameter gradients pile up unused. Ours computes the
pooled features once (without gradients) and optimizes only the additive shifts, all mistakes of
the class at once (:class:`neuroinspect.methods.finders.counterfactual.CounterfactualFinder`).

This script:

1. trains (or loads from ``--work``) a small random-init ``resnet18`` on ``spurious-shapes`` at 64 px
   with :func:`neuroinspect.harness.training.train_classifier` and the benchmark's training preset
   (``--epochs`` overrides the preset's epoch count);
2. takes the mistakes of the worst class (lowest validation accuracy) on the validation split;
3. runs ours: a feature pass over the mistake images (batched, no gradients) + the batched
   counterfactual; the figure without the feature pass is printed too (in ``neuroinspect debug`` the
   feature cache already holds them);
4. runs a faithful re-creation of the reference: per image, per step ``pool(forward_features(x))``
   with autograd, parameters trainable (their ``.grad`` accumulates), SGD(lr 0.01, momentum 0.9) on w,
   the same loss and the same step cap; it stops starting new images after ``--ref-budget`` seconds
   and, if it did not finish, extrapolates its time to all mistakes from its measured time per
   backbone pass times the passes every mistake needs (ours gives each mistake's step count);
5. checks that both flip the same samples and give the same top-5 positive and negative shifts per
   sample (PASS/FAIL), and prints both times and, last, ``ratio: <ours speed-up>``.

Example::

    .venv/bin/python benchmarks/counterfactual.py                      # CPU, 2 threads
    .venv/bin/python benchmarks/counterfactual.py --device cuda --ref-budget 60
    .venv/bin/python benchmarks/counterfactual.py --smoke               # seconds: a check, not a figure

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

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
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
from neuroinspect.harness.features import FeatureSet, default_cache_dir  # noqa: E402
from neuroinspect.harness.models import ModelSurface  # noqa: E402
from neuroinspect.harness.transforms import eval_transform  # noqa: E402
from neuroinspect.methods.finders.counterfactual import CounterfactualFinder  # noqa: E402
from neuroinspect.runtime import describe_device, resolve_device  # noqa: E402

ALPHA, BETA, LR, MOMENTUM = 0.1, 0.01, 0.01, 0.9
TOPK = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_counterfactual(
    surface: ModelSurface, x: torch.Tensor, target: int, max_steps: int, device: torch.device
) -> tuple[torch.Tensor, int, bool, int]:
    """The reference's loop for ONE image x (1×3×H×W): backbone recomputed with autograd at every step.

    Model parameters keep ``requires_grad=True`` and their gradients are never zeroed, as in the
    reference. Returns (w (D,), steps, flipped, backbone passes).
    """
    D = surface.num_features
    w = torch.zeros(1, D, device=device, requires_grad=True)
    opt = torch.optim.SGD([w], lr=LR, momentum=MOMENTUM)
    y = torch.tensor([target], device=device)
    steps, passes = 0, 0
    while True:
        f = surface.pool(surface.forward_features(x))
        z = surface.decision(f + w)
        passes += 1
        if int(z.argmax(1)) == target:
            return w.detach()[0].cpu(), steps, True, passes
        if steps >= max_steps:  # the reference has no cap; both sides use the same one here
            return w.detach()[0].cpu(), steps, False, passes
        loss = F.cross_entropy(z, y) + ALPHA * torch.norm(w, p=1) / D + BETA * torch.norm(w, p=2) / D
        loss.backward()
        opt.step()
        w.grad.zero_()
        steps += 1


def top_shifts(w: torch.Tensor, k: int = TOPK) -> tuple[set[int], set[int]]:
    """The neurons of the k largest and of the k smallest entries of a shift."""
    return set(torch.topk(w, k).indices.tolist()), set(torch.topk(w, k, largest=False).indices.tolist())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=default_cache_dir() / "benchmarks" / "counterfactual",
        help="model cache folder",
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs when no cached model exists")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1000, help="step cap, both sides")
    parser.add_argument(
        "--ref-budget",
        type=float,
        default=120.0,
        help="seconds after which the reference starts no new image",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    add_smoke(parser)
    args = parser.parse_args(argv)
    # smoke: a 1-epoch model on a tiny benchmark, 20 steps, the reference on one mistake
    tiny = {"epochs": 1, "image_size": 32, "max_steps": 20, "ref_budget": 0.0, "threads": 1}
    apply_smoke(parser, args, tiny)
    data = SMOKE_DATA if args.smoke else {}

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device {describe_device(device)}; torch threads {torch.get_num_threads()}; cpu count {os.cpu_count()}"
    )
    t = time.perf_counter()
    surface, ckpt, how = get_model(args.work, args.epochs, args.seed, device, args.image_size, data)
    print(f"model: resnet18 {how} in {time.perf_counter() - t:.0f} s -> {ckpt}")
    surface = surface.to(device).eval()

    # -- the worst class's mistakes on the validation split -------------------------------------------
    val = get_dataset(DATASET).load(
        None, "val", eval_transform(surface.data_config, "benchmark"), **data, image_size=args.image_size
    )
    x_all = torch.stack([val[i]["image"] for i in range(len(val))])
    labels = torch.as_tensor(val.labels)
    with torch.no_grad():
        preds = torch.cat(
            [surface(x_all[i : i + 256].to(device)).argmax(1).cpu() for i in range(0, len(val), 256)]
        )
    acc = [(preds[labels == c] == c).float().mean().item() for c in range(val.num_classes)]
    c = int(np.argmin(acc))
    mistakes = torch.nonzero((labels == c) & (preds != c)).flatten()
    print(
        f"val accuracy per class {[round(a, 4) for a in acc]}; worst class {c} ({val.classes[c]}): {len(mistakes)} mistakes"
    )
    if len(mistakes) == 0:
        print("no mistakes to explain; train fewer epochs or change --seed")
        return 1
    xm = x_all[mistakes]

    # -- ours ---------------------------------------------------------------------------------------------
    for p in surface.parameters():
        p.requires_grad_(False)
    _ = batched_features(surface, xm[:2], device)  # warm-up (allocator, kernels)
    _sync(device)
    t0 = time.perf_counter()
    feats = batched_features(surface, xm, device)
    _sync(device)
    t_extract = time.perf_counter() - t0
    with torch.no_grad():
        logits = surface.decision(feats)
    fs = FeatureSet(
        features=feats.cpu(),
        logits=logits.cpu(),
        labels=torch.full((len(mistakes),), c),
        groups=None,
        indices=mistakes.clone(),
        paths=[val.samples[i].path for i in mistakes.tolist()],
        meta={"split": "val"},
    )
    finder = CounterfactualFinder(max_steps=args.max_steps, device=str(device))
    _sync(device)
    t0 = time.perf_counter()
    result = finder.find(surface.decision, fs, c, show_progress=False)
    _sync(device)
    t_opt = time.perf_counter() - t0
    ours_total = t_extract + t_opt
    status = {s["index"]: s for s in result.samples}
    print(
        f"ours: {t_opt:.3f} s batched counterfactual + {t_extract:.3f} s feature pass of the {len(mistakes)} mistakes = "
        f"{ours_total:.3f} s; counts {result.counts}; steps min/median/max "
        f"{min(s['steps'] for s in result.samples)}/{int(np.median([s['steps'] for s in result.samples]))}/{max(s['steps'] for s in result.samples)}"
    )

    # -- the reference's way ---------------------------------------------------------------------------------
    for p in surface.parameters():
        p.requires_grad_(True)  # not frozen, as in the reference
    surface.eval()
    ref_rows: list[dict[str, Any]] = []
    ref_passes = 0
    _sync(device)
    t0 = time.perf_counter()
    for j, i in enumerate(mistakes.tolist()):
        if j > 0 and time.perf_counter() - t0 > args.ref_budget:
            break
        w, steps, flipped, passes = reference_counterfactual(
            surface, x_all[i : i + 1].to(device), c, args.max_steps, device
        )
        ref_passes += passes
        ref_rows.append({"index": i, "w": w, "steps": steps, "flipped": flipped})
    _sync(device)
    t_ref = time.perf_counter() - t0
    grad_norm = sum(float(p.grad.norm()) for p in surface.parameters() if p.grad is not None)
    n_ref = len(ref_rows)
    all_passes = sum(s["steps"] + 1 for s in result.samples)
    if n_ref == len(mistakes):
        ref_total, how = t_ref, "measured on every mistake"
    else:
        per_pass = t_ref / ref_passes
        ref_total = per_pass * all_passes
        how = (
            f"EXTRAPOLATED: ran {n_ref}/{len(mistakes)} mistakes ({ref_passes} backbone passes) in {t_ref:.1f} s = "
            f"{1000 * per_pass:.2f} ms per pass; all mistakes need {all_passes} passes (step counts from ours)"
        )
    print(
        f"reference: {ref_total:.2f} s ({how}); unused parameter gradients accumulated: total norm {grad_norm:.3g}"
    )

    # -- agreement -------------------------------------------------------------------------------------------
    same_flip = same_top = same_steps = 0
    max_diff = 0.0
    bad: list[str] = []
    order = [s["index"] for s in result.samples]
    for row in ref_rows:
        if row["index"] not in status:  # the batched feature pass classified it correctly: 0 steps
            ours_s = {"status": "already_correct", "steps": 0}
            ours_w = torch.zeros_like(row["w"])
        else:
            ours_s = status[row["index"]]
            ours_w = result.shifts[order.index(row["index"])]
        ours_flipped = ours_s["status"] in ("corrected", "already_correct")
        same_flip += ours_flipped == row["flipped"]
        same_steps += ours_s["steps"] == row["steps"]
        if row["steps"] > 0:
            ok = top_shifts(ours_w) == top_shifts(row["w"])
        else:
            ok = ours_s["steps"] == 0
        same_top += ok
        if not ok or ours_flipped != row["flipped"]:
            bad.append(f"sample {row['index']}: ours steps {ours_s['steps']} / ref {row['steps']}")
        max_diff = max(max_diff, float((ours_w - row["w"]).abs().max()))
    flip_ok = same_flip == n_ref
    top_ok = same_top == n_ref
    print(f"same flipped samples: {same_flip}/{n_ref} -> {'PASS' if flip_ok else 'FAIL'}")
    print(
        f"same top-{TOPK} positive and negative shifts per sample: {same_top}/{n_ref} -> {'PASS' if top_ok else 'FAIL'}"
    )
    print(
        f"same step count: {same_steps}/{n_ref}; max |w_ours - w_ref| = {max_diff:.2e} (float rounding: batch 1 vs batched backbone)"
    )
    for line in bad[:10]:
        print(f"  mismatch: {line}")
    print(f"time: ours {ours_total:.3f} s (optimization alone {t_opt:.3f} s), reference {ref_total:.2f} s")
    print(f"speed-up without the feature pass (features already cached): {ref_total / t_opt:.1f}x")
    ratio = ref_total / ours_total
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "device": describe_device(device),
                    "class": c,
                    "mistakes": len(mistakes),
                    "counts": result.counts,
                    "ours_seconds": ours_total,
                    "ours_opt_seconds": t_opt,
                    "ours_extract_seconds": t_extract,
                    "ref_seconds": ref_total,
                    "ref_measured_seconds": t_ref,
                    "ref_samples": n_ref,
                    "ref_extrapolated": n_ref < len(mistakes),
                    "same_flips": flip_ok,
                    "same_top5": top_ok,
                    "same_steps": same_steps,
                    "max_abs_w_diff": max_diff,
                    "ratio": ratio,
                },
                indent=2,
            )
        )
    print(f"ratio: {ratio:.1f}")
    return 0 if (flip_ok and top_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
