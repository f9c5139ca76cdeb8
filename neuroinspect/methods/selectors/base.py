"""The selector interface: which of a finder's candidate neurons to edit (the paper's human step).

NeuroInspect's debug loop (spec §2.6) shows the top insufficient neurons as CLIP-Illusion images and a
person picks the ones that look spurious (the Food101 edit uses ranks 3, 4 and 23 of that list); the
blind top k can hand core neurons (the class's own object) to the editor, which then weakens the class's
use of its object. A selector makes that step explicit and comparable:

    Selector.select(candidates, k, ctx) -> Selection

``candidates``: neuron ids in the finder's order (the first ``pool`` of the list that will be
edited); ``k``: how many to edit at most. A selector labels candidates ``spurious``, ``core`` or
``unclear`` and keeps the spurious ones, in the finder's order, up to k (``top`` keeps the first k
unseen). It may edit fewer than k, or none: a selector never tops its choice up with neurons it did
not call spurious. Selectors that look at pictures share one :class:`NeuronVisuals` per run, so two
selectors reading the same CLIP-Illusion images optimize them once.

A new selector is one module in this package with ``@register_selector("name")`` on a
:class:`Selector` subclass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.registry import Registry

LABELS = ("spurious", "core", "unclear")


@dataclass
class Selection:
    """What a selector returns.

    - ``neurons``: the neurons to edit (≤ k, in the finder's order); ``candidates``: what it was shown;
    - ``labels``: ``{neuron: "spurious" | "core" | "unclear"}`` for every candidate it judged
      (empty for ``top``, which judges nothing); ``scores``: its evidence per candidate (selector-specific,
      larger = more spurious-looking), where it has one;
    - ``settings``: its hyperparameters; ``info``: outcomes (e.g. how many images it read).
    """

    selector: str
    neurons: list[int]
    candidates: list[int]
    labels: dict[int, str] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """How many candidates got each label (and how many were not judged)."""
        out = {lab: sum(1 for v in self.labels.values() if v == lab) for lab in LABELS}
        out["not_judged"] = sum(1 for n in self.candidates if n not in self.labels)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "neurons": list(self.neurons),
            "candidates": list(self.candidates),
            "labels": {str(n): v for n, v in self.labels.items()},
            "scores": {str(n): float(v) for n, v in self.scores.items()},
            "counts": self.counts(),
            "settings": dict(self.settings),
            "info": dict(self.info),
            "wall_seconds": round(float(self.wall_seconds), 3),
        }


class NeuronVisuals:
    """Visualizations of neurons for one model and class, computed once per (method, settings, neuron).

    ``get(neurons, method, settings, conditioned)`` returns one
    :class:`~neuroinspect.methods.visualizers.Visualization` per neuron, optimizing only the pairs not
    seen before (in one batched call). ``conditioned``: visualize each neuron for class c (the paper's
    debug loop) or unconditioned.
    """

    def __init__(
        self,
        surface: Any,
        class_idx: int,
        *,
        dataset: Any = None,
        class_names: Sequence[str] | None = None,
        clip: Any = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        show_progress: bool = True,
    ) -> None:
        self.surface = surface
        self.class_idx = int(class_idx)
        self.dataset = dataset
        self.class_names = list(class_names) if class_names is not None else None
        self.clip = clip
        self.seed = int(seed)
        self.device = device
        self.show_progress = show_progress
        self._cache: dict[tuple[str, str, bool, int], Any] = {}
        self.wall_seconds = 0.0
        self.rendered = 0  # pairs optimized here (not given by :meth:`put`)

    def get(
        self,
        neurons: Sequence[int],
        method: str = "clip_illusion",
        settings: dict[str, Any] | None = None,
        conditioned: bool = True,
    ) -> list[Any]:
        from neuroinspect.methods.visualizers import VISUALIZERS, load_all

        load_all()
        key = self._settings_key(settings)
        todo = [
            int(n)
            for n in dict.fromkeys(int(n) for n in neurons)
            if (method, key, conditioned, int(n)) not in self._cache
        ]
        if todo:
            kwargs = dict(settings or {})
            if method == "clip_illusion" and kwargs.get("use_clip", True) and "clip" not in kwargs:
                if self.clip is None:
                    raise UserError(
                        "clip_illusion images need a CLIP: set `clip` in the experiment config (e.g. "
                        '"synthetic-clip:spurious-shapes", trained by `neuroinspect clip train`) or use_clip=false.'
                    )
                kwargs["clip"] = self.clip
            vis = VISUALIZERS.get(method)(**kwargs)
            t0 = time.perf_counter()
            with torch.enable_grad():  # synthetic images are optimized, whatever the caller's grad mode
                out = vis.visualize(
                    self.surface,
                    todo,
                    self.class_idx if conditioned else None,
                    dataset=self.dataset,
                    class_names=self.class_names,
                    seed=self.seed,
                    device=self.device,
                    show_progress=self.show_progress,
                )
            self.wall_seconds += time.perf_counter() - t0
            self.rendered += len(todo)
            for n, v in zip(todo, out, strict=True):
                self._cache[(method, key, conditioned, n)] = v
        return [self._cache[(method, key, conditioned, int(n))] for n in neurons]

    def put(
        self,
        neurons: Sequence[int],
        visualizations: Sequence[Any],
        method: str = "clip_illusion",
        settings: dict[str, Any] | None = None,
        conditioned: bool = True,
    ) -> None:
        """Add visualizations computed elsewhere (a sweep's ``render`` node): ``get`` with the same
        ``method``, ``settings`` and ``conditioned`` then returns them instead of optimizing again."""
        if len(neurons) != len(visualizations):
            raise ValueError(f"{len(neurons)} neurons but {len(visualizations)} visualizations")
        key = self._settings_key(settings)
        for n, v in zip(neurons, visualizations, strict=True):
            self._cache[(method, key, conditioned, int(n))] = v

    @staticmethod
    def _settings_key(settings: dict[str, Any] | None) -> str:
        return json.dumps(dict(settings or {}), sort_keys=True, default=str)


@dataclass
class SelectionContext:
    """What a selector may look at (never the benchmark's ground truth).

    ``surface``: the model (backbone, pool, decision layer); ``decision``: its ``nn.Linear(D, K)``;
    ``class_idx``: class c; ``class_names``: display names; ``prompts``: class strings for CLIP;
    ``class_means``: K×D mean pooled feature per class on the finder's split (spec §2.1 prototypes);
    ``dataset``: that split (eval transform); ``attributes``: the domain's attribute names for CLIP
    prompts (the benchmark's spurious values, e.g. ``["water", "land"]``), or ``None``;
    ``finder_scores``: ``{neuron: score}`` of the list the candidates come from; ``visuals``: the
    shared :class:`NeuronVisuals`; ``clip``: a loaded CLIP or ``None``.
    """

    surface: Any
    decision: nn.Linear
    class_idx: int
    class_names: list[str]
    prompts: list[str]
    class_means: torch.Tensor | None = None
    dataset: Any = None
    attributes: list[str] | None = None
    finder_scores: dict[int, float] = field(default_factory=dict)
    visuals: NeuronVisuals | None = None
    clip: Any = None
    benchmark_train: Any = None
    seed: int = 0
    device: str | torch.device = "cpu"
    show_progress: bool = True
    interactive: bool | None = None
    log: Callable[[str], None] = print


class Selector:
    """Base class. Subclasses set ``name`` (via :func:`register_selector`) and implement :meth:`label`
    (or :meth:`select` for selectors that judge nothing). Constructor arguments are the hyperparameters."""

    name: ClassVar[str] = ""
    #: whether the selector reads visualizations (the experiment then builds :class:`NeuronVisuals`)
    uses_visualizations: ClassVar[bool] = False
    #: whether it needs a CLIP model
    uses_clip: ClassVar[bool] = False

    def label(
        self, candidates: Sequence[int], ctx: SelectionContext
    ) -> tuple[dict[int, str], dict[int, float]]:
        """``({neuron: label}, {neuron: score})`` for the candidates (labels from :data:`LABELS`)."""
        raise NotImplementedError

    def select(self, candidates: Sequence[int], k: int, ctx: SelectionContext) -> Selection:
        """Label ``candidates`` and keep the spurious ones, in order, up to ``k``."""
        if k < 1:
            raise UserError(f"a selector needs k >= 1 neurons to choose, got {k}.")
        t0 = time.perf_counter()
        cand = [int(n) for n in candidates]
        labels, scores = self.label(cand, ctx)
        bad = {v for v in labels.values() if v not in LABELS}
        if bad:
            raise ValueError(f"selector {self.name!r} returned unknown labels {sorted(bad)}")
        chosen = [n for n in cand if labels.get(n) == "spurious"][:k]
        return Selection(
            selector=self.name,
            neurons=chosen,
            candidates=cand,
            labels={n: labels[n] for n in cand if n in labels},
            scores={n: float(scores[n]) for n in cand if n in scores},
            settings=self.settings(),
            wall_seconds=time.perf_counter() - t0,
        )

    def settings(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))
        }


SELECTORS: Registry[type[Selector]] = Registry("selector")


def register_selector(name: str, summary: str | None = None) -> Callable[[type[Selector]], type[Selector]]:
    """Class decorator: ``@register_selector("clip")``."""

    def deco(cls: type[Selector]) -> type[Selector]:
        cls.name = name
        return SELECTORS.register(name, summary)(cls)

    return deco


__all__ = [
    "LABELS",
    "SELECTORS",
    "NeuronVisuals",
    "Selection",
    "SelectionContext",
    "Selector",
    "register_selector",
]
