"""Rule-based selectors: ``top`` (the blind top k) and ``core-sensitivity`` (the reference's
``select_spurious_attribute``, spec §4.7)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from neuroinspect.errors import UserError
from neuroinspect.methods.selectors.base import Selection, SelectionContext, Selector, register_selector

#: CLIP-Illusion settings the visual selectors use unless told otherwise: fewer iterations and images
#: than the reference (450, 4), so a CPU run of the bundled benchmarks visualizes ~60 candidates in minutes
VISUAL_DEFAULTS: dict[str, object] = {"iters": 96, "images_per_pair": 2}


@register_selector("top")
class TopSelector(Selector):
    """The first k candidates of the finder's list, unseen (the harness's former blind choice)."""

    def select(self, candidates: Sequence[int], k: int, ctx: SelectionContext) -> Selection:
        if k < 1:
            raise UserError(f"a selector needs k >= 1 neurons to choose, got {k}.")
        t0 = time.perf_counter()
        cand = [int(n) for n in candidates]
        return Selection(
            selector=self.name,
            neurons=cand[:k],
            candidates=cand,
            settings=self.settings(),
            wall_seconds=time.perf_counter() - t0,
        )


@register_selector("core-sensitivity")
class CoreSensitivitySelector(Selector):
    """The reference's select_spurious_attribute (spec §4.7): masking a visualization to the neuron's region lowers its similarity to class c more than to similar classes → spurious.

    For each candidate's visualizations X (class-conditioned CLIP-Illusion images by default) and their
    binary activation masks M (τ = 0.25): g = pooled feature of X, g' = of X ⊙ M; with the class
    prototypes μ_k (mean pooled feature per class on the finder's split), ρ_k = cos(g, μ_k),
    ρ'_k = cos(g', μ_k), s_k = ρ'_k / ρ_k and T = the ``top_classes`` classes with the highest ρ:
    core_sensitivity = s_c / mean_{k∈T} s_k. ``reduce="max"`` (the reference's default) takes the image
    with the highest activation, ``"mean"`` averages the ratios over the images. The reference fixes
    no threshold; a neuron is ``spurious`` when core_sensitivity < ``threshold`` (1.0: keeping only
    its region hurts class c more than the similar classes), ``core`` otherwise.
    """

    uses_visualizations = True

    def __init__(
        self,
        *,
        threshold: float = 1.0,
        top_classes: int = 20,
        reduce: str = "max",
        visualizer: str = "clip_illusion",
        visualizer_settings: dict[str, object] | None = None,
        conditioned: bool = True,
    ) -> None:
        if reduce not in ("max", "mean"):
            raise UserError(f"core-sensitivity: reduce must be 'max' or 'mean', got {reduce!r}.")
        if top_classes < 1:
            raise UserError("core-sensitivity: top_classes must be >= 1.")
        self.threshold = float(threshold)
        self.top_classes = int(top_classes)
        self.reduce = reduce
        self.visualizer = visualizer
        self.visualizer_settings = {**VISUAL_DEFAULTS, **(visualizer_settings or {})}
        self.conditioned = bool(conditioned)

    def scores(self, candidates: Sequence[int], ctx: SelectionContext) -> dict[int, float]:
        """core_sensitivity per candidate (lower = more context-like)."""
        if ctx.visuals is None or ctx.class_means is None:
            raise UserError(
                "core-sensitivity needs visualizations and class prototypes (run it through the experiment)."
            )
        vis = ctx.visuals.get(candidates, self.visualizer, self.visualizer_settings, self.conditioned)
        with torch.no_grad():
            return self._scores(candidates, vis, ctx)

    def _scores(
        self, candidates: Sequence[int], vis: Sequence[Any], ctx: SelectionContext
    ) -> dict[int, float]:
        surface = ctx.surface
        device = next(surface.model.parameters()).device
        assert ctx.class_means is not None  # checked by scores()
        mu = F.normalize(ctx.class_means.float().to(device), dim=1)  # K×D
        K = mu.shape[0]
        c = ctx.class_idx
        out: dict[int, float] = {}
        for n, v in zip(candidates, vis, strict=True):
            x = v.images.float().to(device)
            m = v.masks
            if m is None:
                raise UserError(
                    f"visualizer {self.visualizer!r} gives no activation masks; core-sensitivity needs them."
                )
            m = (m.float().to(device) > 0).float().unsqueeze(1)
            g = F.normalize(surface.features(surface.normalize(x)).float(), dim=1)
            g2 = F.normalize(surface.features(surface.normalize(x * m)).float(), dim=1)
            rho, rho2 = g @ mu.T, g2 @ mu.T  # B×K
            ratio = rho2 / rho.where(rho.abs() > 1e-8, torch.full_like(rho, 1e-8))
            if self.reduce == "max":
                b = int(torch.as_tensor(v.activations).argmax())
                rho_b, ratio_b = rho[b], ratio[b]
            else:
                rho_b, ratio_b = rho.mean(dim=0), ratio.mean(dim=0)
            top = torch.topk(rho_b, min(self.top_classes, K)).indices
            denom = ratio_b[top].mean()
            out[int(n)] = float(ratio_b[c] / denom) if abs(float(denom)) > 1e-12 else float("inf")
        return out

    def label(
        self, candidates: Sequence[int], ctx: SelectionContext
    ) -> tuple[dict[int, str], dict[int, float]]:
        cs = self.scores(candidates, ctx)
        labels = {n: ("spurious" if v < self.threshold else "core") for n, v in cs.items()}
        # larger = more spurious-looking, as every selector's scores
        return labels, {n: -v for n, v in cs.items()}


__all__ = ["VISUAL_DEFAULTS", "CoreSensitivitySelector", "TopSelector"]
