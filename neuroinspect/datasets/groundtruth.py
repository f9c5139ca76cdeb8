"""Ground truth of the bundled benchmarks: which factor is the core object, which is spurious.

The bundled benchmarks (``spurious-shapes``, ``colored-digits``) are generated, so every sample
is a known combination of a *core* factor (the class: a shape, a digit group) and a *spurious*
factor (a background, a colour) plus nuisance factors (position, scale, rotation, colour jitter,
noise). That makes two things measurable that real datasets cannot give:

- :func:`counterfactual_grid` renders the SAME sample (same nuisance draw, same noise) with every
  core value × every spurious value, so a neuron's response to the spurious attribute can be
  separated from its response to the object (neuron ground truth for scoring finders);
- :func:`attribute_labels`, :func:`core_names`, :func:`spurious_names` and :func:`caption` name
  those factors, e.g. for CLIP captions (``"a photo of a triangle on water"``).

Every function dispatches on ``dataset.name`` through the dataset registry, so any benchmark that
subclasses :class:`BenchmarkSpec` gets the same API. This module also holds the parameter handling
the benchmarks share (:func:`resolve_params`) and the dataset class they return
(:class:`BenchmarkDataset`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from neuroinspect.datasets.base import DATASETS, DatasetSpec, ImageDataset, InMemoryImageDataset
from neuroinspect.errors import DataError, UserError
from neuroinspect.fileio import atomic_write_bytes, atomic_write_text

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}


class BenchmarkDataset(InMemoryImageDataset):
    """A generated split: images (N×H×W×3 uint8) plus the factors that made each one.

    ``core`` (N,) int64: the core factor (equals the label); ``spurious`` (N,) int64: the spurious
    factor; ``factors``: per-sample nuisance arrays, each with first dimension N, that the
    benchmark's renderer needs to redraw a sample with other core / spurious values.
    """

    def __init__(
        self,
        images: np.ndarray,
        core: np.ndarray,
        spurious: np.ndarray,
        factors: Mapping[str, np.ndarray],
        core_names: Sequence[str],
        spurious_names: Sequence[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(images, **kwargs)
        n = len(self.samples)
        if core.shape != (n,) or spurious.shape != (n,):
            raise ValueError("core and spurious must have one entry per sample")
        for key, arr in factors.items():
            if len(arr) != n:
                raise ValueError(f"factor {key!r} must have one entry per sample")
        self.core = np.asarray(core, dtype=np.int64)
        self.spurious = np.asarray(spurious, dtype=np.int64)
        self.factors = dict(factors)
        self.core_names = list(core_names)
        self.spurious_names = list(spurious_names)


class BenchmarkSpec(DatasetSpec):
    """A generated benchmark with known core and spurious factors.

    Subclasses set ``defaults`` (every parameter with its default value) and implement
    :meth:`problems` (parameter validation), :meth:`generate` (one split) and :meth:`render_grid`.
    """

    kind: ClassVar[str] = "benchmark"
    has_groups: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {}
    caption_template: ClassVar[str] = "a photo of a {core} on {spurious}"
    core_factor: ClassVar[str] = "core"
    spurious_factor: ClassVar[str] = "spurious"
    fixture_sizes: ClassVar[dict[str, Any]] = {}  # parameter overrides that make `make_fixture` small
    fixture_per_group: ClassVar[int | None] = None  # or export only this many images per group and split

    # -- to implement -----------------------------------------------------------------------------
    @classmethod
    def problems(cls, params: dict[str, Any]) -> list[str]:
        """Problems with resolved ``params`` (each one sentence naming the fix); empty when valid."""
        raise NotImplementedError

    @classmethod
    def generate(
        cls, split: str, params: dict[str, Any], transform: Callable[[Image.Image], Any] | None
    ) -> BenchmarkDataset:
        raise NotImplementedError

    @classmethod
    def render_grid(cls, dataset: BenchmarkDataset, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- the DatasetSpec interface ----------------------------------------------------------------
    @classmethod
    def resolve(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` merged into the defaults and validated; a :class:`DataError` listing every problem."""
        resolved, problems = resolve_params(cls.name, cls.defaults, params)
        if not problems:
            problems = cls.problems(resolved)
        if problems:
            raise DataError(f"invalid parameters for {cls.name}: " + " ".join(problems))
        return resolved

    @classmethod
    def load(
        cls,
        root: str | Path | None,
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
        **params: Any,
    ) -> BenchmarkDataset:
        """Generate ``split`` in memory (``root`` is ignored: the data is rendered, not read)."""
        cls.check_split(split)
        return cls.generate(split, cls.resolve(params), transform)

    @classmethod
    def check(cls, root: str | Path | None, **params: Any) -> list[str]:
        """Problems with ``params`` (the data is generated, so there are no files to check)."""
        resolved, problems = resolve_params(cls.name, cls.defaults, params)
        return problems or cls.problems(resolved)

    @classmethod
    def make_fixture(cls, root: str | Path, seed: int = 0, **params: Any) -> Path:
        """Export a small copy as PNG files plus ``metadata.csv`` in the Waterbirds layout.

        Images go to ``<root>/<split>/<class>/<split>_<index>_<spurious>.png``, ``index`` being the
        sample's index in the split loaded with the same parameters (and ``seed``).
        Columns ``img_filename, y, split, place``: ``split`` is 0/1/2 for train/val/test and
        ``place`` is the spurious factor's index, so ``group = y * n_spurious + place``
        (Waterbirds' ``2 * y + place`` when both factors are binary). Returns ``root``.
        """
        small = dict(cls.fixture_sizes)
        small.update(params)
        small["seed"] = seed
        resolved = cls.resolve(small)
        root = Path(root)
        if (root / "metadata.csv").exists():
            raise DataError(
                f"{root / 'metadata.csv'} already exists; make-fixture never overwrites a dataset. Pass an empty --root."
            )
        rows = []
        for split in cls.splits:
            ds = cls.generate(split, resolved, None)
            keep = np.arange(len(ds))
            if cls.fixture_per_group is not None:  # the first few of every group
                groups = ds.groups
                assert groups is not None  # benchmarks always have groups
                keep = np.sort(
                    np.concatenate(
                        [np.nonzero(groups == g)[0][: cls.fixture_per_group] for g in range(ds.num_groups)]
                    )
                )
            for i in keep.tolist():
                sample = ds.samples[i]
                rel = f"{split}/{ds.classes[sample.label]}/{split}_{i:05d}_{ds.spurious_names[ds.spurious[i]]}.png"
                buf = io.BytesIO()
                Image.fromarray(ds.images[i], mode="RGB").save(buf, format="PNG")
                atomic_write_bytes(root / rel, buf.getvalue())
                rows.append((rel, sample.label, SPLIT_CODES[split], int(ds.spurious[i])))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["img_filename", "y", "split", "place"])
        writer.writerows(rows)
        atomic_write_text(root / "metadata.csv", text.getvalue())
        return root


