"""Per-iteration cost of CLIP-Illusion vs Lucent's ``render.render_vis`` for the same neuron, size and model.

Model: a random-init timm resnet18 at 64 px (CPU). Neuron n = channel n of ``layer4`` averaged over
space (the input n of its decision layer). Lucent optimizes ``objectives.channel("layer4", n)`` with
its own Fourier parameterization (``param.image(64)``), its standard transforms and Adam, hooking
every module of the model (as ``render_vis`` does); ``fixed_image_size=64`` keeps it at the same size.
CLIP-Illusion optimizes the same neuron (+ the class logit) with CLIP guidance from a tiny open_clip
model (random-init by default, or ``--clip synthetic-clip:PATH``), so it does strictly more work per
step; the ``use_clip=False`` line is the like-for-like comparison without CLIP.

    ratio = Lucent s/it ÷ CLIP-Illusion s/it       (> 1: CLIP-Illusion is cheaper per step)

Timings on a shared machine are inflated by contention; compare the ratio, not the seconds.

    python benchmarks/clip_illusion_vs_lucent.py [--iters 20] [--size 64] [--neuron 12] [--clip SPEC]
    python benchmarks/clip_illusion_vs_lucent.py --smoke    # seconds: a check, not a figure
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("NEUROINSPECT_NO_PROGRESS", "1")

import torch  # noqa: E402
from _common import add_smoke, apply_smoke  # noqa: E402  (benchmarks/ is on sys.path)

import neuroinspect  # noqa: E402,F401
from neuroinspect.clip.loader import load_clip  # noqa: E402
from neuroinspect.harness.models import create_model  # noqa: E402
from neuroinspect.methods.visualizers.clip_illusion import ClipIllusion  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from lucent.optvis import objectives, param, render, transform


def lucent_seconds(model: torch.nn.Module, neuron: int, size: int, iters: int) -> float:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = time.perf_counter()
    render.render_vis(
        model,
        objectives.channel("layer4", neuron),
        param_f=lambda: param.image(size),
        transforms=transform.standard_transforms,
        thresholds=(iters,),
        show_image=False,
        progress=False,
        fixed_image_size=size,
    )
    return time.perf_counter() - t0


def ours_seconds(surface, clip, neuron: int, size: int, iters: int, use_clip: bool) -> float:  # noqa: ANN001
    vis = ClipIllusion(clip=clip, iters=iters, images_per_pair=1, image_size=size, use_clip=use_clip)
    t0 = time.perf_counter()
    vis.visualize(surface, [neuron], 0, class_names=["a photo", "b photo"], show_progress=False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20, help="n: runs of n and 2n iterations are timed")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--neuron", type=int, default=12)
    ap.add_argument(
        "--clip", default="synthetic-clip:random", help="CLIP spec (default: a random-init tiny CLIP)"
    )
    ap.add_argument("--threads", type=int, default=None)
    add_smoke(ap)
    args = ap.parse_args(argv)
    apply_smoke(ap, args, {"iters": 2, "size": 32, "threads": 1})
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=2, image_size=args.size)
    surface.eval()
    clip = load_clip(args.clip)

    # warm-up
    lucent_seconds(surface.model, args.neuron, args.size, 2)
    ours_seconds(surface, clip, args.neuron, args.size, 2, True)

    n = args.iters

    def per_iteration(run) -> float:  # noqa: ANN001
        # marginal cost (T(2n) - T(n)) / n: set-up and the final render are not counted
        return max(1e-9, (run(2 * n) - run(n)) / n)

    t_lucent = per_iteration(lambda it: lucent_seconds(surface.model, args.neuron, args.size, it))
    t_ours = per_iteration(lambda it: ours_seconds(surface, clip, args.neuron, args.size, it, True))
    t_plain = per_iteration(lambda it: ours_seconds(surface, clip, args.neuron, args.size, it, False))

    print(
        f"CPU, {torch.get_num_threads()} threads; resnet18 at {args.size} px, neuron {args.neuron}, batch 1; "
        f"marginal cost per iteration from runs of {n} and {2 * n} iterations"
    )
    print(f"lucent render_vis (hooks every module):     {t_lucent * 1000:8.1f} ms/it")
    print(f"clip_illusion with CLIP ({clip.spec}):  {t_ours * 1000:8.1f} ms/it")
    print(
        f"clip_illusion without CLIP (use_clip=False): {t_plain * 1000:8.1f} ms/it  (lucent / this: {t_lucent / t_plain:.2f})"
    )
    print(f"ratio: {t_lucent / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
