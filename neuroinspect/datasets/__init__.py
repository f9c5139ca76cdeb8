"""Dataset registry: real loaders (official on-disk layouts) and bundled benchmarks with ground truth."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from neuroinspect.datasets.base import (
    DATASETS,
    DatasetSpec,
    ImageDataset,
    InMemoryImageDataset,
    Sample,
    require_root,
)


def _load_all() -> None:
    # Importing each loader module fills the registry.
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


_load_all()


def get_dataset(name: str) -> type[DatasetSpec]:
    """The registered dataset spec called ``name`` (a UserError listing the choices otherwise)."""
    return DATASETS.get(name)


def load_dataset(
    name: str, root: str | Path | None, split: str, transform: Any = None, **params: Any
) -> ImageDataset:
    """Shorthand for ``get_dataset(name).load(root, split, transform, **params)``."""
    spec = get_dataset(name)
    spec.check_split(split)
    return spec.load(root, split, transform, **params)


__all__ = [
    "DATASETS",
    "DatasetSpec",
    "ImageDataset",
    "InMemoryImageDataset",
    "Sample",
    "get_dataset",
    "load_dataset",
    "require_root",
]
