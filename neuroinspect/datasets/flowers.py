"""Oxford Flowers-102 from the official files (spec §6.1).

Layout: ``<root>/flowers-102/jpg/image_00001.jpg`` (1-based ids), ``imagelabels.mat`` (key ``labels``,
1-based classes, one per image id) and ``setid.mat`` (keys ``trnid``, ``valid``, ``tstid``). The .mat
files are read with :func:`scipy.io.loadmat` directly: torchvision's loader checks their MD5 against the
originals (so it rejects fixtures) and squeezes a one-id split to a scalar (spec, platform notes).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from neuroinspect.datasets._layout import (
    class_color,
    fresh_dir,
    locate,
    missing_files,
    parse_params,
    write_jpeg,
)
from neuroinspect.datasets.base import DATASETS, DatasetSpec, ImageDataset, Sample
from neuroinspect.datasets.classnames import FLOWERS102, FLOWERS102_PROMPTS
from neuroinspect.errors import DataError
from neuroinspect.fileio import atomic_write_bytes

FOLDER = "flowers-102"
SPLIT_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}
LAYOUT = "flowers-102/ with jpg/image_NNNNN.jpg, imagelabels.mat and setid.mat"


def _read_mat_vector(path: Path, key: str) -> np.ndarray:
    """``key`` of the .mat file as a flat int64 vector (a single id stays a length-1 vector)."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"missing file: {path} (expected the official {path.name} with key {key!r}).")
    try:
        mat = loadmat(path)
    except Exception as err:  # noqa: BLE001 - scipy raises ValueError/TypeError/... on a broken file
        raise DataError(f"{path} is not a readable MATLAB file ({err}); re-download {path.name}.") from None
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise DataError(f"{path} has no key {key!r} (found: {found}); expected the official {path.name}.")
    values = np.asarray(mat[key])
    if values.dtype.kind not in "iuf" or values.size == 0:
        raise DataError(
            f"{path}: {key!r} must be a non-empty numeric array, got dtype {values.dtype} and {values.size} values."
        )
    flat = values.ravel()
    if values.dtype.kind == "f" and not np.all(np.isfinite(flat) & (flat == np.round(flat))):
        raise DataError(f"{path}: {key!r} must hold whole numbers (image ids / class labels).")
    return flat.astype(np.int64)


