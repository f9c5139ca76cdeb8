"""MetaShift, in its two protocols (``protocol=`` parameter).

``protocol="catdog"`` (default): the community Cat-vs-Dog split (DISC's ``MetaDatasetCatDog``, spec §6.1)::

    <root>/MetaDatasetCatDog/train/cat/cat(sofa)/*.jpg   cat(bed)   dog/dog(bench)   dog(bike)
    <root>/MetaDatasetCatDog/test/cat/cat(shelf)/*.jpg   dog/dog(shelf)

Classes cat=0, dog=1. A group is a (class, context) folder, numbered across splits so that one id means
one subset everywhere: 0 cat(sofa), 1 cat(bed), 2 dog(bench), 3 dog(bike) (the reference's train ids),
4 cat(shelf), 5 dog(shelf) (the reference renumbers the test groups 0, 1; we do not). ``groups="all"``
also takes any other ``<animal>(<context>)`` folder (numbered after these, sorted). Files are read in
sorted order (the reference uses ``os.listdir`` order, which is filesystem-dependent). val = 15% of the
test folders, test = the other 85%: ``sklearn.model_selection.train_test_split(test_size=0.85,
random_state=0)`` as the reference, stratified by group by default so that both shelf groups are in
val; ``ref=true`` drops the stratification (the reference's call). ``attrs["context"]`` is the context.

``protocol="cce"``: NeuroInspect's 5-class scenarios (spec §7), built from the MetaShift repository::

    <root>/dataset/meta_data/full-candidate-subsets.pkl    dict "cls(context)" -> set of GQA image ids
    <root>/data/allImages/images/<id>.jpg

Classes bear, bird, cat, dog, elephant; ``scenario="dog(water)"`` names the shift class and its only
training context (the reference's ``"bear-bird-cat-dog-elephant:dog(water)"`` form is accepted too).
Build (seed 42, every candidate list sorted then shuffled with Python ``random``, draws with a NumPy
``RandomState``, classes in label order): a non-shift class draws ``n_train + n_val + n_test``
(100/100/50) images without replacement from the union of its subsets; the shift class draws its
``n_train`` training images from the scenario subset and ``n_val + n_test`` from its other images.

Sane defaults versus the reference (``ref=true`` restores all four):

* ``sample_with_replacement=false``: the shift class's training images are distinct (the reference draws
  them with replacement, spec bug 28, so its 100 contain duplicates).
* ``disjoint=true``: an image drawn for one class is not drawn again for another (GQA images can show a
  cat and a dog, i.e. sit in both classes' subsets).
* ``holdout_shift=true``: split ``"shift"`` — every shift-class image outside the training context, the
  pool the reference evaluates on (spec §7) — leaves out images used for training or validation (the
  reference evaluates on the whole pool, bug 28).
* class subsets are matched by prefix ``"dog("``; the reference tests ``"dog(" in key``, which would also
  match a class such as ``"hotdog("``.

The reference builds the class unions with ``set()``, whose order depends on the hash seed, so its exact
draws are not reproducible; here unions are sorted before drawing.

CCE groups: 0 = the shift class in its training context (train only), 1 = the shift class in every
other context (val, test, shift), 2.. = each other class (one group per class, in label order), so
worst-group accuracy compares the shifted class with the rest. ``attrs`` holds ``contexts`` (every
context subset of its class that holds the image) and ``context`` (the training context for group 0).
"""

from __future__ import annotations

import io
import pickle
import random
import re
from collections.abc import Callable
from functools import lru_cache
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
from neuroinspect.datasets.classnames import METASHIFT_CATDOG, METASHIFT_CCE, scene_prompt
from neuroinspect.errors import DataError
from neuroinspect.fileio import atomic_write_bytes

CATDOG_FOLDER = "MetaDatasetCatDog"
CATDOG_LAYOUT = f"{CATDOG_FOLDER}/ with train/<animal>/<animal>(<context>)/*.jpg and test/..."
CATDOG_REFERENCE = {
    "train": [("cat", "sofa"), ("cat", "bed"), ("dog", "bench"), ("dog", "bike")],
    "test": [("cat", "shelf"), ("dog", "shelf")],
}
CCE_PKL = "dataset/meta_data/full-candidate-subsets.pkl"
CCE_IMAGES = "data/allImages/images"
CCE_LAYOUT = f"the MetaShift repository ({CCE_PKL} and {CCE_IMAGES}/<id>.jpg)"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SUBSET_RE = re.compile(r"^([^()]+)\(([^()]+)\)$")

