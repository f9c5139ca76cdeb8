"""A declarative sweep: a TOML file with a ``[sweep]`` table, validated once at the edge.

The grid is datasets (with parameters) × models × finders × selectors × editors (with parameter
grids) × visualizers × seeds::

    [sweep]
    name = "bundled"
    seeds = [0, 1, 2]
    executor = "local"            # or "ray" (then `address = "local"` or a cluster's address)
    finders = ["counterfactual", "random"]
    selectors = ["top"]
    visualizers = []

    [[sweep.datasets]]
    name = "spurious-shapes"
    params = { n_train = 2000 }
    grid = { correlation = [0.9, 0.95] }   # one dataset variant per value

    [[sweep.models]]
    name = "resnet18"

    [sweep.editors.neuroinspect]
    epochs = 10
    grid = { lambda3 = [0.01, 0.1] }     # one editor variant per value
    [sweep.editors.cw]

A method list is either a list of names or a table of ``name = {settings}``; inside a method's
settings, ``grid`` maps a setting to the list of values to sweep (the product of all of them).
Unknown keys, unknown methods, settings a method does not take and empty lists are errors that
name the key and the fix (:class:`~neuroinspect.errors.UserError`, exit status 2).
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

EXECUTORS = ("local", "ray")
NEURON_LISTS = ("insufficient", "excessive", "both")
SWEEP_KEYS = {
    "name": "the sweep's name (records carry it as config.experiment)",
    "seeds": "list of seeds (one training per dataset, model and seed)",
    "datasets": "list of dataset names or [[sweep.datasets]] tables",
    "models": "list of model names or [[sweep.models]] tables",
    "finders": "finder names or a table of name = {settings}",
    "selectors": "selector names or a table of name = {settings}",
    "editors": "editor names or a table of name = {settings}",
    "visualizers": "visualizer names or a table of name = {settings}",
    "executor": 'where stages run: "local" (a process pool) or "ray"',
    "workers": 'local: worker processes ("auto" = one per core, 0 = run in this process); ray with address "local": CPUs of the local instance',
    "address": 'ray: "local" (start a private instance on this machine) or a cluster address',
    "cpus_per_task": "CPU threads per stage (ray: the tasks' num_cpus)",
    "gpus_per_task": "ray: GPUs per task (num_gpus)",
    "resources": "per-stage overrides, e.g. resources.train = { num_gpus = 1 }",
    "device": "cpu, cuda or auto",
    "store": "folder of the stage cache (default OUT/store); share it between sweeps to reuse stages",
    "preset": "training preset (default, paper)",
    "class_idx": "class to debug (unset: the worst class on the finder split of each model)",
    "finder_split": "split the finders explain (val)",
    "gamma": '"auto" (the §2.5 heuristic from the selected neurons) or a number',
    "num_neurons": "neurons each selector and control chooses (a selector entry may set its own)",
    "neuron_list": 'the finder list the candidates come from: "insufficient", "excessive" or "both"',
    "candidate_pool": "a selector sees the first candidate_pool x num_neurons neurons of the list",
    "controls": 'neuron sets edited beside every selection: "oracle-neurons" (bundled benchmarks), "random-neurons"',
    "causal_threshold": "E_n >= this x max E makes a neuron causal (the causal truth on the mistakes)",
    "clip": "the CLIP of the clip selector and CLIP-guided images (bundled benchmarks: their synthetic CLIP)",
    "recovery_k": "k of the finders' precision@k against the ground truth",
    "truth_samples": "samples re-rendered per model for the neuron ground truth (bundled benchmarks)",
    "n_boot": "bootstrap resamples of the test metrics",
    "batch_size": "batch size of feature extraction",
    "visualize_split": "split visualizers draw natural images and reference activations from",
    "visualize_neurons": "visualize the first N neurons of each selection (unset: all of them)",
    "concept_recovery": "visualizations: score concept recovery on the bundled benchmarks (true/false)",
    "attribute_settings": "settings of the attribute classifiers behind concept recovery",
    "parts": "[[sweep.parts]] tables: more grids in the same sweep, each overriding grid keys (seeds, finders, ...)",
}
#: keys of where and how a sweep runs: the sweep's own, never a part's
RUN_KEYS = (
    "executor",
    "workers",
    "address",
    "cpus_per_task",
    "gpus_per_task",
    "resources",
    "device",
    "store",
)
DATASET_KEYS = (
    "name",
    "label",
    "root",
    "params",
    "grid",
    "class_idx",
    "image_size",
    "preset",
    "train",
    "finder_split",
)
MODEL_KEYS = ("name", "label", "image_size", "pretrained", "preset", "train", "checkpoint")
METHOD_KINDS = ("finders", "selectors", "editors", "visualizers")


@dataclass(frozen=True)
class DatasetVariant:
    """One dataset with one set of parameters (a grid point)."""

    name: str
    label: str
    root: str | None
    params: dict[str, Any]
    class_idx: int | None
    image_size: int | None
    preset: str | None
    train: dict[str, Any]
    finder_split: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    label: str
    image_size: int | None = None
    pretrained: bool | str | None = None
    preset: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    #: a checkpoint file to load instead of training; ``{seed}`` in it is replaced by each seed
    checkpoint: str | None = None

    def checkpoint_for(self, seed: int) -> str:
        """The checkpoint file of ``seed`` (``{seed}`` replaced); only for a model with a checkpoint."""
        from neuroinspect.harness.checkpoint import checkpoint_for_seed

        assert self.checkpoint is not None
        return checkpoint_for_seed(self.checkpoint, seed)


@dataclass(frozen=True)
class MethodVariant:
    """One method with one set of settings (a grid point); ``label`` is ``name`` or ``name[k=v,...]``."""

    name: str
    label: str
    settings: dict[str, Any]


@dataclass
class SweepConfig:
    name: str
    seeds: list[int]
    datasets: list[DatasetVariant]
    models: list[ModelEntry]
    finders: list[MethodVariant]
    selectors: list[MethodVariant]
    editors: list[MethodVariant]
    visualizers: list[MethodVariant]
    executor: str = "local"
    workers: int | None = None  # None: one per core
    address: str | None = None
    cpus_per_task: float | None = None
    gpus_per_task: float = 0.0
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    device: str = "cpu"
    store: str | None = None
    preset: str = "default"
    gamma: float | str = "auto"
    num_neurons: int = 5
    neuron_list: str = "insufficient"
    candidate_pool: int = 3
    controls: list[str] = field(default_factory=list)
    causal_threshold: float = 0.1
    clip: str | None = None
    recovery_k: list[int] = field(default_factory=lambda: [5, 10, 20])
    truth_samples: int = 200
    n_boot: int = 1000
    batch_size: int = 256
    visualize_split: str = "val"
    visualize_neurons: int | None = None
    concept_recovery: bool = True
    attribute_settings: dict[str, Any] = field(default_factory=dict)
    source: str = "sweep"
    raw: dict[str, Any] = field(default_factory=dict)
    #: the [[sweep.parts]] grids: the sweep's settings with each part's overrides
    parts: list[SweepConfig] = field(default_factory=list)

    @property
    def grids(self) -> list[SweepConfig]:
        """The grids the plan expands: this one, then each part's."""
        return [self, *self.parts]


