"""Editors: decision-layer mitigation of a false correlation (NeuroInspect, cw, focal, fc, dfr, random-neurons).

``EDITORS`` maps a name to an :class:`Editor` subclass; ``EDITORS.get(name)(**hyperparameters)``
builds one and ``.edit(decision, train, val, class_idx, neurons, seed=...)`` runs it on cached features.
"""

from __future__ import annotations

import importlib
import pkgutil

from neuroinspect.methods.editors.base import EDITORS, Editor, EditResult, TrainedEditor, register_editor


def load_all() -> None:
    """Import every editor module in this package so that the registry is complete."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name not in ("base", "schedules"):
            importlib.import_module(f"{__name__}.{mod.name}")


load_all()

__all__ = ["EDITORS", "EditResult", "Editor", "TrainedEditor", "load_all", "register_editor"]
