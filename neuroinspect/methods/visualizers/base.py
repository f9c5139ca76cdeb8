"""The visualizer interface: what a neuron (optionally conditioned on a class) encodes.

Every visualizer implements one call, :meth:`Visualizer.visualize`, in Captum's ``attribute`` style:
the same arguments for every method, one :class:`Visualization` per (neuron, class) pair.
A new method is one file with ``@register_visualizer("name")`` on a :class:`Visualizer` subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from neuroinspect.errors import UserError
from neuroinspect.harness.models import ModelSurface
from neuroinspect.registry import Registry


@dataclass
class Visualization:
    """What a visualizer returns for one (neuron, class) pair.

    - ``images``: n×3×H×W float in [0, 1] (n images for this pair; synthetic or natural).
    - ``activation_maps``: n×H×W float, the neuron's spatial response upsampled to the image, or ``None``.
    - ``masks``: n×H×W float in [0, 1] (spec §4.4), or ``None``.
    - ``activations``: n floats, the target neuron's pooled activation on each image.
    - ``class_logits`` / ``class_probs``: n floats for ``class_idx`` (``None`` when unconditioned).
    - ``settings``: every hyperparameter used; ``wall_seconds``: time spent on this pair
      (a batched optimization's time divided by the pairs it served).
    - ``extra``: method-specific values (e.g. CLIP scores, loss curves, dataset indices of exemplars).
    """

    method: str
    neuron: int
    class_idx: int | None
    images: torch.Tensor
    activations: list[float]
    activation_maps: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    class_logits: list[float] | None = None
    class_probs: list[float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Visualizer:
    """Base class. Subclasses set ``name`` and implement :meth:`visualize`.

    Constructor arguments are the method's hyperparameters (with defaults); the call's arguments
    are the same for every method.
    """

    name: ClassVar[str] = ""
    #: "synthetic" (optimized images), "natural" (dataset images) or "attribution" (heatmaps on inputs)
    kind: ClassVar[str] = "synthetic"

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
        """Visualize each neuron in ``neurons`` (indices into the decision layer's D inputs).

        ``class_idx``: one class for all neurons, one per neuron, or ``None`` (unconditioned).
        ``dataset``: an :class:`~neuroinspect.datasets.ImageDataset` (needed by natural-image and
        attribution methods; its transform must give normalized model inputs).
        ``class_names``: CLIP class strings, one per class (for CLIP-guided methods).
        Returns one :class:`Visualization` per (neuron, class) pair, in input order.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The hyperparameters of this instance, recorded with every result."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and _is_plain(v)}


def _is_plain(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))


def pair_classes(neurons: Sequence[int], class_idx: Sequence[int | None] | int | None) -> list[int | None]:
    """Broadcast ``class_idx`` to one entry per neuron (a clear ValueError on a length mismatch)."""
    if class_idx is None or isinstance(class_idx, int):
        return [class_idx] * len(neurons)
    classes = list(class_idx)
    if len(classes) != len(neurons):
        raise ValueError(
            f"{len(classes)} classes for {len(neurons)} neurons; give one class or one per neuron"
        )
    return classes


def check_neurons(surface: ModelSurface, neurons: Sequence[int]) -> None:
    """A :class:`UserError` for a neuron index outside 0..D-1."""
    d = surface.num_features
    for n in neurons:
        if not 0 <= int(n) < d:
            raise UserError(
                f"neuron index {n} is out of range: the model's pooled layer has {d} neurons, 0..{d - 1}."
            )


def check_class(surface: ModelSurface, class_idx: int | None) -> None:
    """A :class:`UserError` for a class index outside 0..K-1 (``None``, unconditioned, is fine)."""
    if class_idx is not None and not 0 <= int(class_idx) < surface.num_classes:
        raise UserError(
            f"class index {class_idx} is out of range: the model has {surface.num_classes} classes, "
            f"0..{surface.num_classes - 1}."
        )


def validate_pairs(
    surface: ModelSurface, neurons: Sequence[int], class_idx: Sequence[int | None] | int | None
) -> list[int | None]:
    """One class per neuron (:func:`pair_classes`), every neuron and class index checked against the model."""
    classes = pair_classes(neurons, class_idx)
    check_neurons(surface, neurons)
    for c in classes:
        check_class(surface, c)
    return classes


VISUALIZERS: Registry[type[Visualizer]] = Registry("visualizer")


def register_visualizer(
    name: str, summary: str | None = None
) -> Callable[[type[Visualizer]], type[Visualizer]]:
    """Class decorator: ``@register_visualizer("clip_illusion")``."""

    def deco(cls: type[Visualizer]) -> type[Visualizer]:
        cls.name = name
        return VISUALIZERS.register(name, summary)(cls)

    return deco
