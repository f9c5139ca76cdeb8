"""Lucent activation maximization of a pooled neuron (Olah et al. 2017 feature visualization).

The baseline CLIP-Illusion is compared with: the same pooled neuron, optimized through torch-lucent's
own ``render.render_vis``, its Fourier + decorrelated-colour image parameterization and its
transformation robustness, but

- with the model's OWN normalization and input size (Lucent assumes ImageNet statistics and
  upsamples everything below 224 px; users of small or non-ImageNet models complain about both):
  ``preprocess=False``, a normalize transform built from the :class:`ModelSurface`'s data config,
  and ``fixed_image_size`` = the model's input size;
- with Lucent's jitter / pad / scale / rotate amounts scaled to the image size (``"scaled"``), or
  Lucent's fixed ones (``"standard"``), or none;
- hooking only three taps of the model (spatial, pooled, logits) instead of every submodule;
- on the requested device (Lucent's parameterization and transforms pick ``cuda:0`` on their own);
- seeded, without touching the caller's global RNG state.

The objective is ``a_n(x) + class_gamma · z_c(x)``: the pooled neuron plus, when a class is given,
the raw class logit (CLIP-Illusion's activation term, spec §4.2, without the CLIP factor).
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

import neuroinspect  # noqa: F401  (torchvision fix before lucent imports kornia / torchvision)
from neuroinspect.errors import UserError
from neuroinspect.harness.models import ModelSurface
from neuroinspect.methods.visualizers._taps import SurfaceTaps, frozen, input_size, seeded
from neuroinspect.methods.visualizers.base import (
    Visualization,
    Visualizer,
    register_visualizer,
    validate_pairs,
)
from neuroinspect.methods.visualizers.exemplars import evaluate_images
from neuroinspect.methods.visualizers.objectives import ObjectiveInputs, illusion_objective
from neuroinspect.runtime import progress


@functools.cache
def _lucent() -> SimpleNamespace:
    """torch-lucent's modules, imported on first use: with the kornia and torchvision they import,
    about 3 s, which listing the methods or running any other visualizer should not pay.

    ``objectives``, ``render``, ``transform``, ``color`` and ``spatial`` (``lucent.optvis.param``)."""
    with warnings.catch_warnings():  # kornia 0.4 (Lucent's pin) warns about torch.jit at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from lucent.optvis import objectives, render, transform
        from lucent.optvis.param import color, spatial
    return SimpleNamespace(
        objectives=objectives, render=render, transform=transform, color=color, spatial=spatial
    )


TRANSFORMS = ("scaled", "standard", "none")


@contextlib.contextmanager
def _lucent_on(device: torch.device) -> Iterator[None]:
    """Point Lucent's module-level ``device`` (chosen at import: cuda:0 if any GPU) at ``device``."""
    lu = _lucent()
    saved = (lu.spatial.device, lu.transform.device)
    lu.spatial.device = device
    lu.transform.device = device
    try:
        yield
    finally:
        lu.spatial.device, lu.transform.device = saved


def _normalizer(mean: Sequence[float], std: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x - m.to(x.device, x.dtype)) / s.to(x.device, x.dtype)

    normalize.mean = tuple(mean)  # type: ignore[attr-defined]
    normalize.std = tuple(std)  # type: ignore[attr-defined]
    return normalize