# -- parameters ------------------------------------------------------------------------------------
def resolve_params(
    name: str, defaults: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """``params`` coerced to the type of each default (``"a,b"`` → ``("a", "b")``, ``"3"`` → 3).

    Returns ``(resolved, problems)``; unknown keys and values of the wrong type are problems.
    """
    out = dict(defaults)
    problems: list[str] = []
    for key, value in params.items():
        if key not in defaults:
            problems.append(
                f"{name} has no parameter {key!r}; valid parameters are {', '.join(sorted(defaults))} (pass them as --param key=value)."
            )
            continue
        default = defaults[key]
        try:
            out[key] = _coerce(value, default)
        except (TypeError, ValueError):
            kind = "a comma-separated list of names" if isinstance(default, tuple) else type(default).__name__
            problems.append(f"parameter {key}={value!r} of {name} must be {kind} (default {_show(default)}).")
    return out, problems


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if isinstance(value, (bool, int, np.integer)) and int(value) in (0, 1):
            return bool(value)
        raise ValueError(value)
    if isinstance(default, int):
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise TypeError(value)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise TypeError(value)
        out = float(value)
        if not np.isfinite(out):
            raise ValueError(value)
        return out
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        names = tuple(str(v).strip().lower() for v in items)
        if any(not n for n in names):
            raise ValueError(value)
        return names
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError(value)
        return value.strip().lower()
    raise TypeError(f"unsupported parameter type {type(default).__name__}")


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else repr(value)


def split_counts(n: int, k: int) -> np.ndarray:
    """``n`` split into ``k`` near-equal integer parts, larger parts first; shape (k,)."""
    base, rem = divmod(int(n), int(k))
    return np.array([base + (1 if i < rem else 0) for i in range(k)], dtype=np.int64)


def weighted_counts(n: int, weights: np.ndarray) -> np.ndarray:
    """``n`` split in proportion to ``weights`` (largest remainders get the leftover units); shape (k,)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    out = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - out), kind="stable")
    out[order[: n - int(out.sum())]] += 1
    return out


def aligned_counts(class_sizes: np.ndarray, n_spurious: int, align: float) -> np.ndarray:
    """The (K, S) count table of a training split where class k sits on spurious value ``k % S``
    for ``round(align * n_k)`` of its ``n_k`` samples and spreads the rest evenly over the others."""
    k = len(class_sizes)
    table = np.zeros((k, n_spurious), dtype=np.int64)
    for c, n_c in enumerate(class_sizes):
        home = c % n_spurious
        n_home = int(np.floor(align * int(n_c) + 0.5))
        table[c, home] = n_home
        others = [s for s in range(n_spurious) if s != home]
        for s, m in zip(others, split_counts(int(n_c) - n_home, len(others)), strict=True):
            table[c, s] = m
    return table


def assignment_from_table(table: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(core, spurious) arrays, shape (N,), holding ``table[c, s]`` copies of each pair, shuffled by ``rng``."""
    core = np.repeat(np.repeat(np.arange(table.shape[0]), table.shape[1]), table.ravel())
    spurious = np.repeat(np.tile(np.arange(table.shape[1]), table.shape[0]), table.ravel())
    order = rng.permutation(len(core))
    return core[order].astype(np.int64), spurious[order].astype(np.int64)


def to_uint8(images01: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] → uint8, rounding half to even (deterministic). Overwrites ``images01``."""
    images01 *= images01.dtype.type(255)
    np.rint(images01, out=images01)
    np.clip(images01, 0, 255, out=images01)
    return images01.astype(np.uint8)


# -- the ground-truth API --------------------------------------------------------------------------
def _spec_of(dataset: ImageDataset) -> type[BenchmarkSpec]:
    name = getattr(dataset, "name", None)
    spec = DATASETS.get(name) if name is not None and name in DATASETS else None
    if spec is None or not issubclass(spec, BenchmarkSpec):
        benchmarks = sorted(n for n in DATASETS.names() if issubclass(DATASETS.get(n), BenchmarkSpec))
        raise UserError(
            f"dataset {name!r} has no known ground truth (core and spurious factors); "
            f"use a bundled benchmark: {', '.join(benchmarks)}."
        )
    if not isinstance(dataset, BenchmarkDataset):
        raise UserError(
            f"ground truth needs the {name} split exactly as `load` returned it (a BenchmarkDataset), "
            f"not a {type(dataset).__name__}; pass the loaded dataset and select samples with `indices`."
        )
    return spec


def core_names(dataset: ImageDataset) -> list[str]:
    """Names of the core factor's values, in label order (e.g. ``["triangle", "square"]``)."""
    _spec_of(dataset)
    return list(dataset.core_names)  # type: ignore[attr-defined]


def spurious_names(dataset: ImageDataset) -> list[str]:
    """Names of the spurious factor's values (e.g. ``["water", "land"]``)."""
    _spec_of(dataset)
    return list(dataset.spurious_names)  # type: ignore[attr-defined]


def attribute_labels(dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """``(core, spurious)``: int64 arrays of shape (N,), the factor indices of every sample."""
    _spec_of(dataset)
    return dataset.core.copy(), dataset.spurious.copy()  # type: ignore[attr-defined]


def caption(core_name: str, spurious_name: str, dataset: ImageDataset | str | None = None) -> str:
    """A CLIP-style caption for one (core, spurious) pair, e.g. ``"a photo of a triangle on water"``.

    ``dataset`` (a loaded benchmark or its name) picks the benchmark's template; by default the
    ``spurious-shapes`` template ``"a photo of a {core} on {spurious}"`` is used.
    """
    template = BenchmarkSpec.caption_template
    if dataset is not None:
        name = dataset if isinstance(dataset, str) else dataset.name
        spec = DATASETS.get(name)
        if issubclass(spec, BenchmarkSpec):
            template = spec.caption_template
    return template.format(core=core_name, spurious=spurious_name)


def counterfactual_grid(dataset: ImageDataset, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """The samples ``indices`` re-rendered with every core × every spurious value.

    Returns uint8 of shape (n, n_core, n_spurious, H, W, 3). Entry ``[i, c, s]`` keeps sample
    ``indices[i]``'s nuisance draw (position, scale, rotation, colour jitter, noise) and changes only
    the two factors, so ``grid[i, core[j], spurious[j]]`` equals the sample's own image, byte for byte.
    """
    spec = _spec_of(dataset)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = len(dataset)
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise UserError(
            f"sample index {int(bad[0])} is out of range for {dataset.name}/{dataset.split} (0..{n - 1})."
        )
    return spec.render_grid(dataset, idx)  # type: ignore[arg-type]
