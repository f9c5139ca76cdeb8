"""The dataset interface every loader and bundled benchmark implements.

A dataset is a list of :class:`Sample` records (file path or virtual id, label, group) plus the
class names, the CLIP class strings (spec §4.6) and a transform. ``__getitem__`` returns a dict
whose ``index`` maps any prediction back to its sample, whatever the loader's order or batch size
(spec bug 27).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from neuroinspect.errors import DataError
from neuroinspect.registry import Registry


@dataclass(frozen=True)
class Sample:
    """One example: ``path`` (a file, or a virtual id such as ``spurious-shapes/test/00012``), its
    class ``label`` (0..K-1), its ``group`` (0..G-1, or ``None`` where the dataset has no groups)
    and free-form ``attrs`` (e.g. ``{"place": 1}``, ``{"context": "water"}``)."""

    path: str
    label: int
    group: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class ImageDataset(torch.utils.data.Dataset):
    """A split of an image classification dataset.

    Items are dicts: ``image`` (C×H×W float tensor after ``transform``, or a PIL image when the
    transform is ``None``), ``label`` (int), ``group`` (int, -1 when there are no groups), ``index``.
    """

    def __init__(
        self,
        name: str,
        split: str,
        samples: Sequence[Sample],
        classes: Sequence[str],
        prompts: Sequence[str] | None = None,
        group_names: Sequence[str] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.split = split
        self.samples = list(samples)
        self.classes = list(classes)
        self.prompts = list(prompts) if prompts is not None else list(classes)
        self.group_names = list(group_names) if group_names is not None else None
        self.transform = transform
        self.params = dict(params or {})
        if len(self.prompts) != len(self.classes):
            raise ValueError("prompts and classes must have the same length")

    # -- the torch Dataset protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        group = -1 if sample.group is None else sample.group
        return {"image": image, "label": sample.label, "group": group, "index": index}

    def load_image(self, index: int) -> Image.Image:
        """The RGB image of sample ``index``; a :class:`DataError` naming the file if it is unreadable."""
        path = self.samples[index].path
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise DataError(
                f"image file is missing: {path}. Re-extract the dataset or run `neuroinspect data check`."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DataError(
                f"image file is corrupt or not an image: {path} ({err}). Replace the file or delete it from the split's list."
            ) from None

    # -- conveniences ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_groups(self) -> int:
        return len(self.group_names) if self.group_names is not None else 0

    @property
    def labels(self) -> np.ndarray:
        """Labels, shape (N,), int64."""
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def groups(self) -> np.ndarray | None:
        """Group ids, shape (N,), int64; ``None`` when the dataset has no groups."""
        if self.group_names is None:
            return None
        return np.array([-1 if s.group is None else s.group for s in self.samples], dtype=np.int64)

    def fingerprint(self) -> str:
        """A short hash of the split's content (names, labels, groups, params): a feature-cache key part."""
        h = hashlib.sha256()
        h.update(
            json.dumps(
                [self.name, self.split, self.classes, self.params], sort_keys=True, default=str
            ).encode()
        )
        for s in self.samples:
            h.update(f"{s.path}|{s.label}|{s.group}\n".encode())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, classes={self.num_classes})"


class InMemoryImageDataset(ImageDataset):
    """A dataset whose images are a uint8 array of shape (N, H, W, 3) (the bundled benchmarks)."""

    def __init__(self, images: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(images) != len(self.samples):
            raise ValueError("one image per sample")
        self.images = images

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index], mode="RGB")


class DatasetSpec:
    """What a registered dataset provides. Subclasses are registered with ``@DATASETS.register(name)``.

    Real datasets read ``root`` in the official layout; bundled benchmarks generate their data
    (``root`` is ignored unless they cache to it).
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "real"  # "real" or "benchmark"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    domain: ClassVar[str] = ""  # CLIP prompt domain (spec §4.6)
    has_groups: ClassVar[bool] = False
    default_image_size: ClassVar[int] = 224

    @classmethod
    def load(
        cls,
        root: str | Path | None,
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
        **params: Any,
    ) -> ImageDataset:
        """The ``split`` of the dataset under ``root``; a :class:`DataError` naming what is missing."""
        raise NotImplementedError

    @classmethod
    def check(cls, root: str | Path | None, **params: Any) -> list[str]:
        """Problems with ``root`` (missing or malformed files), each naming the path; empty when valid."""
        raise NotImplementedError

    @classmethod
    def make_fixture(cls, root: str | Path, seed: int = 0, **params: Any) -> Path:
        """Write a tiny tree in the official on-disk format under ``root``; returns the root to pass to ``load``."""
        raise NotImplementedError

    @classmethod
    def check_split(cls, split: str) -> None:
        if split not in cls.splits:
            raise DataError(f"{cls.name} has no split {split!r}; choose one of {', '.join(cls.splits)}.")


DATASETS: Registry[type[DatasetSpec]] = Registry("dataset")


def require_root(name: str, root: str | Path | None) -> Path:
    """``root`` as a Path that exists, or a :class:`DataError` telling the user how to provide it."""
    if root is None:
        raise DataError(
            f"{name} needs --root DIR pointing at the dataset's folder (see `neuroinspect data check {name} --root DIR`)."
        )
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"--root {path} is a file; pass the folder that holds {name} (e.g. {path.parent}).")
    if not path.is_dir():
        raise DataError(
            f"dataset root {path} does not exist. Pass --root to the folder that holds {name}, "
            f"or write a tiny fixture with `neuroinspect data make-fixture {name} --root {path}`."
        )
    return path