def is_sweep_file(path: str | Path) -> bool:
    """Whether ``path`` is a TOML file with a ``[sweep]`` table (an unreadable file is not: the
    experiment loader reports it)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data.get("sweep"), dict)


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file (a :class:`UserError` naming the key and the fix otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist. See configs/bundled.toml for an example.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path} is not valid TOML: {err}.") from None
    extra = sorted(set(data) - {"sweep"})
    if extra:
        raise UserError(
            f"{path}: top-level key(s) {', '.join(extra)} outside [sweep]; move them into the [sweep] table."
        )
    return parse_sweep(data["sweep"], source=str(path))


# -- parsing helpers -------------------------------------------------------------------------------
def _fail(source: str, key: str, msg: str) -> UserError:
    return UserError(f"{source}: sweep.{key}: {msg}")


def _check_keys(source: str, where: str, table: dict[str, Any], valid: Any) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise _fail(
            source,
            f"{where}{unknown[0]}" if where else unknown[0],
            f"unknown key; valid keys{' here' if where else ''} are {', '.join(sorted(valid))}.",
        )


def _int(source: str, key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(source, key, f"must be an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise _fail(source, key, f"must be at least {minimum}, got {value}.")
    return value


def _list(source: str, key: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(source, key, f"must be a list, got {value!r}.")
    return value


def _grid_points(source: str, key: str, grid: Any) -> list[dict[str, Any]]:
    """The product of a ``grid`` table (setting → non-empty list of values), as a list of dicts."""
    if grid is None:
        return [{}]
    if not isinstance(grid, dict):
        raise _fail(source, key, f"must be a table of setting = [values], got {grid!r}.")
    names = list(grid)
    for n in names:
        values = grid[n]
        if not isinstance(values, list) or not values:
            raise _fail(source, f"{key}.{n}", f"must be a non-empty list of values to sweep, got {values!r}.")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def _label(name: str, point: dict[str, Any]) -> str:
    if not point:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"


def _methods(source: str, kind: str, value: Any) -> list[MethodVariant]:
    if isinstance(value, list):
        entries: dict[str, Any] = {}
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise _fail(source, f"{kind}[{i}]", f"must be a method name, got {v!r}.")
            if v in entries:
                raise _fail(source, kind, f"{v!r} is listed twice; list each method once.")
            entries[v] = {}
    elif isinstance(value, dict):
        entries = value
    else:
        raise _fail(
            source, kind, f"must be a list of names or a table of name = {{settings}}, got {value!r}."
        )
    out: list[MethodVariant] = []
    for name, settings in entries.items():
        if not isinstance(settings, dict):
            raise _fail(source, f"{kind}.{name}", f"must be a table of settings, got {settings!r}.")
        fixed = {k: v for k, v in settings.items() if k != "grid"}
        for point in _grid_points(source, f"{kind}.{name}.grid", settings.get("grid")):
            clash = sorted(set(point) & set(fixed))
            if clash:
                raise _fail(
                    source,
                    f"{kind}.{name}.grid.{clash[0]}",
                    "is also set outside the grid; set it in one place.",
                )
            out.append(MethodVariant(name, _label(name, point), {**fixed, **point}))
    return out


def _datasets(source: str, value: Any, defaults: dict[str, Any]) -> list[DatasetVariant]:
    items = _list(source, "datasets", value)
    if not items:
        raise _fail(
            source, "datasets", 'is empty; name at least one dataset, e.g. datasets = ["spurious-shapes"].'
        )
    out: list[DatasetVariant] = []
    for i, item in enumerate(items):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or "name" not in entry:
            raise _fail(source, f"datasets[{i}]", 'must be a dataset name or a table with name = "...".')
        _check_keys(source, f"datasets[{i}].", entry, DATASET_KEYS)
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            raise _fail(source, f"datasets[{i}].params", "must be a table of dataset parameters.")
        train = entry.get("train") or {}
        if not isinstance(train, dict):
            raise _fail(source, f"datasets[{i}].train", "must be a table of training settings.")
        class_idx = entry.get("class_idx", defaults.get("class_idx"))
        if class_idx is not None:
            class_idx = _int(source, f"datasets[{i}].class_idx", class_idx, 0)
        for point in _grid_points(source, f"datasets[{i}].grid", entry.get("grid")):
            clash = sorted(set(point) & set(params))
            if clash:
                raise _fail(
                    source, f"datasets[{i}].grid.{clash[0]}", "is also in params; set it in one place."
                )
            base = entry.get("label") or entry["name"]
            out.append(
                DatasetVariant(
                    name=str(entry["name"]),
                    label=_label(str(base), point),
                    root=None if entry.get("root") is None else str(entry["root"]),
                    params={**params, **point},
                    class_idx=class_idx,
                    image_size=entry.get("image_size"),
                    preset=entry.get("preset"),
                    train=dict(train),
                    finder_split=str(entry.get("finder_split", defaults.get("finder_split", "val"))),
                )
            )
    labels = [d.label for d in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise _fail(
            source, "datasets", f'two entries are both labelled {dup[0]!r}; give them distinct label = "...".'
        )
    return out


def _models(source: str, value: Any) -> list[ModelEntry]:
    items = _list(source, "models", value)
    if not items:
        raise _fail(source, "models", 'is empty; name at least one model, e.g. models = ["resnet18"].')
    out = []
    for i, item in enumerate(items):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or "name" not in entry:
            raise _fail(source, f"models[{i}]", 'must be a model name or a table with name = "...".')
        _check_keys(source, f"models[{i}].", entry, MODEL_KEYS)
        ckpt = entry.get("checkpoint")
        out.append(
            ModelEntry(
                name=str(entry["name"]),
                label=str(entry.get("label") or entry["name"]),
                image_size=entry.get("image_size"),
                pretrained=entry.get("pretrained"),
                preset=entry.get("preset"),
                train=dict(entry.get("train") or {}),
                checkpoint=None if ckpt is None else str(ckpt),
            )
        )
    labels = [m.label for m in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise _fail(
            source, "models", f'two entries are both labelled {dup[0]!r}; give them distinct label = "...".'
        )
    return out


def parse_sweep(data: dict[str, Any], source: str = "sweep") -> SweepConfig:
    """A :class:`SweepConfig` from the ``[sweep]`` table, validated (see the module docstring)."""
    _check_keys(source, "", data, SWEEP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "name", 'is missing; give the sweep a name, e.g. name = "bundled".')
    seeds = [_int(source, "seeds", s) for s in _list(source, "seeds", data.get("seeds", [0, 1, 2]))]
    if not seeds:
        raise _fail(source, "seeds", "is empty; give at least one seed, e.g. seeds = [0, 1, 2].")
    if len(set(seeds)) != len(seeds):
        raise _fail(source, "seeds", f"lists a seed twice ({seeds}); list each seed once.")
    executor = data.get("executor", "local")
    if executor not in EXECUTORS:
        raise _fail(source, "executor", f'is {executor!r}; use "local" or "ray".')
    workers_raw = data.get("workers", "auto")
    workers = None if workers_raw == "auto" else _int(source, "workers", workers_raw, 0)
    address = data.get("address")
    if address is not None and executor != "ray":
        raise _fail(
            source, "address", 'applies to executor = "ray" only; set executor = "ray" or drop address.'
        )
    gpus = data.get("gpus_per_task", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0:
        raise _fail(source, "gpus_per_task", f"must be a number >= 0, got {gpus!r}.")
    if gpus and executor != "ray":
        raise _fail(
            source,
            "gpus_per_task",
            'applies to executor = "ray" only; set executor = "ray" (address = "local" on one machine) or drop it.',
        )
    cpus = data.get("cpus_per_task")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0):
        raise _fail(source, "cpus_per_task", f"must be a number > 0, got {cpus!r}.")
    resources = data.get("resources") or {}
    from neuroinspect.harness.stages import STAGES

    if not isinstance(resources, dict):
        raise _fail(source, "resources", "must be a table of stage = { num_cpus = .., num_gpus = .. }.")
    for stage, res in resources.items():
        if stage not in STAGES:
            raise _fail(source, f"resources.{stage}", f"unknown stage; stages are {', '.join(STAGES)}.")
        if not isinstance(res, dict):
            raise _fail(source, f"resources.{stage}", "must be a table { num_cpus = .., num_gpus = .. }.")
        _check_keys(source, f"resources.{stage}.", res, ("num_cpus", "num_gpus"))
    gamma = data.get("gamma", "auto")
    if isinstance(gamma, str) and gamma != "auto":
        raise _fail(source, "gamma", f'is {gamma!r}; use "auto" (the §2.5 heuristic) or a number.')
    recovery_k = [
        _int(source, "recovery_k", k, 1)
        for k in _list(source, "recovery_k", data.get("recovery_k", [5, 10, 20]))
    ]
    defaults = {"class_idx": data.get("class_idx"), "finder_split": data.get("finder_split", "val")}
    from neuroinspect.harness.config import CONTROLS

    controls = [str(c) for c in _list(source, "controls", data.get("controls", []))]
    bad = [c for c in controls if c not in CONTROLS]
    if bad:
        raise _fail(source, "controls", f"{bad[0]!r} is not a control; choose among {', '.join(CONTROLS)}.")
    if len(set(controls)) != len(controls):
        raise _fail(source, "controls", "lists a control twice; list each once.")
    neuron_list = data.get("neuron_list", "insufficient")
    if neuron_list not in NEURON_LISTS:
        raise _fail(source, "neuron_list", f"is {neuron_list!r}; use insufficient, excessive or both.")
    threshold = data.get("causal_threshold", 0.1)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise _fail(source, "causal_threshold", f"must be a number in [0, 1], got {threshold!r}.")
    cfg = SweepConfig(
        name=name.strip(),
        seeds=seeds,
        datasets=_datasets(source, data.get("datasets", ["spurious-shapes"]), defaults),
        models=_models(source, data.get("models", ["resnet18"])),
        finders=_methods(source, "finders", data.get("finders", ["counterfactual"])),
        selectors=_methods(source, "selectors", data.get("selectors", ["top"])),
        editors=_methods(source, "editors", data.get("editors", [])),
        visualizers=_methods(source, "visualizers", data.get("visualizers", [])),
        executor=executor,
        workers=workers,
        address=None if address is None else str(address),
        cpus_per_task=None if cpus is None else float(cpus),
        gpus_per_task=float(gpus),
        resources={k: {kk: float(vv) for kk, vv in v.items()} for k, v in resources.items()},
        device=str(data.get("device", "cpu")),
        store=None if data.get("store") is None else str(data["store"]),
        preset=str(data.get("preset", "default")),
        gamma=gamma if gamma == "auto" else float(gamma),
        num_neurons=_int(source, "num_neurons", data.get("num_neurons", 5), 1),
        neuron_list=str(neuron_list),
        candidate_pool=_int(source, "candidate_pool", data.get("candidate_pool", 3), 1),
        controls=controls,
        causal_threshold=float(threshold),
        clip=None if data.get("clip") is None else str(data["clip"]),
        recovery_k=recovery_k,
        truth_samples=_int(source, "truth_samples", data.get("truth_samples", 200), 1),
        n_boot=_int(source, "n_boot", data.get("n_boot", 1000), 0),
        batch_size=_int(source, "batch_size", data.get("batch_size", 256), 1),
        visualize_split=str(data.get("visualize_split", "val")),
        visualize_neurons=None
        if data.get("visualize_neurons") is None
        else _int(source, "visualize_neurons", data["visualize_neurons"], 1),
        concept_recovery=bool(data.get("concept_recovery", True)),
        attribute_settings=dict(data.get("attribute_settings") or {}),
        source=source,
        raw=data,
    )
    validate_methods(cfg)
    cfg.parts = _parts(source, data)
    return cfg


def _parts(source: str, data: dict[str, Any]) -> list[SweepConfig]:
    """The ``[[sweep.parts]]`` grids: each part is the sweep with the part's keys replaced (grid keys only;
    where and how the sweep runs, ``RUN_KEYS``, stay the sweep's). Stages the parts share with the main
    grid (trainings, features, finder runs) are planned and run once."""
    parts = data.get("parts", [])
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise _fail(
            source,
            "parts",
            "must be [[sweep.parts]] tables of grid keys, e.g. seeds = [0] and selectors = [...].",
        )
    base = {k: v for k, v in data.items() if k != "parts"}
    out = []
    for i, part in enumerate(parts, 1):
        here = f"{source}, part {i} ([[sweep.parts]])"
        if not part:
            raise _fail(here, "parts", "is empty; give the keys this grid changes, e.g. seeds = [0].")
        fixed = sorted(set(part) & {*RUN_KEYS, "parts"})
        if fixed:
            raise _fail(
                here, fixed[0], "is where and how the whole sweep runs; set it in [sweep], not in a part."
            )
        out.append(parse_sweep({**base, **part}, source=here))
    return out


def validate_methods(cfg: SweepConfig) -> None:
    """Every dataset, preset, method and setting exists (instantiating finders and editors with their
    settings); a :class:`UserError` naming the key otherwise. Reads no data."""
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import SEED_FIELD
    from neuroinspect.harness.choice import split_variant
    from neuroinspect.harness.presets import get_preset
    from neuroinspect.harness.stages import CHOICE_KEYS
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.methods.editors import load_all as load_editors
    from neuroinspect.methods.finders import FINDERS
    from neuroinspect.methods.finders import load_all as load_finders
    from neuroinspect.methods.selectors import SELECTORS
    from neuroinspect.methods.visualizers import VISUALIZERS
    from neuroinspect.methods.visualizers import load_all as load_visualizers

    src = cfg.source
    load_finders()
    load_editors()
    load_visualizers()

    def named(kind: str, what: str, fn: Any) -> Any:
        try:
            return fn()
        except UserError as err:
            raise _fail(src, f"{kind}.{what}", str(err)) from None

    for d in cfg.datasets:
        spec = named("datasets", d.label, lambda d=d: get_dataset(d.name))
        for split in ("train", "test", d.finder_split):
            if split not in spec.splits:
                raise _fail(
                    src,
                    f"datasets.{d.label}",
                    f"{d.name} has no split {split!r}; its splits are {', '.join(spec.splits)}.",
                )
        for m in cfg.models:
            preset = named(
                "datasets", d.label, lambda d=d, m=m: get_preset(m.preset or d.preset or cfg.preset, d.name)
            )
            where = f"models.{m.label}" if m.train else f"datasets.{d.label}"
            named(
                where,
                "train",
                lambda d=d, m=m, preset=preset: preset.with_overrides(**{**d.train, **m.train}),
            )
    if cfg.visualizers and cfg.visualize_split not in ("train", "val", "test"):
        raise _fail(src, "visualize_split", f"is {cfg.visualize_split!r}; use train, val or test.")
    for m in cfg.models:
        if m.checkpoint is not None:
            missing = [
                p
                for p in dict.fromkeys(m.checkpoint_for(s) for s in cfg.seeds)
                if not Path(p).expanduser().is_file()
            ]
            if missing and SEED_FIELD in m.checkpoint:
                seeds = [s for s in cfg.seeds if m.checkpoint_for(s) in missing]
                raise _fail(
                    src,
                    f"models.{m.label}.checkpoint",
                    f"has no file for seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} "
                    f"({', '.join(missing)}); train {'them' if len(seeds) > 1 else 'it'} there first "
                    '(e.g. neuroinspect bench run EXPERIMENT.toml, whose checkpoint = "...seed-{seed}/best.pt" '
                    "trains into that path), or drop checkpoint to train in the sweep.",
                )
            if missing:
                raise _fail(
                    src,
                    f"models.{m.label}.checkpoint",
                    f"file {m.checkpoint} does not exist; fix the path or drop checkpoint to train.",
                )
        if isinstance(m.pretrained, str):
            from neuroinspect.harness.models import _looks_like_path

            if _looks_like_path(m.pretrained) and not Path(m.pretrained).expanduser().is_file():
                raise _fail(
                    src,
                    f"models.{m.label}.pretrained",
                    f"weight file {m.pretrained} does not exist; put the file there or give a timm tag.",
                )
    for f in cfg.finders:
        cls = named("finders", f.label, lambda f=f: FINDERS.get(split_variant(f.name)[0]))
        _check_settings(src, "finders", f, cls)
        named("finders", f.label, lambda cls=cls, f=f: cls(**f.settings))
    for s in cfg.selectors:
        sel_cls = named("selectors", s.label, lambda s=s: SELECTORS.get(split_variant(s.name)[0]))
        choice = selector_choice(cfg, s)
        if choice["neuron_list"] not in NEURON_LISTS:
            raise _fail(src, f"selectors.{s.name}.neuron_list", "use insufficient, excessive or both.")
        _int(src, f"selectors.{s.name}.num_neurons", choice["num_neurons"], 1)
        _int(src, f"selectors.{s.name}.candidate_pool", choice["candidate_pool"], 1)
        ctor = {k: v for k, v in s.settings.items() if k not in CHOICE_KEYS}
        _check_settings(src, "selectors", MethodVariant(s.name, s.label, ctor), sel_cls)
        try:
            sel = sel_cls(**ctor)
        except (UserError, TypeError, ValueError) as err:
            raise _fail(src, f"selectors.{s.name}", str(err)) from None
        check = getattr(sel, "check", None)
        if callable(check):  # a sweep's workers cannot prompt: the labels selector needs its file
            named("selectors", s.label, lambda check=check: check(False))
    for e in cfg.editors:
        ecls = named("editors", e.label, lambda e=e: EDITORS.get(split_variant(e.name)[0]))
        _check_settings(src, "editors", e, ecls, ecls.hyperparameters())
        named("editors", e.label, lambda ecls=ecls, e=e: ecls(**e.settings))
    for v in cfg.visualizers:
        vcls = named("visualizers", v.label, lambda v=v: VISUALIZERS.get(v.name))
        _check_settings(src, "visualizers", v, vcls)
    needs_neurons = [e.name for e in cfg.editors if EDITORS.get(split_variant(e.name)[0]).uses_neurons]
    if (needs_neurons or cfg.visualizers) and not cfg.finders:
        raise _fail(
            src,
            "finders",
            f"is empty but {', '.join(needs_neurons) or 'the visualizers'} need neurons; name at least one finder.",
        )
    if (needs_neurons or cfg.visualizers) and not cfg.selectors:
        raise _fail(src, "selectors", 'is empty but neurons must be chosen; use selectors = ["top"].')
    if cfg.concept_recovery and cfg.attribute_settings:
        from neuroinspect.methods.concept_recovery import classifier_settings

        try:
            classifier_settings(cfg.attribute_settings)
        except UserError as err:
            raise _fail(src, "attribute_settings", str(err)) from None


def selector_choice(cfg: SweepConfig, s: MethodVariant) -> dict[str, Any]:
    """The selection step's settings of selector entry ``s``: its own ``num_neurons`` / ``neuron_list`` /
    ``candidate_pool`` where it sets them, the sweep's otherwise."""
    return {
        "num_neurons": s.settings.get("num_neurons", cfg.num_neurons),
        "neuron_list": s.settings.get("neuron_list", cfg.neuron_list),
        "candidate_pool": s.settings.get("candidate_pool", cfg.candidate_pool),
    }