CATDOG_DEFAULTS: dict[str, Any] = {
    "protocol": "catdog",
    "groups": "reference",
    "val_fraction": 0.15,
    "val_seed": 0,
    "ref": False,
}
CCE_DEFAULTS: dict[str, Any] = {
    "protocol": "cce",
    "scenario": "dog(water)",
    "classes": "-".join(METASHIFT_CCE),
    "seed": 42,
    "n_train": 100,
    "n_val": 100,
    "n_test": 50,
    "ref": False,
    "sample_with_replacement": None,
    "disjoint": None,
    "holdout_shift": None,
}


def _params(params: dict[str, Any]) -> dict[str, Any]:
    protocol = str(params.get("protocol", "catdog"))
    if protocol == "catdog":
        p = parse_params("metashift (protocol=catdog)", params, CATDOG_DEFAULTS)
        if p["groups"] not in ("reference", "all"):
            raise DataError(
                f"metashift: groups={p['groups']!r}; use 'reference' (the six DISC folders) or 'all'."
            )
        if not 0.0 < p["val_fraction"] < 1.0:
            raise DataError(f"metashift: val_fraction={p['val_fraction']} must be in (0, 1).")
        return p
    if protocol == "cce":
        p = parse_params("metashift (protocol=cce)", params, CCE_DEFAULTS)
        for key in ("sample_with_replacement", "disjoint", "holdout_shift"):
            default = p["ref"] if key == "sample_with_replacement" else not p["ref"]
            p[key] = (
                default if p[key] is None else parse_params("metashift", {key: p[key]}, {key: False})[key]
            )
        if min(p["n_train"], p["n_val"], p["n_test"]) < 0:
            raise DataError("metashift: n_train, n_val and n_test must be >= 0.")
        return p
    raise DataError(
        f"metashift: protocol={protocol!r}; use 'catdog' (community Cat-vs-Dog) or 'cce' (NeuroInspect's 5-class scenarios)."
    )


# --------------------------------------------------------------------------------------------------
# Cat-vs-Dog


def _catdog_folders(base: Path) -> tuple[dict[str, list[tuple[str, str, Path]]], list[str]]:
    """split → [(class, context, folder)] in sorted order, and problems (malformed folder names)."""
    found: dict[str, list[tuple[str, str, Path]]] = {"train": [], "test": []}
    problems: list[str] = []
    for split in found:
        split_dir = base / split
        if not split_dir.is_dir():
            problems.append(
                f"missing folder: {split_dir} (expected {split}/<animal>/<animal>(<context>)/*.jpg)."
            )
            continue
        for animal_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            for sub in sorted(d for d in animal_dir.iterdir() if d.is_dir()):
                m = SUBSET_RE.match(sub.name)
                if not m or m.group(1) != animal_dir.name:
                    problems.append(
                        f"malformed folder name: {sub} (expected {animal_dir.name}(<context>), e.g. {animal_dir.name}(sofa))."
                    )
                    continue
                found[split].append((animal_dir.name, m.group(2), sub))
    return found, problems


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _catdog_index(
    base: Path, p: dict[str, Any]
) -> tuple[list[str], list[tuple[str, str]], dict[str, list[tuple[Path, str, str]]]]:
    """(classes, group keys, split → [(image, class, context)]) for train and the whole test folder."""
    found, problems = _catdog_folders(base)
    if problems and p["groups"] == "all":
        raise DataError(problems[0])
    reference = CATDOG_REFERENCE["train"] + CATDOG_REFERENCE["test"]
    wanted: dict[str, list[tuple[str, str]]]
    if p["groups"] == "reference":
        wanted = CATDOG_REFERENCE
        classes = list(METASHIFT_CATDOG)
        for split, keys in CATDOG_REFERENCE.items():
            for c, ctx in keys:
                folder = base / split / c / f"{c}({ctx})"
                if not folder.is_dir():
                    raise DataError(
                        f"missing folder: {folder} (the Cat-vs-Dog split needs {split}/{c}/{c}({ctx})/). "
                        f"Use --param groups=all to take whichever <animal>(<context>) folders exist."
                    )
        group_keys = reference
    else:
        wanted = {s: [(c, ctx) for c, ctx, _ in v] for s, v in found.items()}
        classes = sorted({c for v in wanted.values() for c, _ in v})
        extra = sorted({k for v in wanted.values() for k in v} - set(reference))
        group_keys = [k for k in reference if any(k in v for v in wanted.values())] + extra
    if len(classes) < 2:
        raise DataError(
            f"{base}: found {len(classes)} animal folder(s); a classifier needs at least two (e.g. cat and dog)."
        )
    items: dict[str, list[tuple[Path, str, str]]] = {}
    for split, keys in wanted.items():
        items[split] = []
        for c, ctx in sorted(keys, key=group_keys.index):
            folder = base / split / c / f"{c}({ctx})"
            images = _images_in(folder)
            if not images:
                raise DataError(
                    f"{folder} holds no .jpg/.png images; expected the images of subset {c}({ctx})."
                )
            items[split] += [(f, c, ctx) for f in images]
    return classes, group_keys, items


