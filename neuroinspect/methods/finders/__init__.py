"""Finders: which neurons cause a class's mistakes (NeuroInspect's counterfactual, and baselines).

Every finder is a :class:`Finder` subclass registered with ``@register_finder("name")`` and
implements ``find(decision, features, class_idx, *, seed, show_progress) -> FinderResult`` on cached
pooled features. A new method is one module in this package; :func:`load_all` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

from neuroinspect.methods.finders.base import (
    FINDERS,
    Finder,
    FinderResult,
    Mistakes,
    gamma_heuristic,
    importance,
    register_finder,
    select_mistakes,
)


def load_all() -> None:
    """Import every finder module in this package so that the registry is complete."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name not in ("base",):
            importlib.import_module(f"{__name__}.{mod.name}")


__all__ = [
    "FINDERS",
    "Finder",
    "FinderResult",
    "Mistakes",
    "gamma_heuristic",
    "importance",
    "load_all",
    "register_finder",
    "select_mistakes",
]
