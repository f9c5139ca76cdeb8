"""Food-101 from the official files (spec §6.1), with a validation split that never touches them.

Layout: ``<root>/food-101/meta/{train,test}.json`` (class → ``["class/id", ...]``, no ``.jpg``) and
``<root>/food-101/images/<class>/<id>.jpg``. Classes are the sorted json keys (steak = 93).

Validation protocol (spec §6.1, bug 25). The reference draws int(0.15·n) images per class from
train.json and *overwrites train.json with the rest* on its first run. Here the draw happens in memory
and no file is ever written:

* ``val_source="split"`` (default): for each class in sorted order, the sorted train.json ids are
  sampled with one ``random.Random(val_seed)`` stream (Python ``random``, seed 77, as the reference);
  ``k = int(val_fraction · n)`` go to val, the rest to train (750 → 638 + 112 per class).
  ``val_rounds=2`` reproduces the author's split, which was evidently drawn twice (the second time from
  the already-shrunk train.json: 638 → 543 train + 95 val per class, 9,595 val images); images drawn in
  the first round are then in neither split, as in the author's files. The reference iterated a
  ``set()``, whose order depends on the hash seed, so its exact draw cannot be reproduced; sorting first
  makes ours deterministic.
* ``val_source="file"``: the author's ``meta/valid.json`` if you have it; train = train.json minus those ids.

``ImageDataset.params`` records the protocol, so results say which split they used.
"""

from __future__ import annotations

import json
import random
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
from neuroinspect.datasets.classnames import FOOD101, food_prompt
from neuroinspect.errors import DataError
from neuroinspect.fileio import atomic_write_json, atomic_write_text

FOLDER = "food-101"
LAYOUT = "food-101/ with meta/train.json, meta/test.json and images/<class>/<id>.jpg"
DEFAULTS: dict[str, Any] = {"val_source": "split", "val_fraction": 0.15, "val_seed": 77, "val_rounds": 1}


def read_meta(path: Path) -> dict[str, list[str]]:
    """A Food-101 meta json (class → ``["class/id", ...]``), validated; a DataError naming the bad entry."""
    if not path.is_file():
        raise DataError(
            f'missing file: {path} (expected {path.name} from food-101.tar.gz: a JSON object class -> ["class/id", ...]).'
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); re-extract it from food-101.tar.gz.") from None
    if not isinstance(data, dict) or not data:
        raise DataError(
            f'{path} must be a non-empty JSON object class -> ["class/id", ...], got {type(data).__name__}.'
        )
    for cls, entries in data.items():
        if not isinstance(entries, list) or not entries:
            raise DataError(f'{path}: class {cls!r} must map to a non-empty list of "{cls}/<id>" strings.')
        for entry in entries:
            if (
                not isinstance(entry, str)
                or entry.count("/") != 1
                or entry.split("/")[0] != cls
                or entry.endswith("/")
            ):
                raise DataError(
                    f'{path}: class {cls!r} has entry {entry!r}; expected "{cls}/<id>" (no .jpg).'
                )
    return data