def _catdog_val_test(groups: np.ndarray, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Indices (val, test) into the test folder's list (see the module doc)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(groups))
    try:
        val, _ = train_test_split(
            idx,
            test_size=round(1.0 - p["val_fraction"], 10),
            random_state=p["val_seed"],
            stratify=None if p["ref"] else groups,
        )
    except ValueError as err:
        raise DataError(
            f"metashift: cannot draw a stratified {p['val_fraction']:.0%} validation split from {len(idx)} test images ({err}). "
            f"Add images to the small test groups, or pass --param ref=true for the reference's unstratified split."
        ) from None
    val = np.sort(val)
    return val, np.setdiff1d(idx, val)


def val_protocol(params: dict[str, Any]) -> str:
    """One line describing the Cat-vs-Dog val/test split that ``params`` select."""
    return (
        f"val/test = train_test_split(test folder, test_size={round(1 - params['val_fraction'], 10)}, "
        f"random_state={params['val_seed']}, stratify={'None' if params['ref'] else 'group'}) on the sorted file list"
    )


# --------------------------------------------------------------------------------------------------
# CCE scenarios


class _SubsetUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, so a tampered .pkl cannot run code."""

    ALLOWED = {
        ("collections", "defaultdict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


@lru_cache(maxsize=4)
def _read_candidates_cached(path: str, mtime_ns: int, size: int) -> dict[str, tuple[str, ...]]:
    try:
        with open(path, "rb") as fh:
            data = _SubsetUnpickler(fh).load()
    except Exception as err:  # noqa: BLE001 - a broken pickle raises many types
        raise DataError(
            f"{path} is not a readable candidate-subsets pickle ({type(err).__name__}: {err}); re-create it with the MetaShift repository."
        ) from None
    if not isinstance(data, dict) or not data:
        raise DataError(
            f'{path} must hold a non-empty dict "cls(context)" -> set of image ids, got {type(data).__name__}.'
        )
    out: dict[str, tuple[str, ...]] = {}
    for key, ims in data.items():
        if not isinstance(key, str) or not SUBSET_RE.match(key):
            raise DataError(f'{path}: key {key!r} is not of the form "cls(context)".')
        if not isinstance(ims, (set, frozenset, list, tuple)) or not all(isinstance(i, str) for i in ims):
            raise DataError(f"{path}: subset {key!r} must be a set of image-id strings.")
        out[key] = tuple(ims)  # insertion order kept: the reference shuffles the subsets in this order
    return out


def read_candidates(path: Path) -> dict[str, tuple[str, ...]]:
    """``full-candidate-subsets.pkl`` as ``{"cls(context)": ids}`` (validated, cached by mtime)."""
    if not path.is_file():
        raise DataError(
            f'missing file: {path} (expected {CCE_PKL} of the MetaShift repository: dict "cls(context)" -> set of image ids).'
        )
    st = path.stat()
    return _read_candidates_cached(str(path), st.st_mtime_ns, st.st_size)


def _parse_scenario(p: dict[str, Any]) -> tuple[list[str], str, str]:
    scenario, classes_text = str(p["scenario"]), str(p["classes"])
    if ":" in scenario:
        classes_text, scenario = scenario.split(":", 1)
    classes = [c for c in classes_text.split("-") if c]
    m = SUBSET_RE.match(scenario)
    if not m:
        raise DataError(f'metashift: scenario={scenario!r}; expected "class(context)", e.g. dog(water).')
    shift, ctx = m.group(1), m.group(2)
    if shift not in classes:
        raise DataError(
            f"metashift: the scenario's class {shift!r} is not one of the classes {', '.join(classes)}."
        )
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise DataError(
            f"metashift: classes={classes_text!r} must name two or more distinct classes joined by '-'."
        )
    return classes, shift, ctx


def _class_keys(subsets: dict[str, Any], cls: str, ref: bool) -> list[str]:
    template = f"{cls}("
    return [k for k in subsets if (template in k if ref else k.startswith(template))]


def build_cce(
    candidates: dict[str, tuple[str, ...]], p: dict[str, Any]
) -> dict[str, list[tuple[str, int, int]]]:
    """split → [(image id, label, group)] for train/val/test/shift, exactly as the module doc describes."""
    classes, shift, ctx = _parse_scenario(p)
    scenario_key = f"{shift}({ctx})"
    if scenario_key not in candidates:
        near = ", ".join(k for k in candidates if k.startswith(f"{shift}("))[:300]
        raise DataError(
            f"metashift: no subset {scenario_key!r} in the candidate subsets (subsets of {shift}: {near or 'none'})."
        )
    py = random.Random(p["seed"])
    rs = np.random.RandomState(p["seed"])
    subsets: dict[str, list[str]] = {}
    for key, ims in candidates.items():
        lst = sorted(ims)
        py.shuffle(lst)
        subsets[key] = lst

    def draw(pool: list[str], n: int, replace: bool, what: str) -> list[str]:
        if n == 0:
            return []
        if not pool or (not replace and len(pool) < n):
            raise DataError(
                f"metashift: {what} has {len(pool)} images, fewer than the {n} to draw. "
                f"Lower --param n_train/n_val/n_test, or choose another scenario."
            )
        return [str(x) for x in rs.choice(np.asarray(pool, dtype=object), n, replace=replace)]

    used: set[str] = set()
    n_groups_before = 2
    out: dict[str, list[tuple[str, int, int]]] = {"train": [], "val": [], "test": [], "shift": []}
    train_val_used: set[str] = set()
    shift_pool: list[str] = []
    for label, c in enumerate(classes):
        keys = _class_keys(subsets, c, p["ref"])
        if not keys:
            raise DataError(
                f'metashift: no subset "{c}(...)" in the candidate subsets; class {c!r} has no images.'
            )
        union = sorted(set().union(*(subsets[k] for k in keys)))
        if c != shift:
            group = n_groups_before + [x for x in classes if x != shift].index(c)
            pool = [i for i in union if i not in used] if p["disjoint"] else union
            need = p["n_train"] + p["n_val"] + p["n_test"]
            chosen = draw(pool, need, False, f"class {c!r}")
            parts = {
                "train": (chosen[: p["n_train"]], group),
                "val": (chosen[p["n_train"] : p["n_train"] + p["n_val"]], group),
                "test": (chosen[p["n_train"] + p["n_val"] :], group),
            }
        else:
            domain = subsets[scenario_key]
            dom_pool = [i for i in domain if i not in used] if p["disjoint"] else domain
            train = draw(dom_pool, p["n_train"], p["sample_with_replacement"], f"subset {scenario_key!r}")
            other = sorted(set(union) - set(domain))  # np.setdiff1d: sorted, unique
            shift_pool = other
            other_pool = [i for i in other if i not in used] if p["disjoint"] else other
            held = draw(other_pool, p["n_val"] + p["n_test"], False, f"class {c!r} outside {scenario_key!r}")
            parts = {"train": (train, 0), "val": (held[: p["n_val"]], 1), "test": (held[p["n_val"] :], 1)}
        for split, (ids, group) in parts.items():
            out[split] += [(i, label, group) for i in ids]
            used.update(ids)
            if split != "test":
                train_val_used.update(ids)
    label = classes.index(shift)
    out["shift"] = [(i, label, 1) for i in shift_pool if not (p["holdout_shift"] and i in train_val_used)]
    return out


# --------------------------------------------------------------------------------------------------


@DATASETS.register("metashift")
class MetaShift(DatasetSpec):
    """MetaShift: Cat-vs-Dog contexts (protocol=catdog) or NeuroInspect's 5-class scenarios (protocol=cce)."""

    name = "metashift"
    kind = "real"
    splits = ("train", "val", "test", "shift")
    domain = "spurious"
    has_groups = True

    @classmethod
    def locate(cls, root: str | Path | None, protocol: str = "catdog") -> Path:
        """The ``MetaDatasetCatDog`` folder (catdog) or the MetaShift repository folder (cce)."""
        if protocol == "cce":
            return locate(
                cls.name, root, ["", "MetaShift", "metashift", "exp_spurious/MetaShift"], CCE_PKL, CCE_LAYOUT
            )
        return locate(
            cls.name, root, [CATDOG_FOLDER, f"metashifts/{CATDOG_FOLDER}", ""], "test/", CATDOG_LAYOUT
        )

    @classmethod
    def available_splits(cls, **params: Any) -> tuple[str, ...]:
        """The splits of the chosen protocol: ``"shift"`` exists only for ``protocol=cce``."""
        return cls.splits if str(params.get("protocol", "catdog")) == "cce" else ("train", "val", "test")

    @classmethod
    def load(
        cls,
        root: str | Path | None,
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
        **params: Any,
    ) -> ImageDataset:
        cls.check_split(split)
        p = _params(params)
        if p["protocol"] == "catdog":
            return cls._load_catdog(root, split, transform, p)
        return cls._load_cce(root, split, transform, p)

    @classmethod
    def _load_catdog(cls, root: Any, split: str, transform: Any, p: dict[str, Any]) -> ImageDataset:
        if split == "shift":
            raise DataError(
                "metashift: split 'shift' exists only with --param protocol=cce; Cat-vs-Dog has train, val and test."
            )
        base = cls.locate(root, "catdog")
        classes, group_keys, items = _catdog_index(base, p)
        if split == "train":
            chosen = items["train"]
        else:
            groups = np.array([group_keys.index((c, ctx)) for _, c, ctx in items["test"]])
            val, test = _catdog_val_test(groups, p)
            chosen = [items["test"][i] for i in (val if split == "val" else test)]
        samples = [
            Sample(
                str(f),
                classes.index(c),
                group_keys.index((c, ctx)),
                {"context": ctx, "subset": f"{c}({ctx})"},
            )
            for f, c, ctx in chosen
        ]
        return ImageDataset(
            cls.name, split, samples, classes, [scene_prompt(c) for c in classes],
            [f"{c}({ctx})" for c, ctx in group_keys], transform, params=p,
        )  # fmt: skip

    @classmethod
    def _load_cce(cls, root: Any, split: str, transform: Any, p: dict[str, Any]) -> ImageDataset:
        base = cls.locate(root, "cce")
        candidates = read_candidates(base / CCE_PKL)
        classes, shift, ctx = _parse_scenario(p)
        built = build_cce(candidates, p)
        membership: dict[tuple[str, str], list[str]] = {}
        for c in classes:
            for key in _class_keys(candidates, c, p["ref"]):
                for i in candidates[key]:
                    membership.setdefault((c, i), []).append(SUBSET_RE.match(key).group(2))  # type: ignore[union-attr]
        images = base / CCE_IMAGES
        samples = [
            Sample(
                str(images / f"{i}.jpg"),
                label,
                group,
                {
                    "image_id": i,
                    "contexts": sorted(membership.get((classes[label], i), [])),
                    "context": ctx if group == 0 else None,
                },
            )
            for i, label, group in built[split]
        ]
        group_names = [f"{shift}({ctx})", f"{shift}(other contexts)"] + [c for c in classes if c != shift]
        params = {**p, "scenario": f"{shift}({ctx})", "classes": "-".join(classes)}
        return ImageDataset(
            cls.name,
            split,
            samples,
            classes,
            [scene_prompt(c) for c in classes],
            group_names,
            transform,
            params=params,
        )

    @classmethod
    def check(cls, root: str | Path | None, **params: Any) -> list[str]:
        try:
            p = _params(params)
            base = cls.locate(root, p["protocol"])
        except DataError as err:
            return [str(err)]
        if p["protocol"] == "catdog":
            found, problems = _catdog_folders(base)
            if p["groups"] == "reference":
                for split, keys in CATDOG_REFERENCE.items():
                    for c, ctx in keys:
                        folder = base / split / c / f"{c}({ctx})"
                        if not folder.is_dir():
                            problems.append(
                                f"missing folder: {folder} (the Cat-vs-Dog split needs {split}/{c}/{c}({ctx})/ with its images)."
                            )
                        elif not _images_in(folder):
                            problems.append(
                                f"{folder} holds no .jpg/.png images; expected the images of subset {c}({ctx})."
                            )
            if problems:
                return problems
            try:
                for split in ("train", "val", "test"):
                    cls._load_catdog(base, split, None, p)
            except DataError as err:
                return [str(err)]
            return []
        try:
            candidates = read_candidates(base / CCE_PKL)
            classes, _, _ = _parse_scenario(p)
            build_cce(candidates, p)
        except DataError as err:
            return [str(err)]
        ids = sorted(
            {i for c in classes for k in _class_keys(candidates, c, p["ref"]) for i in candidates[k]}
        )
        images = base / CCE_IMAGES
        if not images.is_dir():
            return [
                f"missing folder: {images} (expected the GQA images, {CCE_IMAGES}/<id>.jpg: unzip images.zip -d data/allImages)."
            ]
        return missing_files((images / f"{i}.jpg" for i in ids), total=len(ids))

    @classmethod
    def make_fixture(cls, root: str | Path, seed: int = 0, **params: Any) -> Path:
        """Tiny trees for both protocols under ``root`` (``protocol=catdog|cce|all``): ``MetaDatasetCatDog/``
        and ``dataset/meta_data/full-candidate-subsets.pkl`` + ``data/allImages/images/``. The CCE tree
        has four contexts per class with ``per_context`` images each (some images sit in two contexts of
        a class, some in both cat(sofa) and dog(sofa)); the default of 100 satisfies the default sizes."""
        p = parse_params(
            f"{cls.name} fixture",
            params,
            {
                "protocol": "all",
                "per_context": 100,
                "train_per_group": 4,
                "test_per_group": 10,
                "image_size": 8,
            },
        )
        if p["protocol"] not in ("all", "catdog", "cce"):
            raise DataError(f"metashift fixture: protocol={p['protocol']!r}; use all, catdog or cce.")
        rng = np.random.default_rng(seed)
        root = Path(root)
        if p["protocol"] in ("all", "catdog"):
            base = fresh_dir(root / CATDOG_FOLDER, cls.name)
            keys = [("train", k) for k in CATDOG_REFERENCE["train"]] + [
                ("test", k) for k in CATDOG_REFERENCE["test"]
            ]
            image_id = 2_300_000
            for g, (split, (c, ctx)) in enumerate(keys):
                n = p["train_per_group"] if split == "train" else p["test_per_group"]
                for _ in range(n):
                    image_id += int(rng.integers(1, 50))
                    write_jpeg(
                        base / split / c / f"{c}({ctx})" / f"{image_id}.jpg",
                        rng,
                        class_color(g, len(keys)),
                        p["image_size"],
                    )
        if p["protocol"] in ("all", "cce"):
            if (root / "dataset").exists() or (root / "data").exists():
                raise DataError(
                    f"{root} already holds dataset/ or data/; a fixture never overwrites files. Choose an empty --root."
                )
            contexts = {
                "bear": ["water", "grass", "snow", "tree"],
                "bird": ["sand", "water", "sky", "tree"],
                "cat": ["book", "keyboard", "sofa", "bed"],
                "dog": ["chair", "water", "grass", "sofa"],
                "elephant": ["grass", "water", "tree", "road"],
            }
            subsets: dict[str, set[str]] = {}
            next_id = 1_000_000
            images = root / CCE_IMAGES
            for k, (c, ctxs) in enumerate(contexts.items()):
                for j, ctx in enumerate(ctxs):
                    ids = [str(next_id + n) for n in range(p["per_context"])]
                    next_id += p["per_context"]
                    subsets[f"{c}({ctx})"] = set(ids)
                    for i in ids:
                        write_jpeg(images / f"{i}.jpg", rng, class_color(4 * k + j, 20), p["image_size"])
                # a quarter of each context's images also show the next context
                for j, ctx in enumerate(ctxs):
                    src = sorted(subsets[f"{c}({ctx})"])
                    subsets[f"{c}({ctxs[(j + 1) % len(ctxs)]})"].update(src[: p["per_context"] // 4])
            shared = sorted(subsets["cat(sofa)"])[: max(1, p["per_context"] // 10)]
            subsets["dog(sofa)"].update(shared)  # images with a cat and a dog
            buf = io.BytesIO()
            pickle.dump(subsets, buf, protocol=4)
            atomic_write_bytes(root / CCE_PKL, buf.getvalue())
        return root
