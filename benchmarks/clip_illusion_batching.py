"""CLIP-Illusion throughput: many (neuron, class) pairs in one optimization vs the reference's loop.

The reference (``scripts/debug_mistakes_per_class.py`` → ``Illusion``) visualizes one neuron at a time:
a fresh optimization per neuron, with the classifier and CLIP left trainable (their parameter
gradients are computed and pile up, spec bug 22) and a forward hook registered on every forward.
``neuroinspect``'s ``clip_illusion`` batches all pairs (batch = pairs × images_per_pair) with both
models frozen.

Both sides run the same parameterization, augmentations, objective and number of iterations, on CPU,
at 64 px, on a random-init timm resnet18 and a random-init tiny open_clip model (the speed does not
depend on the weights). Reported: images per second of each, and

    ratio = (batched images / s) / (reference-loop images / s)      (target >= 3)

A third line, our visualizer called once per pair, separates the gain from batching from the gain
from freezing. Timings on a shared machine are inflated by contention; compare ratios, not seconds.

``--images-per-pair`` defaults to 4, the reference's debug flow (``debug_mistakes_per_class``: batch 4,
the same neuron and class four times; spec §4.5), so the reference loop runs 8 optimizations of 4
images and ours one of 32.

    python benchmarks/clip_illusion_batching.py [--pairs 8] [--iters 20] [--images-per-pair 4] [--size 64]
    python benchmarks/clip_illusion_batching.py --smoke     # seconds: a check, not a figure
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NEUROINSPECT_NO_PROGRESS", "1")

import torch  # noqa: E402
from _common import add_smoke, apply_smoke  # noqa: E402  (benchmarks/ is on sys.path)

import neuroinspect  # noqa: E402,F401
from neuroinspect.clip.prompts import class_text_embeddings  # noqa: E402
from neuroinspect.clip.synthetic import random_clip  # noqa: E402
from neuroinspect.harness.models import create_model  # noqa: E402
from neuroinspect.methods.visualizers.clip_illusion import ClipIllusion  # noqa: E402
from neuroinspect.methods.visualizers.params import Augmentation, FourierImage  # noqa: E402

CLASS_NAMES = [f"class {i}" for i in range(10)]


def _keep_output(store: dict[str, torch.Tensor]):  # noqa: ANN202
    def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        store["h"] = output

    return hook


def reference_loop(surface, clip, pairs, iters, k, size, seed=0):  # noqa: ANN001, ANN201
    """The reference's structure: one optimization per pair, models not frozen, a hook per forward.

    Same maths as ``clip_illusion(ref=True)``: L = −(mean S + ε)(mean A) over the pair's k images.
    """
    surface.eval()
    clip.model.eval()
    for p in list(surface.parameters()) + list(clip.model.parameters()):
        p.requires_grad_(True)  # the reference never freezes them
    layer = surface.model.layer4
    gen = torch.Generator().manual_seed(seed)
    texts = class_text_embeddings(clip, CLASS_NAMES)
    out = []
    for neuron, cls in pairs:
        image = FourierImage(k, size, generator=gen)
        aug = Augmentation(size, iters, ref_noise=True, generator=gen)
        opt = torch.optim.AdamW(image.parameters(), lr=9e-3, betas=(0.5, 0.99), weight_decay=2e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=0.12 * 9e-3)
        for t in range(iters):
            x = aug(image(), t)
            store: dict[str, torch.Tensor] = {}
            handle = layer.register_forward_hook(
                _keep_output(store)
            )  # one hook per forward, as in the reference
            logits = surface(surface.normalize(x))
            handle.remove()
            a = store["h"].mean(dim=(2, 3))[:, neuron] + 0.5 * logits[:, cls]
            s = clip.encode_image(x) @ texts[cls]
            loss = -((s.view(1, -1) + 0.05) * a.view(-1, 1)).mean()  # the B×B broadcast of the reference
            opt.zero_grad()
            loss.backward()  # parameter gradients of both models are computed (and accumulate)
            opt.step()
            sched.step()
        out.append(image().detach())
    for p in list(surface.parameters()) + list(clip.model.parameters()):
        p.grad = None
        p.requires_grad_(False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument(
        "--images-per-pair", type=int, default=4, help="images per pair (4: the reference's debug batch)"
    )
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    add_smoke(ap)
    args = ap.parse_args(argv)
    apply_smoke(ap, args, {"pairs": 2, "iters": 2, "images_per_pair": 1, "size": 32, "threads": 1})
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=len(CLASS_NAMES), image_size=args.size)
    surface.eval()
    clip = random_clip(seed=0, image_size=args.size)
    pairs = [(17 * i % surface.num_features, i % len(CLASS_NAMES)) for i in range(args.pairs)]
    neurons = [n for n, _ in pairs]
    classes = [c for _, c in pairs]
    k = args.images_per_pair
    n_images = len(pairs) * k

    def ours(per_pair: bool) -> float:
        vis = ClipIllusion(clip=clip, iters=args.iters, images_per_pair=k, ref=True, image_size=args.size)
        t0 = time.perf_counter()
        if per_pair:
            for n, c in pairs:
                vis.visualize(surface, [n], c, class_names=CLASS_NAMES, show_progress=False)
        else:
            vis.visualize(surface, neurons, classes, class_names=CLASS_NAMES, show_progress=False)
        return time.perf_counter() - t0

    # warm-up (allocator, kernels, lazy imports)
    ClipIllusion(clip=clip, iters=2, images_per_pair=k, image_size=args.size).visualize(
        surface, neurons[:2], classes[:2], class_names=CLASS_NAMES, show_progress=False
    )
    reference_loop(surface, clip, pairs[:1], 2, k, args.size)

    t_ref0 = time.perf_counter()
    reference_loop(surface, clip, pairs, args.iters, k, args.size)
    t_ref = time.perf_counter() - t_ref0
    t_batched = ours(per_pair=False)
    t_single = ours(per_pair=True)

    print(
        f"CPU, {torch.get_num_threads()} threads; resnet18 + tiny CLIP at {args.size} px; {len(pairs)} pairs x {k} image(s); {args.iters} iterations"
    )
    print(
        f"reference loop (one pair at a time, models not frozen): {t_ref:8.2f} s  {n_images / t_ref:7.3f} images/s"
    )
    print(
        f"clip_illusion, one pair per call (frozen):              {t_single:8.2f} s  {n_images / t_single:7.3f} images/s"
    )
    print(
        f"clip_illusion, all pairs batched (frozen):              {t_batched:8.2f} s  {n_images / t_batched:7.3f} images/s"
    )
    print(f"batching alone (one call per pair -> one call): {t_single / t_batched:.2f}x")
    print(f"ratio: {t_ref / t_batched:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
