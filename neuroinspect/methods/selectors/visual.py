"""Selectors that look at each candidate's visualization: ``clip`` (CLIP zero-shot) and ``concept``
(the benchmark's attribute classifiers). Both read class-conditioned CLIP-Illusion images by default,
the pictures the paper's debug loop shows a person (spec §2.6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neuroinspect.errors import UserError
from neuroinspect.methods.selectors.base import SelectionContext, Selector, register_selector
from neuroinspect.methods.selectors.rules import VISUAL_DEFAULTS


class _VisualSelector(Selector):
    uses_visualizations = True

    def __init__(
        self,
        *,
        visualizer: str = "clip_illusion",
        visualizer_settings: dict[str, Any] | None = None,
        conditioned: bool = True,
    ) -> None:
        self.visualizer = visualizer
        self.visualizer_settings = {**VISUAL_DEFAULTS, **(visualizer_settings or {})}
        self.conditioned = bool(conditioned)

    def _visuals(self, candidates: Sequence[int], ctx: SelectionContext) -> list[Any]:
        if ctx.visuals is None:
            raise UserError(f"selector {self.name!r} needs visualizations (run it through the experiment).")
        return ctx.visuals.get(candidates, self.visualizer, self.visualizer_settings, self.conditioned)


@register_selector("clip")
class ClipSelector(_VisualSelector):
    """CLIP zero-shot on each candidate's CLIP-Illusion images: closer to an attribute prompt (e.g. "water") than to the class prompt → spurious.

    Per image: CLIP similarities to the class text (the 32 templates of spec §4.2 around the class
    string, averaged and renormalized) and to each attribute text (the same templates around the
    attribute, e.g. "a photo of water."); p_attr = softmax(scale · [s_class, max_a s_a])[1], averaged
    over the candidate's images (``scale``: the CLIP model's learned logit scale, or
    ``logit_scale``). ``spurious`` when p_attr > 0.5 + ``margin``, ``core`` when p_attr < 0.5 −
    ``margin``, ``unclear`` in between. ``attributes``: the domain's attribute names; by default the
    bundled benchmark's spurious values (``water``, ``land``; the colours of colored-digits).

    A caveat, measured (README, "Does the neuron choice matter?"): class-conditioned CLIP-Illusion
    images (the default) are optimized towards the very class prompt they are compared with, so the
    class prompt wins by construction: on both bundled benchmarks the selector called 440 of 450
    candidates core. ``conditioned=False`` (images of the neuron alone) removes that bias; it has not
    been measured.
    """

    uses_clip = True

    def __init__(
        self,
        *,
        margin: float = 0.0,
        logit_scale: float | None = None,
        attributes: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= margin < 0.5:
            raise UserError(f"clip selector: margin must be in [0, 0.5), got {margin}.")
        self.margin = float(margin)
        self.logit_scale = None if logit_scale is None else float(logit_scale)
        self.attributes = None if attributes is None else [str(a) for a in attributes]

    def label(
        self, candidates: Sequence[int], ctx: SelectionContext
    ) -> tuple[dict[int, str], dict[int, float]]:
        if ctx.clip is None:
            raise UserError("the clip selector needs a CLIP model: set `clip` in the experiment config.")
        attrs = self.attributes or ctx.attributes
        if not attrs:
            raise UserError(
                "the clip selector needs the domain's attribute names (attributes=[...]); "
                "the bundled benchmarks supply their spurious values."
            )
        vis = self._visuals(candidates, ctx)  # optimized pictures: rendered with gradients on
        with torch.no_grad():
            return self._score(candidates, ctx, vis, list(attrs))

    def _score(
        self, candidates: Sequence[int], ctx: SelectionContext, vis: Any, attrs: list[str]
    ) -> tuple[dict[int, str], dict[int, float]]:
        from neuroinspect.clip.prompts import class_text_embeddings

        clip = ctx.clip
        assert clip is not None
        device = clip.device
        t_cls = class_text_embeddings(clip, [ctx.prompts[ctx.class_idx]], renormalize=True).to(device)
        t_att = class_text_embeddings(clip, list(attrs), renormalize=True).to(device)
        scale = self.logit_scale
        if scale is None:
            learned = getattr(clip.model, "logit_scale", None)
            scale = float(learned.exp()) if isinstance(learned, torch.Tensor) else 100.0
        labels: dict[int, str] = {}
        scores: dict[int, float] = {}
        for n, v in zip(candidates, vis, strict=True):
            e = clip.encode_image(v.images.float().to(device))  # B×E, unit rows
            s_cls = (e @ t_cls.T).squeeze(1)
            s_att = (e @ t_att.T).max(dim=1).values
            p_attr = torch.softmax(scale * torch.stack([s_cls, s_att], dim=1), dim=1)[:, 1].mean()
            p = float(p_attr)
            scores[int(n)] = p
            labels[int(n)] = (
                "spurious" if p > 0.5 + self.margin else ("core" if p < 0.5 - self.margin else "unclear")
            )
        return labels, scores


@register_selector("concept")
class ConceptSelector(_VisualSelector):
    """The benchmark's attribute classifiers on each candidate's visualizations: images that agree on a background but not on an object → spurious.

    The classifiers (:mod:`neuroinspect.methods.concept_recovery`, cached) read the core and the
    spurious attribute off each image; what a neuron's images are about is what they agree on
    (:func:`~neuroinspect.methods.visualizers.faithfulness.concept_recovery`): ``spurious`` when only
    the spurious attribute is shown, ``core`` when only the core one is, ``unclear`` for both or
    neither. Score = spurious agreement − core agreement. Bundled benchmarks only; the classifiers
    are trained on the benchmark's attribute labels (a stand-in for a concept bank or a person).
    """

    def __init__(
        self,
        *,
        min_agreement: float | None = None,
        tie_tolerance: float | None = None,
        classifier_settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_agreement = min_agreement
        self.tie_tolerance = tie_tolerance
        self.classifier_settings = dict(classifier_settings or {})

    def label(
        self, candidates: Sequence[int], ctx: SelectionContext
    ) -> tuple[dict[int, str], dict[int, float]]:
        from neuroinspect.methods.concept_recovery import cached_classifiers, has_ground_truth
        from neuroinspect.methods.visualizers import faithfulness

        if ctx.benchmark_train is None or not has_ground_truth(ctx.dataset):
            raise UserError(
                "the concept selector needs a bundled benchmark (spurious-shapes, colored-digits): "
                "its attribute classifiers are trained on the benchmark's attributes."
            )
        clf, _ = cached_classifiers(
            ctx.benchmark_train,
            ctx.dataset,
            self.classifier_settings or None,
            seed=0,
            show_progress=ctx.show_progress,
        )
        vis = self._visuals(candidates, ctx)
        kw: dict[str, Any] = {}
        if self.min_agreement is not None:
            kw["min_agreement"] = float(self.min_agreement)
        if self.tie_tolerance is not None:
            kw["tie_tolerance"] = float(self.tie_tolerance)
        labels: dict[int, str] = {}
        scores: dict[int, float] = {}
        for n, v in zip(candidates, vis, strict=True):
            r = faithfulness.concept_recovery(v, clf, "mixed", **kw)
            shown = r["shown"]
            labels[int(n)] = shown if shown in ("spurious", "core") else "unclear"
            scores[int(n)] = float(r["agreement_spurious"]) - float(r["agreement_core"])
        return labels, scores


__all__ = ["ClipSelector", "ConceptSelector"]