@register_visualizer("lucent")
class LucentVisualizer(Visualizer):
    """Lucent activation maximization of the pooled neuron (optionally + class_gamma · class logit), model's own normalization."""

    kind = "synthetic"

    def __init__(
        self,
        iters: int = 512,
        lr: float = 0.05,
        n_images: int = 1,
        class_gamma: float = 0.5,
        transforms: str = "scaled",
        fft: bool = True,
        decorrelate: bool = True,
        sd: float = 0.01,
        render_scale: float = 1.0,
        batch_size: int = 8,
    ) -> None:
        """``iters`` Adam steps (Lucent's default 512) at learning rate ``lr`` (Lucent's 0.05);
        ``n_images`` images per (neuron, class) pair; ``class_gamma`` weight of the class logit when a
        class is given (0 = pure neuron maximization); ``transforms``: ``"scaled"`` (Lucent's
        robustness transforms with amounts scaled to the image), ``"standard"`` (Lucent's own, sized
        for 224 px) or ``"none"``; ``fft`` / ``decorrelate`` / ``sd``: Lucent's image parameterization;
        ``render_scale``: the parameterized image is ``render_scale`` × the model's input size, transformed
        at that size and resized to the model's size (Lucent's ``fixed_image_size`` step); above 1 the
        jitter becomes sub-pixel at the model's resolution, which small-input models (32-64 px, where a
        1-pixel shift changes the phase of every strided layer) need to find shift-robust patterns;
        the returned images are at the model's size; ``batch_size``: images optimized together (pairs are
        independent in the objective)."""
        if iters < 1:
            raise UserError(f"lucent needs iters >= 1, got {iters}.")
        if n_images < 1:
            raise UserError(f"lucent needs n_images >= 1, got {n_images}.")
        if transforms not in TRANSFORMS:
            raise UserError(
                f"unknown lucent transforms {transforms!r}; choose one of {', '.join(TRANSFORMS)}."
            )
        if lr <= 0:
            raise UserError(f"lucent needs lr > 0, got {lr}.")
        if not 0.25 <= render_scale <= 8:
            raise UserError(f"lucent render_scale must be between 0.25 and 8, got {render_scale}.")
        self.iters = int(iters)
        self.lr = float(lr)
        self.n_images = int(n_images)
        self.class_gamma = float(class_gamma)
        self.transforms = transforms
        self.fft = bool(fft)
        self.decorrelate = bool(decorrelate)
        self.sd = float(sd)
        self.render_scale = float(render_scale)
        self.batch_size = max(1, int(batch_size))

    # -- the pieces handed to render_vis ---------------------------------------------------------
    def build_transforms(self, surface: ModelSurface) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The transform list passed to ``render_vis``: robustness transforms, then the model's normalization.

        (``render_vis`` appends the resize to ``fixed_image_size`` after these.)
        """
        h, w = self.render_size(surface)
        side = min(h, w)
        lucent_transform = _lucent().transform
        if self.transforms == "standard":
            robust = list(lucent_transform.standard_transforms)
        elif self.transforms == "scaled":
            # Lucent's amounts are for 224 px: pad 12, jitter 8, scale ±10%, rotate ±10°, jitter 4.
            f = side / 224.0
            robust = [
                lucent_transform.pad(max(1, round(12 * f)), mode="constant", constant_value=0.5),
                lucent_transform.jitter(max(2, round(8 * f))),
                lucent_transform.random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
                lucent_transform.random_rotate(list(range(-10, 11)) + 5 * [0]),
                lucent_transform.jitter(max(2, round(4 * f))),
            ]
        else:
            robust = []
        return robust + [_normalizer(surface.data_config.mean, surface.data_config.std)]

    def render_size(self, surface: ModelSurface) -> tuple[int, int]:
        """(H, W) of the parameterized image: the model's input size × ``render_scale``."""
        h, w = input_size(surface)
        return max(8, round(h * self.render_scale)), max(8, round(w * self.render_scale))

    def _param(
        self, batch: int, h: int, w: int, device: torch.device
    ) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
        """Lucent's image parameterization (``param.image``) on ``device``: B×3×H×W in (0, 1)."""
        shape = [batch, 3, h, w]
        lucent_spatial, lucent_color = _lucent().spatial, _lucent().color
        params, raw = (lucent_spatial.fft_image if self.fft else lucent_spatial.pixel_image)(
            shape, sd=self.sd
        )
        if not self.decorrelate:
            return params, lucent_color.to_valid_rgb(raw, decorrelate=False)
        # Lucent's _linear_decorrelate_color moves its matrix to cuda:0 whenever a GPU exists; same
        # matrix, on the parameters' device.
        mat = torch.tensor(lucent_color.color_correlation_normalized.T, device=device)

        def decorrelated() -> torch.Tensor:
            return torch.matmul(raw().permute(0, 2, 3, 1), mat).permute(0, 3, 1, 2)

        return params, lucent_color.to_valid_rgb(decorrelated, decorrelate=False)

    # -- the interface ------------------------------------------------------------------------------
    def visualize(
        self,
        surface: ModelSurface,
        neurons: Sequence[int],
        class_idx: Sequence[int | None] | int | None = None,
        *,
        dataset: Any = None,
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        show_progress: bool = True,
    ) -> list[Visualization]:
        classes = validate_pairs(surface, neurons, class_idx)
        dev = torch.device(device)
        # One row per image: (pair index, neuron, class).
        rows = [
            (p, int(n), c)
            for p, (n, c) in enumerate(zip(neurons, classes, strict=True))
            for _ in range(self.n_images)
        ]
        chunks = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        results: list[dict[str, Any]] = []
        for ci, chunk in enumerate(
            progress(chunks, desc="lucent", enabled=show_progress and len(chunks) > 1)
        ):
            results.append(
                self._render_chunk(
                    surface, chunk, seed=seed + 1000003 * ci, device=dev, show_progress=show_progress
                )
            )
        return self._assemble(surface, neurons, classes, rows, chunks, results, dev)

    def _render_chunk(
        self,
        surface: ModelSurface,
        chunk: list[tuple[int, int, int | None]],
        *,
        seed: int,
        device: torch.device,
        show_progress: bool,
    ) -> dict[str, Any]:
        h, w = input_size(surface)
        rh, rw = self.render_size(surface)
        # The model sees the render resized to its own size, exactly as in Lucent's last transform.
        to_model = torch.nn.Upsample(size=(h, w), mode="bilinear", align_corners=True)
        b = len(chunk)
        taps = SurfaceTaps(surface, output="logits")
        neurons_t = torch.tensor([n for _, n, _ in chunk], device=device)
        classes_t = torch.tensor([-1 if c is None else c for _, _, c in chunk], device=device)
        # One loss group per (neuron, class) pair, as CLIP-Illusion does: a pair's loss has the same
        # scale whether it shares the batch or not.
        pair_ids = [p for p, _, _ in chunk]
        remap = {p: g for g, p in enumerate(dict.fromkeys(pair_ids))}
        groups_t = torch.tensor([remap[p] for p in pair_ids], device=device)
        # CLIP-Illusion's activation term without the CLIP factor: a_n + class_gamma · z_c (spec §4.2).
        term = illusion_objective(class_gamma=self.class_gamma, use_clip=False)
        curve: list[float] = []

        def objective_fn(hook: Callable[[str], torch.Tensor]) -> torch.Tensor:
            inputs = ObjectiveInputs(
                activations=hook("pooled"),
                logits=hook("logits"),
                neurons=neurons_t,
                classes=classes_t,
                groups=groups_t,
            )
            loss = term.loss(inputs)
            curve.append(float(loss.detach()) / len(remap))
            return loss

        objective = _lucent().objectives.Objective(objective_fn, name="pooled_neuron", description=repr(term))
        t0 = time.perf_counter()
        with frozen(surface), _lucent_on(device), seeded(seed, device), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # kornia / upsample chatter inside Lucent
            surface.to(device)
            params, image_f = self._param(b, rh, rw, device)
            with torch.no_grad():
                initial = to_model(image_f()).detach().clone()
            try:
                arrays = _lucent().render.render_vis(
                    taps,
                    objective,
                    param_f=lambda: (params, image_f),
                    optimizer=lambda ps: torch.optim.Adam(ps, lr=self.lr),
                    transforms=self.build_transforms(surface),
                    thresholds=(self.iters,),
                    preprocess=False,
                    progress=show_progress and not _quiet(),
                    show_image=False,
                    fixed_image_size=(h, w),
                )
            except AssertionError:
                if taps.last_error is not None:  # the real cause, not Lucent's "no saved feature maps"
                    raise taps.last_error from None
                raise
            if taps.last_error is not None:  # Lucent warned and went on with stale activations
                raise taps.last_error
        wall = time.perf_counter() - t0
        final = torch.from_numpy(np.ascontiguousarray(arrays[-1])).permute(0, 3, 1, 2).float()
        if (rh, rw) != (h, w):
            with torch.no_grad():
                final = to_model(final).clamp(0.0, 1.0)
        return {"final": final, "initial": initial.cpu(), "wall": wall, "curve": curve}

    def _assemble(
        self,
        surface: ModelSurface,
        neurons: Sequence[int],
        classes: list[int | None],
        rows: list[tuple[int, int, int | None]],
        chunks: list[list[tuple[int, int, int | None]]],
        results: list[dict[str, Any]],
        device: torch.device,
    ) -> list[Visualization]:
        final = torch.cat([r["final"] for r in results])
        initial = torch.cat([r["initial"] for r in results])
        row_neurons = [n for _, n, _ in rows]
        ev = evaluate_images(surface, final, row_neurons, batch_size=self.batch_size, device=device)
        ev0 = evaluate_images(surface, initial, row_neurons, batch_size=self.batch_size, device=device)
        # Each chunk's time is shared by the images it optimized.
        per_row_wall: list[float] = []
        per_row_curve: list[list[float]] = []
        for chunk, r in zip(chunks, results, strict=True):
            per_row_wall += [r["wall"] / len(chunk)] * len(chunk)
            step = max(1, len(r["curve"]) // 100)
            per_row_curve += [r["curve"][::step]] * len(chunk)
        h, w = input_size(surface)
        out: list[Visualization] = []
        for p, (n, c) in enumerate(zip(neurons, classes, strict=True)):
            sel = [i for i, (q, _, _) in enumerate(rows) if q == p]
            t = torch.tensor(sel)
            out.append(
                Visualization(
                    method=self.name,
                    neuron=int(n),
                    class_idx=c,
                    images=final[t],
                    activations=[float(v) for v in ev["activations"][t].tolist()],
                    activation_maps=ev["maps"][t],
                    masks=ev["masks"][t],
                    class_logits=None if c is None else [float(v) for v in ev["logits"][t, c].tolist()],
                    class_probs=None if c is None else [float(v) for v in ev["probs"][t, c].tolist()],
                    settings={
                        **self.settings(),
                        "image_size": [h, w],
                        "render_size": list(self.render_size(surface)),
                        "mean": list(surface.data_config.mean),
                        "std": list(surface.data_config.std),
                        "class_term": c is not None and self.class_gamma != 0.0,
                        "objective": "a_n + class_gamma * z_c"
                        if c is not None and self.class_gamma != 0.0
                        else "a_n",
                    },
                    wall_seconds=float(sum(per_row_wall[i] for i in sel)),
                    extra={
                        "initial_activations": [float(v) for v in ev0["activations"][t].tolist()],
                        # Mean per-pair loss (−objective) during optimization, at most ~100 points.
                        "objective_curve": per_row_curve[sel[0]],
                        "predicted": [int(v) for v in ev["logits"][t].argmax(dim=1).tolist()],
                    },
                )
            )
        return out


def _quiet() -> bool:
    """Lucent's own tqdm bar only where ours would be drawn (a terminal, no ``--no-progress``)."""
    from neuroinspect.runtime import bars_wanted

    return not bars_wanted()
