"""Selectors: which of a finder's candidate neurons to edit (top, core-sensitivity, clip, concept, labels).

``SELECTORS`` maps a name to a :class:`Selector` subclass; ``SELECTORS.get(name)(**settings)`` builds
one and ``.select(candidates, k, ctx)`` returns a :class:`Selection`.
"""

from __future__ import annotations

import importlib
import pkgutil

from neuroinspect.methods.selectors.base import (
    LABELS,
    SELECTORS,
    NeuronVisuals,
    Selection,
    SelectionContext,
    Selector,
    register_selector,
)


def load_all() -> None:
    """Import every selector module in this package so that the registry is complete."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name not in ("base",):
            importlib.import_module(f"{__name__}.{mod.name}")


load_all()

__all__ = [
    "LABELS",
    "SELECTORS",
    "NeuronVisuals",
    "Selection",
    "SelectionContext",
    "Selector",
    "load_all",
    "register_selector",
]
