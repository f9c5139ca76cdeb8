"""The bundled benchmarks (spurious-shapes, colored-digits) and their ground-truth API."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from neuroinspect.cli import main
from neuroinspect.datasets import DATASETS, load_dataset
from neuroinspect.datasets.digits import ColoredDigits
from neuroinspect.datasets.groundtruth import (
    attribute_labels,
    caption,
    core_names,
    counterfactual_grid,
    spurious_names,
)
from neuroinspect.datasets.shapes import SpuriousShapes
from neuroinspect.errors import DataError, UserError

# Small but real: every parameter except the sizes is the default.
SMALL = {"n_train": 200, "n_val": 40, "n_test": 40, "image_size": 32}


def _sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def shapes_val():
    return load_dataset("spurious-shapes", None, "val", **SMALL)


@pytest.fixture(scope="module")
def digits_splits():
    return {s: load_dataset("colored-digits", None, s) for s in ("train", "val", "test")}


def test_registered_as_benchmarks():
    for name in ("spurious-shapes", "colored-digits"):
        spec = DATASETS.get(name)
        assert spec.kind == "benchmark" and spec.has_groups
        assert spec.check(None) == []


# -- spurious-shapes --------------------------------------------------------------------------------
def test_shapes_bytes_reproducible_per_seed():
    a = load_dataset("spurious-shapes", None, "train", **SMALL)
    b = load_dataset("spurious-shapes", None, "train", **SMALL)
    c = load_dataset("spurious-shapes", None, "train", **SMALL, seed=1)
    assert a.images.dtype == np.uint8 and a.images.shape == (200, 32, 32, 3)
    assert _sha(a.images) == _sha(b.images)
    assert a.labels.tolist() == b.labels.tolist() and a.groups.tolist() == b.groups.tolist()
    assert _sha(a.images) != _sha(c.images)
    # splits are distinct draws, not copies
    val = load_dataset("spurious-shapes", None, "val", **SMALL)
    assert _sha(val.images[:40]) != _sha(a.images[:40])


def test_shapes_default_split_sizes_alignment_and_balance():
    params = SpuriousShapes.resolve({})
    shape, bg, factors = SpuriousShapes.draw_split("train", params)
    assert len(shape) == 2400 and all(len(v) == 2400 for v in factors.values())
    table = np.zeros((2, 2), dtype=int)
    np.add.at(table, (shape, bg), 1)
    # class_ratio 3: 1800 triangles and 600 squares, 95% of each on its own background
    assert table.tolist() == [[1710, 90], [30, 570]]
    params = SpuriousShapes.resolve({"class_ratio": 1.0})
    shape, bg, _ = SpuriousShapes.draw_split("train", params)
    table = np.zeros((2, 2), dtype=int)
    np.add.at(table, (shape, bg), 1)
    assert table.tolist() == [[1140, 60], [60, 1140]]  # balanced classes: 1140 aligned of 1200 each
    for split, per_group in (("val", 150), ("test", 500)):
        shape, bg, _ = SpuriousShapes.draw_split(split, params)
        counts = np.bincount(shape * 2 + bg, minlength=4)
        assert counts.tolist() == [per_group] * 4


def test_shapes_class_ratio_keeps_alignment_per_class():
    params = SpuriousShapes.resolve({"class_ratio": 2.0})
    shape, bg, _ = SpuriousShapes.draw_split("train", params)
    table = np.zeros((2, 2), dtype=int)
    np.add.at(table, (shape, bg), 1)
    assert table.tolist() == [[1520, 80], [40, 760]]  # 1600 : 800 images, 95% aligned in each class
    shape, bg, _ = SpuriousShapes.draw_split("test", params)
    assert np.bincount(shape * 2 + bg).tolist() == [500] * 4  # val / test stay balanced


def test_shapes_loaded_split_fields(shapes_val):
    ds = shapes_val
    assert len(ds) == 40 and ds.split == "val" and ds.num_classes == 2
    assert ds.group_names == ["triangle/water", "triangle/land", "square/water", "square/land"]
    assert np.bincount(ds.groups, minlength=4).tolist() == [10, 10, 10, 10]
    s = ds.samples[12]
    assert s.path == "spurious-shapes/val/00012"
    assert s.group == s.label * 2 + ["water", "land"].index(s.attrs["background"])
    assert s.attrs["shape"] == ds.classes[s.label]
    item = ds[12]
    assert item["index"] == 12 and item["label"] == s.label and item["group"] == s.group
    assert item["image"].size == (32, 32)  # PIL, no transform


def test_shapes_train_alignment_exact_counts_with_odd_sizes():
    ds = load_dataset(
        "spurious-shapes",
        None,
        "train",
        n_train=121,
        image_size=16,
        shapes="triangle,square,circle",
        backgrounds="water,land,sky",
        class_ratio=1.0,
    )
    # classes of 41, 40, 40 images; round(0.95 n) on the own background, the rest split evenly
    table = np.zeros((3, 3), dtype=int)
    np.add.at(table, (ds.core, ds.spurious), 1)
    assert table.tolist() == [[39, 1, 1], [1, 38, 1], [1, 1, 38]]
    val = load_dataset(
        "spurious-shapes",
        None,
        "val",
        n_val=40,
        image_size=16,
        shapes="triangle,square,circle",
        backgrounds="water,land,sky",
    )
    assert len(val) == 36  # rounded down to a multiple of the 9 groups
    assert np.bincount(val.groups, minlength=9).tolist() == [4] * 9


def test_shapes_background_is_the_learnable_cue():
    # The two backgrounds differ in colour: a nearest-mean classifier on mean RGB separates them.
    ds = load_dataset("spurious-shapes", None, "test", n_test=200, image_size=32)
    rgb = ds.images.reshape(len(ds), -1, 3).mean(axis=1)
    means = np.stack([rgb[ds.spurious == b].mean(axis=0) for b in range(2)])
    pred = np.argmin(((rgb[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.spurious).mean() > 0.95
    # ... while mean colour says next to nothing about the shape (shapes have equal areas)
    means_c = np.stack([rgb[ds.core == c].mean(axis=0) for c in range(2)])
    pred_c = np.argmin(((rgb[:, None, :] - means_c[None]) ** 2).sum(-1), axis=1)
    assert (pred_c == ds.core).mean() < 0.65


def test_shapes_counterfactual_grid(shapes_val):
    ds = shapes_val
    idx = np.array([0, 3, 17, 39])
    grid = counterfactual_grid(ds, idx)
    assert grid.shape == (4, 2, 2, 32, 32, 3) and grid.dtype == np.uint8
    core, spur = attribute_labels(ds)
    for j, i in enumerate(idx):
        assert np.array_equal(grid[j, core[i], spur[i]], ds.images[i])
        # changing a factor changes the image
        assert not np.array_equal(grid[j, 1 - core[i], spur[i]], ds.images[i])
        assert not np.array_equal(grid[j, core[i], 1 - spur[i]], ds.images[i])
    # same sample, same nuisance: swapping the background leaves the object's pixels close,
    # swapping the shape leaves most of the background untouched
    same_bg = np.abs(grid[:, 0, 0].astype(int) - grid[:, 1, 0].astype(int)).mean(axis=-1)
    assert (same_bg < 2).mean() > 0.7
    assert core_names(ds) == ["triangle", "square"] and spurious_names(ds) == ["water", "land"]
    assert caption("triangle", "water") == "a photo of a triangle on water"


def test_grid_rejects_bad_input(shapes_val):
    with pytest.raises(UserError, match="out of range"):
        counterfactual_grid(shapes_val, [40])
    with pytest.raises(UserError, match="no known ground truth"):
        counterfactual_grid(type("D", (), {"name": "flowers102"})(), [0])


# -- colored-digits ---------------------------------------------------------------------------------
# sha256 of scikit-learn's 1,797 digits (0..16 grey levels as uint8) and of their labels (uint8)
DIGITS_SHA = "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3"
TARGET_SHA = "8ba4f891220f5e4c9c819638d1602d74b83618f167043c6da52a2a247841ddf0"


def test_digits_source_is_the_bundled_real_set():
    from neuroinspect.datasets.digits import _source

    images, digits = _source()
    assert images.shape == (1797, 8, 8) and np.bincount(digits).tolist()[:3] == [178, 182, 177]
    assert _sha((images * 16).round().astype(np.uint8)) == DIGITS_SHA
    assert _sha(digits.astype(np.uint8)) == TARGET_SHA


@pytest.mark.slow  # importing sklearn.datasets takes seconds
def test_digits_equal_load_digits():
    from sklearn.datasets import load_digits

    from neuroinspect.datasets.digits import _source

    images, digits = _source()
    ref = load_digits()
    assert np.array_equal(images * 16, ref.images) and np.array_equal(digits, ref.target)


def test_digits_split_is_stratified_disjoint_and_complete(digits_splits):
    parts = ColoredDigits.split_indices(ColoredDigits.resolve({}))
    allidx = np.concatenate([parts[s] for s in ("train", "val", "test")])
    assert len(allidx) == 1797 and len(np.unique(allidx)) == 1797
    for split, ds in digits_splits.items():
        assert sorted(ds.factors["source"].tolist()) == parts[split].tolist()
        digits = np.array([s.attrs["digit"] for s in ds.samples])
        assert (ds.labels == (digits >= 5)).all()
        per_digit = np.bincount(digits, minlength=10)
        assert per_digit.min() > 0.8 * per_digit.max()  # stratified
    assert [len(digits_splits[s]) for s in ("train", "val", "test")] == [1079, 359, 359]


def test_digits_colour_tracks_label_in_train_only(digits_splits):
    train, test = digits_splits["train"], digits_splits["test"]
    agree_train = (train.spurious == train.core).mean()
    agree_test = (test.spurious == test.core).mean()
    assert abs(agree_train - 0.9) < 0.002  # exact per class: round(0.9 n_k) of n_k
    assert abs(agree_test - 0.5) < 0.01
    for k in range(2):
        n_k = int((train.core == k).sum())
        assert int(((train.core == k) & (train.spurious == k)).sum()) == int(np.floor(0.9 * n_k + 0.5))
        counts = np.bincount(test.spurious[test.core == k], minlength=2)
        assert abs(int(counts[0]) - int(counts[1])) <= 1
    # the colour is visible in the pixels: red channel dominates for red, green for green
    rgb = train.images.reshape(len(train), -1, 3).astype(float).sum(axis=1)
    assert ((rgb[:, 0] > rgb[:, 1]) == (train.spurious == 0)).mean() > 0.98
    assert train.group_names == ["0-4/red", "0-4/green", "5-9/red", "5-9/green"]


def test_digits_reproducible_and_grid(digits_splits):
    test = digits_splits["test"]
    again = load_dataset("colored-digits", None, "test")
    other = load_dataset("colored-digits", None, "test", seed=3)
    assert _sha(again.images) == _sha(test.images) and _sha(other.images) != _sha(test.images)
    assert test.images.shape == (359, 32, 32, 3)
    idx = np.arange(0, len(test), 37)
    grid = counterfactual_grid(test, idx)
    assert grid.shape == (len(idx), 2, 2, 32, 32, 3)
    for j, i in enumerate(idx):
        k, c = test.core[i], test.spurious[i]
        assert np.array_equal(grid[j, k, c], test.images[i])
        # re-colouring keeps the same strokes: where one is dark, so is the other
        ink_a = grid[j, k, 0].max(axis=-1) > 80
        ink_b = grid[j, k, 1].max(axis=-1) > 80
        assert (ink_a == ink_b).mean() > 0.95
        # the core axis draws a digit of the other class
        assert not np.array_equal(grid[j, 1 - k, c], test.images[i])
    assert caption("digit from 0 to 4", "red", test) == "a photo of a red handwritten digit from 0 to 4"


# -- fixtures and errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["spurious-shapes", "colored-digits"])
def test_make_fixture_writes_waterbirds_metadata(tmp_path, name):
    spec = DATASETS.get(name)
    root = spec.make_fixture(tmp_path / "fx", seed=0)
    with open(root / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["img_filename", "y", "split", "place"]
    assert {r["split"] for r in rows} == {"0", "1", "2"}
    assert {r["y"] for r in rows} == {"0", "1"} and {r["place"] for r in rows} == {"0", "1"}
    for r in rows[:: max(1, len(rows) // 10)]:
        with Image.open(root / r["img_filename"]) as img:
            assert img.mode == "RGB" and img.size[0] == img.size[1]
    # the PNGs hold exactly the generated pixels
    first = next(r for r in rows if r["split"] == "0")
    idx = int(first["img_filename"].split("_")[1])
    ds = spec.load(None, "train", **{**spec.fixture_sizes, "seed": 0})
    assert np.array_equal(np.asarray(Image.open(root / first["img_filename"])), ds.images[idx])
    assert int(first["y"]) == ds.samples[idx].label and int(first["place"]) == int(ds.spurious[idx])
    with pytest.raises(DataError, match="never overwrites"):
        spec.make_fixture(root, seed=0)
    if "waterbirds" in DATASETS and name == "spurious-shapes":
        # readable by the Waterbirds loader: same layout
        wb = DATASETS.get("waterbirds").load(root, "test")
        assert len(wb) == sum(r["split"] == "2" for r in rows)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("spurious-shapes", {"shapes": "triangle,blob"}, "unknown shape 'blob'"),
        ("spurious-shapes", {"align": 1.5}, "align must be between 0.0 and 1.0"),
        ("spurious-shapes", {"n_test": 3}, "n_test must be at least the number of groups, 4"),
        ("spurious-shapes", {"image_sise": 32}, "has no parameter 'image_sise'"),
        ("spurious-shapes", {"n_train": "many"}, "n_train='many' of spurious-shapes must be int"),
        ("colored-digits", {"colors": "red"}, "colors needs at least 2 names"),
        ("colored-digits", {"task": "parity"}, "task must be one of binary, digits"),
    ],
)
def test_bad_params_are_data_errors(name, params, message):
    spec = DATASETS.get(name)
    assert any(message in p for p in spec.check(None, **params))
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_dataset(name, None, "train", **params)


def test_bad_split_and_cli_exit_status(capsys):
    with pytest.raises(DataError, match="no split 'dev'"):
        load_dataset("spurious-shapes", None, "dev")
    assert main(["data", "check", "spurious-shapes", "--param", "backgrounds=water,lava"]) == 2
    err = capsys.readouterr().err
    assert "unknown background 'lava'" in err and "Traceback" not in err
