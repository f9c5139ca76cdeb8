"""Visualizers: what a neuron encodes (CLIP-Illusion, Lucent, natural exemplars, Captum baselines)."""

from __future__ import annotations

import importlib
import pkgutil

from neuroinspect.methods.visualizers.base import VISUALIZERS, Visualization, Visualizer, register_visualizer


def load_all() -> None:
    """Import every visualizer module in this package so that the registry is complete."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name not in ("base",):
            importlib.import_module(f"{__name__}.{mod.name}")


__all__ = ["VISUALIZERS", "Visualization", "Visualizer", "register_visualizer", "load_all"]
