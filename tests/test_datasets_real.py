"""Real-dataset loaders on fixture trees in their official on-disk layouts (spec §6.1, §7)."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat
from sklearn.model_selection import train_test_split

from neuroinspect.datasets import get_dataset, load_dataset
from neuroinspect.datasets.classnames import (
    FLOWERS102,
    FOOD101,
    METASHIFT_CCE,
    WATERBIRDS_GROUPS,
    prompts_for,
)
from neuroinspect.datasets.food import val_protocol
from neuroinspect.errors import DataError

REAL = ["flowers102", "food101", "waterbirds", "metashift"]
WB = "waterbird_complete95_forest2water2"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def flowers_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return get_dataset("flowers102").make_fixture(tmp_path_factory.mktemp("flowers"), seed=1)


@pytest.fixture(scope="module")
def food_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return get_dataset("food101").make_fixture(tmp_path_factory.mktemp("food"), seed=2)


@pytest.fixture(scope="module")
def wb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return get_dataset("waterbirds").make_fixture(tmp_path_factory.mktemp("wb") / "cub", seed=3, nested=True)


@pytest.fixture(scope="module")
def ms_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return get_dataset("metashift").make_fixture(tmp_path_factory.mktemp("ms"), seed=4, per_context=12)


CCE_SMALL = {"protocol": "cce", "n_train": 10, "n_val": 4, "n_test": 2}


def small_food(tmp_path: Path, **kw: int) -> Path:
    return get_dataset("food101").make_fixture(tmp_path, seed=5, num_classes=3, **kw)


def paths(ds) -> list[str]:  # noqa: ANN001
    return [s.path for s in ds.samples]


# ---------------------------------------------------------------------------------------------- class names
def test_class_strings_match_the_reference_dictionaries() -> None:
    assert len(FLOWERS102) == 102 and len(set(FLOWERS102)) == 102
    assert (
        FLOWERS102[3] == "sweet pea" and FLOWERS102[93] == "foxglove" and FLOWERS102[101] == "blackberry lily"
    )
    assert len(FOOD101) == 101 and list(FOOD101) == sorted(set(FOOD101))
    assert FOOD101[0] == "apple_pie" and FOOD101[93] == "steak" and FOOD101[100] == "waffles"
    assert FOOD101.index("cheese_plate") + 1 == FOOD101.index("cheesecake")  # Python's sort, not the shell's
    assert prompts_for("food")[93] == "food, steak"
    assert prompts_for("food")[54] == "food, hot and sour soup"
    assert prompts_for("flowers")[3] == "flower, sweet pea"
    assert prompts_for("waterbird") == ["landbird", "waterbird, aquatic bird"]
    assert prompts_for("spurious")[4] == "scene with an elephant or elephants"
    assert prompts_for("spurious")[0] == "scene with a bear or bears"
    assert WATERBIRDS_GROUPS == ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water")


# ---------------------------------------------------------------------------------------------- flowers
def test_flowers_splits_labels_and_paths(flowers_root: Path) -> None:
    base = flowers_root / "flowers-102"
    mat_labels = loadmat(base / "imagelabels.mat")["labels"].ravel()
    sizes = {}
    for split, key in [("train", "trnid"), ("val", "valid"), ("test", "tstid")]:
        ds = load_dataset("flowers102", flowers_root, split)
        sizes[split] = len(ds)
        ids = loadmat(base / "setid.mat")[key].ravel()
        assert [s.attrs["image_id"] for s in ds.samples] == ids.tolist()
        for s in ds.samples:  # label = mat label - 1, read by image id (not by position)
            image_id = s.attrs["image_id"]
            assert s.path.endswith(f"jpg/image_{image_id:05d}.jpg") and os.path.isfile(s.path)
            assert s.label == mat_labels[image_id - 1] - 1
            assert s.group is None
        assert ds.num_classes == 102 and ds.prompts[3] == "flower, sweet pea"
        assert ds.groups is None
    assert sizes == {"train": 102, "val": 102, "test": 204}
    assert Counter(load_dataset("flowers102", flowers_root, "test").labels.tolist()) == {
        c: 2 for c in range(102)
    }


def test_flowers_root_may_be_parent_or_dataset_folder(flowers_root: Path) -> None:
    a = load_dataset("flowers102", flowers_root, "val")
    b = load_dataset("flowers102", flowers_root / "flowers-102", "val")
    assert a.samples == b.samples and a.fingerprint() == b.fingerprint()


def test_flowers_split_with_a_single_id(tmp_path: Path) -> None:
    root = get_dataset("flowers102").make_fixture(tmp_path, num_classes=3)
    base = root / "flowers-102"
    ids = loadmat(base / "setid.mat")
    labels = loadmat(base / "imagelabels.mat")["labels"].ravel()
    only = int(ids["valid"].ravel()[0])
    buf = io.BytesIO()
    savemat(buf, {"trnid": ids["trnid"], "valid": np.array([[only]]), "tstid": ids["tstid"]})
    (base / "setid.mat").write_bytes(buf.getvalue())
    val = load_dataset("flowers102", root, "val")
    assert len(val) == 1 and val.samples[0].label == labels[only - 1] - 1
    assert val.samples[0].path.endswith(f"image_{only:05d}.jpg")
    assert len(load_dataset("flowers102", root, "train")) == 3


def test_flowers_check_names_the_missing_or_malformed_file(tmp_path: Path) -> None:
    spec = get_dataset("flowers102")
    root = spec.make_fixture(tmp_path, num_classes=2)
    base = root / "flowers-102"
    assert spec.check(root) == []
    victim = sorted((base / "jpg").iterdir())[2]
    victim.unlink()
    assert spec.check(root) == [f"missing image file: {victim.resolve()}"]
    buf = io.BytesIO()
    savemat(buf, {"trnid": np.array([[1, 2]]), "tstid": np.array([[3, 4]])})
    (base / "setid.mat").write_bytes(buf.getvalue())
    problems = spec.check(root)
    assert len(problems) == 1 and "setid.mat" in problems[0] and "'valid'" in problems[0]
    (base / "imagelabels.mat").write_bytes(b"not a mat file")
    assert any("imagelabels.mat" in p and "not a readable MATLAB file" in p for p in spec.check(root))
    with pytest.raises(DataError, match="imagelabels.mat"):
        load_dataset("flowers102", root, "train")


# ---------------------------------------------------------------------------------------------- food
def test_food_splits_classes_and_prompts(food_root: Path) -> None:
    train = load_dataset("food101", food_root, "train")
    val = load_dataset("food101", food_root, "val")
    test = load_dataset("food101", food_root, "test")
    assert (len(train), len(val), len(test)) == (101 * 6, 101 * 1, 101 * 2)  # int(0.15 * 7) = 1 per class
    assert train.classes == list(FOOD101) and train.classes[93] == "steak"
    assert train.prompts[93] == "food, steak" and train.prompts[0] == "food, apple pie"
    meta = json.loads((food_root / "food-101" / "meta" / "train.json").read_text())
    for ds in (train, val):
        for s in ds.samples:
            cls = FOOD101[s.label]
            assert s.attrs["id"] in meta[cls] and s.path.endswith(f"images/{s.attrs['id']}.jpg")
            assert os.path.isfile(s.path)
    assert set(paths(train)).isdisjoint(paths(val))
    assert sorted(s.attrs["id"] for s in train.samples + val.samples) == sorted(
        e for v in meta.values() for e in v
    )
    assert val.params == {"val_source": "split", "val_fraction": 0.15, "val_seed": 77, "val_rounds": 1}
    assert "no file written" in val_protocol(val.params)


def test_food_val_split_is_deterministic_and_never_writes(food_root: Path) -> None:
    meta = food_root / "food-101" / "meta"
    before = {p.name: p.read_bytes() for p in meta.iterdir()}
    a = load_dataset("food101", food_root, "val")
    b = load_dataset("food101", food_root, "val")
    other = load_dataset("food101", food_root, "val", val_seed=1)
    assert a.samples == b.samples and a.fingerprint() == b.fingerprint()
    assert a.samples != other.samples and a.fingerprint() != other.fingerprint()
    load_dataset("food101", food_root, "train")
    assert {p.name: p.read_bytes() for p in meta.iterdir()} == before  # train.json untouched, no valid.json


def test_food_val_fraction_rounds_and_author_file(tmp_path: Path) -> None:
    root = small_food(tmp_path, train_per_class=20, test_per_class=2)
    one = {s: len(load_dataset("food101", root, s)) for s in ("train", "val")}
    assert one == {"train": 3 * 17, "val": 3 * 3}  # int(0.15 * 20) = 3
    # the author's split was drawn twice: 20 -> 17 -> 15 train + int(0.15 * 17) = 2 val; 3 per class dropped
    two = {s: load_dataset("food101", root, s, val_rounds=2) for s in ("train", "val")}
    assert (len(two["train"]), len(two["val"])) == (3 * 15, 3 * 2)
    assert set(paths(two["train"])) < set(paths(load_dataset("food101", root, "train")))
    with pytest.raises(DataError, match="raise --param val_fraction"):
        load_dataset("food101", root, "val", val_fraction=0.01)
    # val_source=file: the author's valid.json; train = train.json minus those ids
    meta = root / "food-101" / "meta"
    with pytest.raises(DataError, match="val_source=split"):
        load_dataset("food101", root, "val", val_source="file")
    train_meta = json.loads((meta / "train.json").read_text())
    valid = {c: v[:4] for c, v in train_meta.items()}
    (meta / "valid.json").write_text(json.dumps(valid))
    v = load_dataset("food101", root, "val", val_source="file")
    t = load_dataset("food101", root, "train", val_source="file")
    assert sorted(s.attrs["id"] for s in v.samples) == sorted(e for x in valid.values() for e in x)
    assert len(t) == 3 * 16 and set(paths(t)).isdisjoint(paths(v))


def test_food_check_names_malformed_json_and_missing_image(tmp_path: Path) -> None:
    spec = get_dataset("food101")
    root = small_food(tmp_path)
    assert spec.check(root) == []
    meta = root / "food-101" / "meta"
    data = json.loads((meta / "test.json").read_text())
    victim = root / "food-101" / "images" / f"{data['baklava'][0]}.jpg"
    victim.unlink()
    assert spec.check(root / "food-101") == [f"missing image file: {victim.resolve()}"]
    data["baklava"][1] = "apple_pie/123.jpg"
    (meta / "test.json").write_text(json.dumps(data))
    (problem,) = spec.check(root)
    assert str(meta / "test.json") in problem and "'apple_pie/123.jpg'" in problem and "baklava" in problem
    (meta / "train.json").write_text("{not json")
    problems = spec.check(root)
    assert any(str(meta / "train.json") in p and "not valid JSON" in p for p in problems)
    with pytest.raises(DataError, match="train.json"):
        load_dataset("food101", root, "train")


# ---------------------------------------------------------------------------------------------- waterbirds
def test_waterbirds_groups_places_and_nested_roots(wb_root: Path) -> None:
    inner = wb_root / WB / WB
    sizes = {}
    for split in ("train", "val", "test"):
        ds = load_dataset("waterbirds", wb_root, split)
        sizes[split] = len(ds)
        assert ds.classes == ["landbird", "waterbird"] and ds.prompts == [
            "landbird",
            "waterbird, aquatic bird",
        ]
        assert ds.group_names == list(WATERBIRDS_GROUPS)
        for s in ds.samples:
            assert s.group == 2 * s.label + s.attrs["place"] and os.path.isfile(s.path)
            assert Path(s.path).parent.parent == inner.resolve()
        # each of the reference's root spellings gives the same split
        for root in (wb_root / WB, inner, wb_root.parent):
            assert load_dataset("waterbirds", root, split).samples == ds.samples
    assert sizes == {"train": 12, "val": 8, "test": 8}
    train = load_dataset("waterbirds", wb_root, "train")
    assert Counter(train.groups.tolist()) == {0: 5, 1: 1, 2: 1, 3: 5}
    assert Counter(load_dataset("waterbirds", wb_root, "test").groups.tolist()) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_waterbirds_builds_splits_without_opening_images(tmp_path: Path) -> None:
    root = get_dataset("waterbirds").make_fixture(tmp_path)
    base = root / WB
    for f in base.rglob("*.jpg"):
        f.unlink()
    assert len(load_dataset("waterbirds", root, "train")) == 12  # groups come from metadata.csv only
    problems = get_dataset("waterbirds").check(root)
    assert len(problems) == 11 and problems[-1].startswith("... and 18 more missing image files (28 in all)")
    assert problems[0].startswith(f"missing image file: {base.resolve()}/")


def test_waterbirds_check_names_malformed_csv(tmp_path: Path) -> None:
    spec = get_dataset("waterbirds")
    root = spec.make_fixture(tmp_path)
    csv_path = root / WB / "metadata.csv"
    lines = csv_path.read_text().splitlines()
    bad = lines.copy()
    bad[3] = bad[3].split(",")[0] + "," + bad[3].split(",")[1] + ",2,0,0,x.jpg"  # y=2
    csv_path.write_text("\n".join(bad) + "\n")
    assert spec.check(root) == [f"{csv_path.resolve()}, line 4: y='2'; expected one of 0, 1."]
    with pytest.raises(DataError, match="line 4: y='2'"):
        load_dataset("waterbirds", root, "train")
    no_val = [line for line in lines if line.split(",")[3] != "1"]
    csv_path.write_text("\n".join(no_val) + "\n")
    assert spec.check(root) == [
        f"{csv_path.resolve()}: no rows with split=1 (val); expected train, val and test rows."
    ]
    with pytest.raises(DataError, match="no rows with split=1"):
        load_dataset("waterbirds", root, "val")
    header = lines[0].replace(",place,", ",background,")
    csv_path.write_text("\n".join([header, *lines[1:]]) + "\n")
    (problem,) = spec.check(root)
    assert "missing column 'place'" in problem and str(csv_path.resolve()) in problem


# ---------------------------------------------------------------------------------------------- metashift
def test_metashift_catdog_groups_and_val_split(ms_root: Path) -> None:
    train = load_dataset("metashift", ms_root, "train")
    val = load_dataset("metashift", ms_root, "val")
    test = load_dataset("metashift", ms_root, "test")
    assert train.classes == ["cat", "dog"] and train.prompts == [
        "scene with a cat or cats",
        "scene with a dog or dogs",
    ]
    assert train.group_names == [
        "cat(sofa)",
        "cat(bed)",
        "dog(bench)",
        "dog(bike)",
        "cat(shelf)",
        "dog(shelf)",
    ]
    assert Counter(train.groups.tolist()) == {0: 4, 1: 4, 2: 4, 3: 4}
    assert (len(val), len(test)) == (3, 17)  # 15% / 85% of 20 test-folder images
    for ds in (train, val, test):
        for s in ds.samples:
            folder = Path(s.path).parent.name
            assert folder == ds.group_names[s.group] == f"{ds.classes[s.label]}({s.attrs['context']})"
            assert os.path.isfile(s.path)
    assert set(val.groups.tolist()) == {4, 5}  # stratified: both shelf groups reach val
    assert set(paths(val)).isdisjoint(paths(test))
    # the split is sklearn's train_test_split(test_size=0.85, random_state=0) on the sorted test list
    whole = sorted(paths(val) + paths(test), key=lambda p: (Path(p).parent.name != "cat(shelf)", p))
    groups = [4 if "cat(shelf)" in p else 5 for p in whole]
    want_val, _ = train_test_split(np.arange(20), test_size=0.85, random_state=0, stratify=groups)
    assert paths(val) == [whole[i] for i in sorted(want_val)]
    ref_val, _ = train_test_split(np.arange(20), test_size=0.85, random_state=0)
    assert paths(load_dataset("metashift", ms_root, "val", ref=True)) == [whole[i] for i in sorted(ref_val)]
    with pytest.raises(DataError, match="protocol=cce"):
        load_dataset("metashift", ms_root, "shift")


def test_metashift_catdog_check_names_missing_folder(tmp_path: Path) -> None:
    spec = get_dataset("metashift")
    root = spec.make_fixture(tmp_path, protocol="catdog")
    assert spec.check(root) == []
    folder = root / "MetaDatasetCatDog" / "train" / "dog" / "dog(bike)"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    (root / "MetaDatasetCatDog" / "test" / "cat" / "shelf").mkdir()
    problems = spec.check(root)
    assert any(str(folder.resolve()) in p and "missing folder" in p for p in problems)
    assert any(
        "malformed folder name" in p and p.endswith("(expected cat(<context>), e.g. cat(sofa)).")
        for p in problems
    )
    with pytest.raises(DataError, match=r"dog\(bike\)"):
        load_dataset("metashift", root, "train")


def test_metashift_cce_scenario_splits(ms_root: Path) -> None:
    sets = {s: load_dataset("metashift", ms_root, s, **CCE_SMALL) for s in ("train", "val", "test", "shift")}
    train, val, test, shift = sets["train"], sets["val"], sets["test"], sets["shift"]
    assert train.classes == list(METASHIFT_CCE) and train.prompts[3] == "scene with a dog or dogs"
    assert train.group_names == ["dog(water)", "dog(other contexts)", "bear", "bird", "cat", "elephant"]
    assert (len(train), len(val), len(test)) == (50, 20, 10)
    assert Counter(train.labels.tolist()) == {c: 10 for c in range(5)}
    assert Counter(test.labels.tolist()) == {c: 2 for c in range(5)}
    for s in train.samples:
        expected_group = 0 if s.label == 3 else {0: 2, 1: 3, 2: 4, 4: 5}[s.label]
        assert s.group == expected_group and os.path.isfile(s.path)
        if s.label == 3:
            assert "water" in s.attrs["contexts"] and s.attrs["context"] == "water"
    for ds in (val, test, shift):
        for s in ds.samples:
            if s.label == 3:
                assert s.group == 1 and "water" not in s.attrs["contexts"]
    assert set(shift.labels.tolist()) == {3} and set(shift.groups.tolist()) == {1}
    # sane defaults: no duplicates, no image in two splits, the shift pool is held out from train/val
    all_paths = paths(train) + paths(val) + paths(test)
    assert len(set(all_paths)) == len(all_paths)
    assert set(paths(shift)).isdisjoint(paths(train) + paths(val))
    assert train.params["sample_with_replacement"] is False and train.params["disjoint"] is True
    # deterministic, and the reference's long scenario form is the same scenario
    again = load_dataset(
        "metashift", ms_root, "train", **{**CCE_SMALL, "scenario": "bear-bird-cat-dog-elephant:dog(water)"}
    )
    assert again.samples == train.samples
    other = load_dataset("metashift", ms_root, "train", **CCE_SMALL, seed=0)
    assert other.samples != train.samples


def test_metashift_cce_ref_reproduces_reference_draws(ms_root: Path) -> None:
    ref = {s: load_dataset("metashift", ms_root, s, **CCE_SMALL, ref=True) for s in ("train", "val", "shift")}
    dog_train = [s.path for s in ref["train"].samples if s.label == 3]
    assert len(dog_train) == 10 and len(set(dog_train)) < 10  # drawn with replacement (spec bug 28)
    sane = load_dataset("metashift", ms_root, "train", **CCE_SMALL)
    assert len({s.path for s in sane.samples if s.label == 3}) == 10
    # the reference evaluates on the whole out-of-context pool, including the val images
    dog_val = {s.path for s in ref["val"].samples if s.label == 3}
    assert dog_val <= set(paths(ref["shift"]))
    assert len(ref["shift"]) > len(load_dataset("metashift", ms_root, "shift", **CCE_SMALL))
    # non-shift classes use the same draws with or without ref when nothing overlaps (bear comes first)
    bear = [s.path for s in sane.samples if s.label == 0]
    assert bear == [s.path for s in ref["train"].samples if s.label == 0]


def test_metashift_cce_errors(ms_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no subset 'dog\(moon\)'"):
        load_dataset("metashift", ms_root, "train", **CCE_SMALL, scenario="dog(moon)")
    with pytest.raises(DataError, match="class 'bear' has 48 images, fewer than the 250"):
        load_dataset("metashift", ms_root, "train", protocol="cce")
    with pytest.raises(DataError, match="no parameter 'scenery'"):
        load_dataset("metashift", ms_root, "train", protocol="cce", scenery="dog(water)")
    # a pickle that would run code is refused, not executed
    evil = tmp_path / "dataset" / "meta_data" / "full-candidate-subsets.pkl"
    evil.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.mkdir, (str(marker),))

    evil.write_bytes(pickle.dumps({"dog(water)": {"1"}, "x": Evil()}))
    with pytest.raises(DataError, match="not a readable candidate-subsets pickle.*mkdir"):
        load_dataset("metashift", tmp_path, "train", **CCE_SMALL)
    assert not marker.exists()
    (problem,) = get_dataset("metashift").check(tmp_path, **CCE_SMALL)
    assert str(evil.resolve()) in problem


def test_metashift_cce_check_names_missing_image(ms_root: Path, tmp_path: Path) -> None:
    spec = get_dataset("metashift")
    root = spec.make_fixture(tmp_path, protocol="cce", per_context=12)
    assert spec.check(root, **CCE_SMALL) == []
    victim = root / "data" / "allImages" / "images" / "1000005.jpg"
    victim.unlink()
    assert spec.check(root, **CCE_SMALL) == [f"missing image file: {victim.resolve()}"]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("flowers102", {}),
        ("food101", {"val_seed": 3}),
        ("waterbirds", {}),
        ("metashift", {"ref": True}),
        ("metashift", {**CCE_SMALL, "scenario": "cat(book)"}),
    ],
)
def test_recorded_params_reload_the_same_split(
    name: str, params: dict, flowers_root: Path, food_root: Path, wb_root: Path, ms_root: Path
) -> None:
    """A checkpoint stores ``ds.params`` and evaluation reloads with them: they must round-trip."""
    root = {"flowers102": flowers_root, "food101": food_root, "waterbirds": wb_root, "metashift": ms_root}[
        name
    ]
    ds = load_dataset(name, root, "val", **params)
    again = load_dataset(name, root, "val", **ds.params)
    assert again.samples == ds.samples and again.fingerprint() == ds.fingerprint()
    assert json.loads(json.dumps(ds.params)) == ds.params  # JSON-safe for checkpoints and records


@pytest.mark.parametrize("name", REAL)
def test_missing_or_empty_root_is_a_data_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="make-fixture"):
        load_dataset(name, tmp_path / "absent", "train")
    with pytest.raises(DataError, match="looked for") as err:
        load_dataset(name, tmp_path, "train")
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DataError, match="--root"):
        load_dataset(name, None, "train")
    assert get_dataset(name).check(tmp_path)[0].startswith(f"{name}: no ")


def test_fixture_refuses_to_overwrite(flowers_root: Path) -> None:
    before = (flowers_root / "flowers-102" / "setid.mat").read_bytes()
    with pytest.raises(DataError, match="never overwrites"):
        get_dataset("flowers102").make_fixture(flowers_root)
    assert (flowers_root / "flowers-102" / "setid.mat").read_bytes() == before


def test_corrupt_jpeg_raises_data_error_with_path_through_dataloader(tmp_path: Path) -> None:
    root = get_dataset("waterbirds").make_fixture(tmp_path)

    def tf(img):  # noqa: ANN001, ANN202 - PIL image -> (3, 8, 8) float tensor
        return torch.from_numpy(np.asarray(img.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1) / 255.0

    ds = load_dataset("waterbirds", root, "val", tf)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["group"].tolist() == ds.groups[:4].tolist()
    broken = ds.samples[5].path
    Path(broken).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError) as err:
        for _ in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0):
            pass
    assert broken in str(err.value) and "corrupt" in str(err.value)
