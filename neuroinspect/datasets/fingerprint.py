"""Dataset fingerprints: which data a result was measured on, and whether it is the official release.

A published number is comparable to a measured one only when both come from the same data. A
user's own Waterbirds-format folder is also called ``waterbirds``, so the name is not enough: every
record that measures on a dataset carries a fingerprint (:func:`fingerprint_splits`), and the
leaderboard joins published rows into a measured table only when the fingerprint matches the
official release (:func:`compare_to_official`, :data:`OFFICIAL_RELEASES`).

A fingerprint is a small JSON object::

    {"version": 1, "classes": 2,
     "splits": {"train": 4795, "val": 1199, "test": 5794},
     "groups": {"train": [3498, 184, 56, 1057], ...},      # only for datasets with groups
     "sha256": "3f1c0a9b2d4e5f60"}                         # 16 hex digits

``sha256`` hashes the dataset parameters and, for every split, every sample's path relative to the
split's common folder, its label and its group: the same data under another ``--root`` hashes alike,
and one relabelled or missing image changes it. Images are not opened (spec bug 27: building a
split never reads pixels), so two folders with the same file names and labels but different pixels
hash alike; split sizes and group counts are what the official releases publish, and they are what
:func:`compare_to_official` checks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuroinspect.datasets.base import ImageDataset

FINGERPRINT_VERSION = 1
#: The record field that holds the fingerprint.
RECORD_FIELD = "dataset_fingerprint"

#: What the official releases publish: split sizes and, where the dataset has groups, the group
#: counts per split (group order as the loader numbers them). Only the splits a release fixes are
#: listed: Food101's validation split is carved out of its train split by each user (spec §6.1), so
#: only its test split and class count identify it.
OFFICIAL_RELEASES: dict[str, dict[str, Any]] = {
    # Sagawa et al. (ICLR'20), waterbird_complete95_forest2water2; groups g = 2*y + place:
    # landbird/land, landbird/water, waterbird/land, waterbird/water.
    "waterbirds": {
        "classes": 2,
        "splits": {"train": 4795, "val": 1199, "test": 5794},
        "groups": {
            "train": [3498, 184, 56, 1057],
            "val": [467, 466, 133, 133],
            "test": [2255, 2255, 642, 642],
        },
    },
    # Nilsback & Zisserman (2008): trnid / valid / tstid of setid.mat.
    "flowers102": {"classes": 102, "splits": {"train": 1020, "val": 1020, "test": 6149}},
    # Bossard et al. (2014): meta/test.json, 250 images per class.
    "food101": {"classes": 101, "splits": {"test": 25250}},
}


def _relative_paths(paths: list[str]) -> list[str]:
    """Paths relative to their common folder, with ``/`` separators (so ``--root`` does not matter)."""
    if not paths:
        return []
    try:
        common = os.path.commonpath(paths)
    except ValueError:  # mixed absolute and relative paths, or different drives
        return [p.replace(os.sep, "/") for p in paths]
    if len(paths) == 1:
        common = os.path.dirname(common)
    return [os.path.relpath(p, common).replace(os.sep, "/") if common else p for p in paths]


def fingerprint_splits(splits: Mapping[str, ImageDataset]) -> dict[str, Any]:
    """The fingerprint of the given splits of one dataset (``{"train": ds, "val": ds, "test": ds}``).

    Works on the loaded :class:`~neuroinspect.datasets.base.ImageDataset` objects (no image is
    opened); pass every split the result depends on. Raises ``ValueError`` if the splits disagree on
    the number of classes.
    """
    if not splits:
        raise ValueError("fingerprint_splits needs at least one split")
    classes = {ds.num_classes for ds in splits.values()}
    if len(classes) != 1:
        raise ValueError(f"the splits disagree on the number of classes: {sorted(classes)}")
    h = hashlib.sha256()
    first = next(iter(splits.values()))
    h.update(json.dumps([first.name, first.classes, first.params], sort_keys=True, default=str).encode())
    sizes: dict[str, int] = {}
    groups: dict[str, list[int]] = {}
    for name in sorted(splits):
        ds = splits[name]
        sizes[name] = len(ds)
        h.update(f"[{name}]\n".encode())
        rel = _relative_paths([s.path for s in ds.samples])
        for path, s in zip(rel, ds.samples, strict=True):
            h.update(f"{path}|{s.label}|{s.group}\n".encode())
        if ds.num_groups:
            counts = [0] * ds.num_groups
            for s in ds.samples:
                if s.group is not None and 0 <= s.group < ds.num_groups:
                    counts[s.group] += 1
            groups[name] = counts
    fp: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "classes": classes.pop(),
        "splits": sizes,
    }
    if groups:
        fp["groups"] = groups
    fp["sha256"] = h.hexdigest()[:16]
    return fp


def stamp(records: Iterable[MutableMapping[str, Any]], fingerprint: Mapping[str, Any]) -> None:
    """Write ``fingerprint`` into each record's :data:`RECORD_FIELD` (records made before the data's
    fingerprint was known, e.g. by a runner that loads the splits once for several records)."""
    for rec in records:
        rec[RECORD_FIELD] = dict(fingerprint)


def validate_fingerprint(fp: Any) -> str | None:
    """``None`` if ``fp`` is a well-formed fingerprint, else what is wrong (for the record validator)."""
    if not isinstance(fp, Mapping):
        return "must be an object with classes, splits and sha256"
    if not isinstance(fp.get("splits"), Mapping) or not fp["splits"]:
        return "needs 'splits', an object of split name -> number of samples"
    for name, n in fp["splits"].items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return f"'splits.{name}' must be a non-negative integer, got {n!r}"
    groups = fp.get("groups")
    if groups is not None:
        if not isinstance(groups, Mapping):
            return "'groups' must be an object of split name -> list of group counts"
        for name, counts in groups.items():
            if not isinstance(counts, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
            ):
                return f"'groups.{name}' must be a list of non-negative integers"
    if not isinstance(fp.get("sha256"), str) or not fp["sha256"]:
        return "needs 'sha256', the hash of the split contents"
    return None


def compare_to_official(dataset: str, fp: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether ``fp`` (a record's fingerprint of ``dataset``) is the official release, and why not.

    The test split must be in the fingerprint; every split and group count the release fixes that
    the fingerprint also covers must match exactly. Returns ``(True, "official release")`` or
    ``(False, reason)`` where the reason names the first difference (``"test has 2000 samples, the
    official release 5794"``), or says that the records carry no fingerprint or that no official
    release is on file for the dataset.
    """
    official = OFFICIAL_RELEASES.get(dataset)
    if official is None:
        return False, f"no official release of {dataset} is on file to compare with"
    if not fp:
        return False, "the measured records carry no dataset fingerprint"
    sizes = fp.get("splits") or {}
    if "test" not in sizes:
        return False, "the measured records' fingerprint has no test split"
    if fp.get("classes") != official["classes"]:
        return False, f"{fp.get('classes')} classes, the official release {official['classes']}"
    for split, n in official["splits"].items():
        if split in sizes and sizes[split] != n:
            return False, f"{split} has {sizes[split]} samples, the official release {n}"
    got_groups = fp.get("groups") or {}
    for split, counts in (official.get("groups") or {}).items():
        if split in sizes and got_groups.get(split) != counts:
            return False, f"{split} group counts {got_groups.get(split)}, the official release {counts}"
    return True, "official release"


def describe(fp: Mapping[str, Any] | None) -> str:
    """``train 4795 · val 1199 · test 5794 (data 3f1c0a9b)`` for a table note; ``""`` without one."""
    if not fp:
        return ""
    order = {"train": 0, "val": 1, "test": 2}
    sizes = fp.get("splits") or {}
    parts = [f"{k} {sizes[k]}" for k in sorted(sizes, key=lambda k: (order.get(k, 9), k))]
    return " · ".join(parts) + f" (data {str(fp.get('sha256', ''))[:8]})"


__all__ = [
    "FINGERPRINT_VERSION",
    "OFFICIAL_RELEASES",
    "RECORD_FIELD",
    "compare_to_official",
    "describe",
    "fingerprint_splits",
    "stamp",
    "validate_fingerprint",
]
