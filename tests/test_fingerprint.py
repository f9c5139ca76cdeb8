"""Dataset fingerprints: what the records say about their data, and the check against the official release."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from neuroinspect.datasets import get_dataset
from neuroinspect.datasets.fingerprint import (
    OFFICIAL_RELEASES,
    compare_to_official,
    fingerprint_splits,
    validate_fingerprint,
)
from neuroinspect.errors import RecordError
from neuroinspect.harness.records import VERSION_KEYS, make_record

SPLITS = ("train", "val", "test")


def waterbirds_fp(root: Path) -> dict:
    spec = get_dataset("waterbirds")
    return fingerprint_splits({s: spec.load(root, s, None) for s in SPLITS})


def test_fingerprint_of_a_waterbirds_format_folder(tmp_path: Path) -> None:
    root = get_dataset("waterbirds").make_fixture(tmp_path / "a", seed=0)
    fp = waterbirds_fp(root)
    # the fixture writes 5/1/1/5 train images per group and 2 per group in val and test
    assert fp["classes"] == 2 and fp["splits"] == {"test": 8, "train": 12, "val": 8}
    assert fp["groups"] == {"test": [2, 2, 2, 2], "train": [5, 1, 1, 5], "val": [2, 2, 2, 2]}
    assert len(fp["sha256"]) == 16 and validate_fingerprint(fp) is None

    # the same files under another root hash alike; one relabelled image does not
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    assert waterbirds_fp(tmp_path / "elsewhere" / "b") == fp
    meta = root / "waterbird_complete95_forest2water2" / "metadata.csv"
    lines = meta.read_text(encoding="utf-8").splitlines()
    cells = lines[-1].split(",")
    cells[2] = "0" if cells[2] == "1" else "1"  # y of the last test image
    meta.write_text("\n".join([*lines[:-1], ",".join(cells)]) + "\n", encoding="utf-8")
    changed = waterbirds_fp(root)
    assert changed["sha256"] != fp["sha256"] and changed["splits"] == fp["splits"]

    # a user's folder is not the official release, and the reason names the first difference
    assert compare_to_official("waterbirds", fp) == (False, "train has 12 samples, the official release 4795")


def test_comparison_with_the_official_release() -> None:
    wb = OFFICIAL_RELEASES["waterbirds"]
    official = {
        "version": 1,
        "classes": 2,
        "splits": dict(wb["splits"]),
        "groups": dict(wb["groups"]),
        "sha256": "ab",
    }
    assert compare_to_official("waterbirds", official) == (True, "official release")
    # an evaluation on the test split alone can still be recognised
    test_only = {
        "classes": 2,
        "splits": {"test": 5794},
        "groups": {"test": [2255, 2255, 642, 642]},
        "sha256": "ab",
    }
    assert compare_to_official("waterbirds", test_only)[0] is True
    swapped = dict(test_only, groups={"test": [2255, 2255, 642, 641]})
    assert compare_to_official("waterbirds", swapped) == (
        False,
        "test group counts [2255, 2255, 642, 641], the official release [2255, 2255, 642, 642]",
    )
    assert (
        compare_to_official("waterbirds", {"classes": 2, "splits": {"train": 4795}, "sha256": "x"})[0]
        is False
    )
    assert compare_to_official("waterbirds", None) == (
        False,
        "the measured records carry no dataset fingerprint",
    )
    assert compare_to_official("spurious-shapes", official)[1].startswith(
        "no official release of spurious-shapes"
    )
    food = {"classes": 101, "splits": {"train": 64438, "val": 11312, "test": 25250}, "sha256": "f"}
    assert compare_to_official("food101", food)[0] is True  # its val split is the user's own draw


def test_records_carry_and_validate_the_fingerprint() -> None:
    prov = {
        "versions": {k: None for k in VERSION_KEYS},
        "git_commit": None,
        "device": "cpu",
        "started_at": None,
        "wall_seconds": 0,
    }
    fp = {"version": 1, "classes": 2, "splits": {"test": 8}, "sha256": "0123456789abcdef"}
    metrics = {"precision_at_k": {"5": 0.4}}
    rec = make_record(
        "neuron_recovery",
        "waterbirds",
        "resnet18",
        {"finder": "random"},
        0,
        metrics,
        {},
        prov,
        dataset_fingerprint=fp,
    )
    assert rec["dataset_fingerprint"] == fp
    with pytest.raises(
        RecordError, match=r"field 'dataset_fingerprint' 'splits.test' must be a non-negative integer"
    ):
        make_record("neuron_recovery", "waterbirds", "resnet18", {"finder": "random"}, 0, metrics, {}, prov,
                    dataset_fingerprint=dict(fp, splits={"test": -1}))  # fmt: skip