def draw_val(
    train: dict[str, list[str]], fraction: float, seed: int, rounds: int = 1
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(train, val) per class: ``int(fraction · n)`` ids to val, drawn ``rounds`` times (see module doc).

    Pure: ``train`` is not modified and nothing is written.
    """
    remaining = {c: sorted(v) for c, v in train.items()}
    val: dict[str, list[str]] = {}
    for _ in range(rounds):
        rng = random.Random(seed)  # the reference seeds 77 at the start of each run
        val = {}
        for cls in sorted(remaining):
            ids = remaining[cls]
            drawn = set(rng.sample(ids, int(fraction * len(ids))))
            val[cls] = [i for i in ids if i in drawn]
            remaining[cls] = [i for i in ids if i not in drawn]
    return remaining, val


def val_protocol(params: dict[str, Any]) -> str:
    """One line describing the validation split that ``params`` (a loaded split's ``params``) select."""
    if params.get("val_source") == "file":
        return "val = meta/valid.json; train = train.json minus valid.json ids"
    return (
        f"val = int({params['val_fraction']}*n) per class drawn with random.Random({params['val_seed']}).sample from "
        f"the sorted train.json ids ({params['val_rounds']} round(s)); train = the rest; no file written"
    )


@DATASETS.register("food101")
class Food101(DatasetSpec):
    """Food-101: 101 dishes; official train/test, val drawn in memory (15%/class, seed 77), never written."""

    name = "food101"
    kind = "real"
    splits = ("train", "val", "test")
    domain = "food"
    has_groups = False

    @classmethod
    def locate(cls, root: str | Path | None) -> Path:
        """The ``food-101`` folder: ``root/food-101`` or ``root`` itself."""
        return locate(cls.name, root, [FOLDER, ""], "meta/train.json", LAYOUT)

    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = parse_params(cls.name, params, DEFAULTS)
        if p["val_source"] not in ("split", "file"):
            raise DataError(
                f"food101: val_source={p['val_source']!r}; use 'split' (drawn from train.json) or 'file' (meta/valid.json)."
            )
        if not 0.0 <= p["val_fraction"] < 1.0:
            raise DataError(f"food101: val_fraction={p['val_fraction']} must be in [0, 1).")
        if p["val_rounds"] < 1:
            raise DataError("food101: val_rounds must be >= 1.")
        return p

    @classmethod
    def _index(cls, base: Path, p: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
        """(classes, split → class → ids)."""
        train = read_meta(base / "meta" / "train.json")
        test = read_meta(base / "meta" / "test.json")
        classes = sorted(train)
        if set(test) != set(train):
            odd = sorted(set(train) ^ set(test))[0]
            where = "test.json" if odd in train else "train.json"
            raise DataError(
                f"{base / 'meta'}: class {odd!r} is missing from {where}; train.json and test.json must list the same classes."
            )
        if p["val_source"] == "file":
            valid_path = base / "meta" / "valid.json"
            if not valid_path.is_file():
                raise DataError(
                    f"val_source='file' needs {valid_path} (the author's validation list); it is missing. "
                    f"Use --param val_source=split to draw the validation split from train.json instead."
                )
            val = read_meta(valid_path)
            extra = sorted(set(val) - set(train))
            if extra:
                raise DataError(f"{valid_path}: class {extra[0]!r} is not in train.json.")
            val_ids = {i for ids in val.values() for i in ids}
            leak = sorted(val_ids & {i for ids in test.values() for i in ids})
            if leak:
                raise DataError(
                    f"{valid_path}: {leak[0]!r} is also in test.json; a validation image must not be a test image."
                )
            train_split = {c: [i for i in train[c] if i not in val_ids] for c in classes}
            val_split = {c: list(val.get(c, [])) for c in classes}
        else:
            train_split, val_split = draw_val(train, p["val_fraction"], p["val_seed"], p["val_rounds"])
        return classes, {"train": train_split, "val": val_split, "test": test}

    @classmethod
    def load(
        cls,
        root: str | Path | None,
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
        **params: Any,
    ) -> ImageDataset:
        cls.check_split(split)
        p = cls._params(params)
        base = cls.locate(root)
        classes, index = cls._index(base, p)
        samples = [
            Sample(str(base / "images" / f"{entry}.jpg"), label, None, {"id": entry})
            for label, c in enumerate(classes)
            for entry in index[split].get(c, [])
        ]
        if not samples:
            raise DataError(
                f"food101: the {split} split under {base} is empty"
                + (
                    f" (int({p['val_fraction']}*n) is 0 for every class; raise --param val_fraction)."
                    if split == "val"
                    else "."
                )
            )
        return ImageDataset(
            cls.name, split, samples, classes, [food_prompt(c) for c in classes], None, transform, params=p,
        )  # fmt: skip

    @classmethod
    def check(cls, root: str | Path | None, **params: Any) -> list[str]:
        try:
            p = cls._params(params)
            base = cls.locate(root)
        except DataError as err:
            return [str(err)]
        problems: list[str] = []
        metas = ["train.json", "test.json"] + (["valid.json"] if p["val_source"] == "file" else [])
        loaded: dict[str, dict[str, list[str]]] = {}
        for name in metas:
            if name == "valid.json" and not (base / "meta" / name).is_file():
                problems.append(
                    f"missing file: {base / 'meta' / name} (val_source='file' reads the author's validation list). "
                    f"Use --param val_source=split to draw the validation split from train.json instead."
                )
                continue
            try:
                loaded[name] = read_meta(base / "meta" / name)
            except DataError as err:
                problems.append(str(err))
        if not (base / "images").is_dir():
            problems.append(
                f"missing folder: {base / 'images'} (expected images/<class>/<id>.jpg from food-101.tar.gz)."
            )
        if problems:
            return problems
        try:
            cls._index(base, p)
        except DataError as err:
            return [str(err)]
        entries = sorted({e for meta in loaded.values() for ids in meta.values() for e in ids})
        return missing_files((base / "images" / f"{e}.jpg" for e in entries), total=len(entries))

    @classmethod
    def make_fixture(cls, root: str | Path, seed: int = 0, **params: Any) -> Path:
        """``<root>/food-101`` in the official layout (meta/*.json, *.txt, images/) for ``num_classes``
        of the 101 classes (all by default), with ``train_per_class`` / ``test_per_class`` images each."""
        p = parse_params(
            f"{cls.name} fixture",
            params,
            {"train_per_class": 7, "test_per_class": 2, "num_classes": len(FOOD101), "image_size": 16},
        )
        if p["train_per_class"] < 1 or p["test_per_class"] < 1 or not 1 <= p["num_classes"] <= len(FOOD101):
            raise DataError(
                f"food101 fixture needs >= 1 image per class and split, and 1..{len(FOOD101)} classes."
            )
        rng = np.random.default_rng(seed)
        base = fresh_dir(Path(root) / FOLDER, cls.name)
        classes = list(FOOD101[: p["num_classes"]])
        per_class = p["train_per_class"] + p["test_per_class"]
        ids = 100_000 + rng.choice(3_900_000, size=(len(classes), per_class), replace=False)
        meta: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
        for k, c in enumerate(classes):
            entries = [f"{c}/{int(i)}" for i in ids[k]]
            meta["train"][c] = entries[: p["train_per_class"]]
            meta["test"][c] = entries[p["train_per_class"] :]
            for entry in entries:
                write_jpeg(
                    base / "images" / f"{entry}.jpg", rng, class_color(k, len(classes)), p["image_size"]
                )
        for split, data in meta.items():
            atomic_write_json(base / "meta" / f"{split}.json", data, indent=None)
            atomic_write_text(
                base / "meta" / f"{split}.txt", "".join(f"{e}\n" for c in classes for e in data[c])
            )
        atomic_write_text(base / "meta" / "classes.txt", "".join(f"{c}\n" for c in classes))
        atomic_write_text(
            base / "meta" / "labels.txt", "".join(f"{c.replace('_', ' ').capitalize()}\n" for c in classes)
        )
        return Path(root)