def _check_settings(
    src: str, kind: str, m: MethodVariant, cls: Any, accepted: list[str] | None = None
) -> None:
    """A :class:`UserError` naming the first setting the method's constructor does not take."""
    import inspect

    if accepted is None:
        params = inspect.signature(cls).parameters
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return
        accepted = [k for k in params if k != "self"]
    unknown = sorted(set(m.settings) - set(accepted))
    if unknown:
        raise _fail(
            src,
            f"{kind}.{m.name}.{unknown[0]}",
            f"unknown setting; {m.name} takes {', '.join(sorted(accepted))}.",
        )


def check_data(cfg: SweepConfig) -> None:
    """Every real dataset of the sweep is present under its root; one :class:`UserError` naming every
    missing file otherwise (before anything runs)."""
    from neuroinspect.datasets import get_dataset

    found: dict[str, list[str]] = {}  # problem -> the dataset entries that have it (one root, many scenarios)
    for d in cfg.datasets:
        spec = get_dataset(d.name)
        if spec.kind != "real":
            continue
        for p in spec.check(d.root, **d.params):
            found.setdefault(p, []).append(d.label)
    problems = [f"{', '.join(labels)}: {p}" for p, labels in found.items()]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise UserError(
            f"{cfg.source}: the data this sweep needs is not here ({len(problems)} problem(s)):\n{listed}\n"
            "Put the official files where `root` points (relative paths are from the current folder: "
            f"{os.getcwd()}), or fix `root` in the sweep file; `neuroinspect data check NAME --root DIR` checks one dataset."
        )