@DATASETS.register("flowers102")
class Flowers102(DatasetSpec):
    """Oxford Flowers-102: 102 flower classes, official train/val/test ids (1020/1020/6149)."""

    name = "flowers102"
    kind = "real"
    splits = ("train", "val", "test")
    domain = "flowers"
    has_groups = False

    @classmethod
    def locate(cls, root: str | Path | None) -> Path:
        """The ``flowers-102`` folder: ``root`` itself or ``root/flowers-102``."""
        return locate(cls.name, root, [FOLDER, ""], "setid.mat", LAYOUT)

    @classmethod
    def _index(cls, base: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        labels = _read_mat_vector(base / "imagelabels.mat", "labels")
        ids = {split: _read_mat_vector(base / "setid.mat", key) for split, key in SPLIT_KEYS.items()}
        if labels.min() < 1 or labels.max() > len(FLOWERS102):
            bad = int(labels[(labels < 1) | (labels > len(FLOWERS102))][0])
            raise DataError(
                f"{base / 'imagelabels.mat'}: label {bad} is outside 1..{len(FLOWERS102)} (the file must use 1-based labels)."
            )
        for split, vec in ids.items():
            out = vec[(vec < 1) | (vec > len(labels))]
            if out.size:
                raise DataError(
                    f"{base / 'setid.mat'}: {SPLIT_KEYS[split]!r} holds image id {int(out[0])}, outside 1..{len(labels)} "
                    f"(imagelabels.mat labels {len(labels)} images)."
                )
        return labels, ids

    @classmethod
    def load(
        cls,
        root: str | Path | None,
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
        **params: Any,
    ) -> ImageDataset:
        cls.check_split(split)
        parse_params(cls.name, params, {})
        base = cls.locate(root)
        labels, ids = cls._index(base)
        samples = [
            Sample(
                str(base / "jpg" / f"image_{int(i):05d}.jpg"),
                int(labels[i - 1]) - 1,
                None,
                {"image_id": int(i)},
            )
            for i in ids[split]
        ]
        return ImageDataset(
            cls.name, split, samples, list(FLOWERS102), list(FLOWERS102_PROMPTS), None, transform,
            params={},
        )  # fmt: skip

    @classmethod
    def check(cls, root: str | Path | None, **params: Any) -> list[str]:
        try:
            parse_params(cls.name, params, {})
            base = cls.locate(root)
        except DataError as err:
            return [str(err)]
        problems: list[str] = []
        labels = None
        try:
            labels = _read_mat_vector(base / "imagelabels.mat", "labels")
        except DataError as err:
            problems.append(str(err))
        for key in SPLIT_KEYS.values():
            try:
                _read_mat_vector(base / "setid.mat", key)
            except DataError as err:
                problems.append(str(err))
        if not (base / "jpg").is_dir():
            problems.append(
                f"missing folder: {base / 'jpg'} (expected the images of 102flowers.tgz, jpg/image_00001.jpg ...)."
            )
        if problems or labels is None:
            return problems
        try:
            _, ids = cls._index(base)
        except DataError as err:
            return [str(err)]
        all_ids = np.unique(np.concatenate(list(ids.values())))
        return missing_files((base / "jpg" / f"image_{int(i):05d}.jpg" for i in all_ids), total=len(all_ids))

    @classmethod
    def make_fixture(cls, root: str | Path, seed: int = 0, **params: Any) -> Path:
        """``<root>/flowers-102`` with ``num_classes`` classes (all 102 by default) and ``*_per_class``
        images per class and split; ids are shuffled so that labels are not sorted by id."""
        from scipy.io import savemat

        p = parse_params(
            f"{cls.name} fixture",
            params,
            {
                "train_per_class": 1,
                "val_per_class": 1,
                "test_per_class": 2,
                "num_classes": len(FLOWERS102),
                "image_size": 16,
            },
        )
        train_per_class, val_per_class, test_per_class = (
            p["train_per_class"],
            p["val_per_class"],
            p["test_per_class"],
        )
        num_classes, image_size = p["num_classes"], p["image_size"]
        if min(train_per_class, val_per_class, test_per_class) < 1 or not 1 <= num_classes <= len(FLOWERS102):
            raise DataError(
                f"flowers102 fixture needs >= 1 image per class and split, and 1..{len(FLOWERS102)} classes."
            )
        rng = np.random.default_rng(seed)
        base = fresh_dir(Path(root) / FOLDER, cls.name)
        per_split = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
        plan = [(split, c) for c in range(num_classes) for split, n in per_split.items() for _ in range(n)]
        ids = rng.permutation(len(plan)) + 1  # image id of each planned image
        labels = np.zeros(len(plan), dtype=np.uint8)
        split_ids: dict[str, list[int]] = {s: [] for s in per_split}
        for (split, c), image_id in zip(plan, ids, strict=True):
            labels[image_id - 1] = c + 1
            split_ids[split].append(int(image_id))
            write_jpeg(
                base / "jpg" / f"image_{image_id:05d}.jpg", rng, class_color(c, num_classes), image_size
            )

        def mat_bytes(obj: dict[str, np.ndarray]) -> bytes:
            buf = io.BytesIO()
            savemat(buf, obj)
            return buf.getvalue()

        atomic_write_bytes(base / "imagelabels.mat", mat_bytes({"labels": labels[None, :]}))
        atomic_write_bytes(
            base / "setid.mat",
            mat_bytes(
                {SPLIT_KEYS[s]: np.array(sorted(v), dtype=np.uint16)[None, :] for s, v in split_ids.items()}
            ),
        )
        return Path(root)
