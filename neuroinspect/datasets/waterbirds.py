"""Waterbirds (Sagawa et al.) from ``waterbird_complete95_forest2water2`` (spec §6.1).

``metadata.csv`` (columns ``img_id, img_filename, y, split, place, place_filename``; only ``img_filename,
y, split, place`` are required) sits beside the species folders that ``img_filename`` points into.
split 0/1/2 = train/val/test; y 0 landbird, 1 waterbird; place 0 land, 1 water; group g = 2·y + place
(0 landbird/land, 1 landbird/water, 2 waterbird/land, 3 waterbird/water).

``--root`` may be the folder holding metadata.csv, a parent holding
``waterbird_complete95_forest2water2/``, the reference's doubly nested
``waterbird_complete95_forest2water2/waterbird_complete95_forest2water2/`` (under ``cub/`` or not), or
WILDS's ``waterbirds_v1.0/``. Groups come from the csv; no image is opened to build a split (spec bug 27).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from neuroinspect.datasets._layout import fresh_dir, locate, missing_files, parse_params, write_jpeg
from neuroinspect.datasets.base import DATASETS, DatasetSpec, ImageDataset, Sample
from neuroinspect.datasets.classnames import (
    WATERBIRDS,
    WATERBIRDS_GROUPS,
    WATERBIRDS_PLACES,
    WATERBIRDS_PROMPTS,
)
from neuroinspect.errors import DataError
from neuroinspect.fileio import atomic_write_text

FOLDER = "waterbird_complete95_forest2water2"
CANDIDATES = [
    "",
    FOLDER,
    f"{FOLDER}/{FOLDER}",
    f"cub/{FOLDER}",
    f"cub/{FOLDER}/{FOLDER}",
    "waterbirds_v1.0",
    "waterbirds",
]
LAYOUT = f"{FOLDER}/ (metadata.csv beside the species folders)"
REQUIRED = ("img_filename", "y", "split", "place")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
ALLOWED = {"y": (0, 1), "split": (0, 1, 2), "place": (0, 1)}
MAX_ROW_PROBLEMS = 10


def read_metadata(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows with int ``y``/``split``/``place``, problems); each problem names the file, line and field."""
    if not path.is_file():
        return [], [f"missing file: {path} (expected metadata.csv with columns {', '.join(REQUIRED)})."]
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            absent = [c for c in REQUIRED if c not in columns]
            if absent:
                return [], [
                    f"{path}: missing column {absent[0]!r}; expected columns {', '.join(REQUIRED)} "
                    f"(found: {', '.join(columns) or 'none'})."
                ]
            for line, raw in enumerate(reader, start=2):
                row = {
                    (k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in raw.items()
                }
                parsed: dict[str, Any] = {
                    "img_filename": row["img_filename"],
                    "img_id": row.get("img_id") or None,
                }
                bad = None
                if not row["img_filename"]:
                    bad = f"{path}, line {line}: img_filename is empty."
                for key, allowed in ALLOWED.items():
                    try:
                        value = int(float(row[key]))
                    except (TypeError, ValueError):
                        value = None
                    if value not in allowed:
                        bad = (
                            bad
                            or f"{path}, line {line}: {key}={row[key]!r}; expected one of {', '.join(map(str, allowed))}."
                        )
                    parsed[key] = value
                if bad:
                    if len(problems) < MAX_ROW_PROBLEMS:
                        problems.append(bad)
                    continue
                rows.append(parsed)
    except (UnicodeDecodeError, csv.Error) as err:
        return [], [f"{path} is not a readable CSV file ({err}); re-extract metadata.csv."]
    if not rows and not problems:
        problems.append(f"{path} has no rows; expected one row per image.")
    return rows, problems


@DATASETS.register("waterbirds")
class Waterbirds(DatasetSpec):
    """Waterbirds: landbird vs waterbird with land/water backgrounds, 4 groups (g = 2·y + place)."""

    name = "waterbirds"
    kind = "real"
    splits = ("train", "val", "test")
    domain = "waterbird"
    has_groups = True

    @classmethod
    def locate(cls, root: str | Path | None) -> Path:
        """The folder holding metadata.csv (``root`` itself or one of the reference's nested folders)."""
        return locate(cls.name, root, CANDIDATES, "metadata.csv", LAYOUT)

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
        rows, problems = read_metadata(base / "metadata.csv")
        if problems:
            raise DataError(
                problems[0] + " Run `neuroinspect data check waterbirds --root DIR` for the full list."
            )
        code = SPLIT_CODES[split]
        samples = [
            Sample(
                str(base / r["img_filename"]),
                r["y"],
                2 * r["y"] + r["place"],
                {"place": r["place"], "place_name": WATERBIRDS_PLACES[r["place"]], "img_id": r["img_id"]},
            )
            for r in rows
            if r["split"] == code
        ]
        if not samples:
            raise DataError(
                f"{base / 'metadata.csv'} has no rows with split={code} ({split}); expected train, val and test rows."
            )
        return ImageDataset(
            cls.name, split, samples, list(WATERBIRDS), list(WATERBIRDS_PROMPTS), list(WATERBIRDS_GROUPS), transform,
            params={},
        )  # fmt: skip

    @classmethod
    def check(cls, root: str | Path | None, **params: Any) -> list[str]:
        try:
            parse_params(cls.name, params, {})
            base = cls.locate(root)
        except DataError as err:
            return [str(err)]
        rows, problems = read_metadata(base / "metadata.csv")
        if problems:
            return problems
        present = {r["split"] for r in rows}
        problems += [
            f"{base / 'metadata.csv'}: no rows with split={c} ({s}); expected train, val and test rows."
            for s, c in SPLIT_CODES.items()
            if c not in present
        ]
        files = sorted({r["img_filename"] for r in rows})
        return problems + missing_files((base / f for f in files), total=len(files))

    @classmethod
    def make_fixture(cls, root: str | Path, seed: int = 0, **params: Any) -> Path:
        """``<root>/waterbird_complete95_forest2water2/`` (``nested=true``: doubly nested, as the reference
        expects) with metadata.csv and species folders; train is group-imbalanced, val/test balanced."""
        p = parse_params(f"{cls.name} fixture", params, {"nested": False, "image_size": 16})
        rng = np.random.default_rng(seed)
        base = fresh_dir(Path(root) / FOLDER / (FOLDER if p["nested"] else ""), cls.name)
        species = {
            0: ["010.Red_winged_Blackbird", "026.Bronzed_Cowbird"],
            1: ["001.Black_footed_Albatross", "059.California_Gull"],
        }
        places = {0: "/b/bamboo_forest/", 1: "/o/ocean/"}
        counts = {0: (5, 1, 1, 5), 1: (2, 2, 2, 2), 2: (2, 2, 2, 2)}  # split code -> images per group
        lines = ["img_id,img_filename,y,split,place,place_filename"]
        img_id = 0
        for split_code, per_group in counts.items():
            for g, n in enumerate(per_group):
                y, place = divmod(g, 2)
                for _ in range(n):
                    img_id += 1
                    folder = species[y][img_id % 2]
                    stem = folder.split(".", 1)[1]
                    fname = f"{folder}/{stem}_{img_id:04d}_{int(rng.integers(1, 800000))}.jpg"
                    color = (40 + 150 * y, 80 + 100 * place, 200 - 150 * place)
                    write_jpeg(base / fname, rng, color, p["image_size"])
                    lines.append(
                        f"{img_id},{fname},{y},{split_code},{place},{places[place]}{int(rng.integers(1, 5000)):08d}.jpg"
                    )
        atomic_write_text(base / "metadata.csv", "\n".join(lines) + "\n")
        return Path(root)
