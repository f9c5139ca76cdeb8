"""Dataset registry: real loaders (official on-disk layouts) and bundled benchmarks with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuroinspect.datasets.base import DATASETS, DatasetSpec, ImageDataset, InMemoryImageDataset, Sample, require_root

# Importing the modules fills the registry.
from neuroinspect.datasets import flowers, food, waterbirds, metashift, shapes, digits  # noqa: E402,F401  isort: skip


def get_dataset(name: str) -> type[DatasetSpec]:
    """The registered dataset spec called ``name`` (a UserError listing the choices otherwise)."""
    return DATASETS.get(name)


def load_dataset(name: str, root: str | Path | None, split: str, transform: Any = None, **params: Any) -> ImageDataset:
    """Shorthand for ``get_dataset(name).load(root, split, transform, **params)``."""
    spec = get_dataset(name)
    spec.check_split(split)
    return spec.load(root, split, transform, **params)


__all__ = ["DATASETS", "DatasetSpec", "ImageDataset", "InMemoryImageDataset", "Sample", "get_dataset", "load_dataset", "require_root"]
