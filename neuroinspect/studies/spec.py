"""The study spec: one TOML file that says everything about a human-understanding study.

A spec is validated when it is loaded (:func:`load_spec`): an unknown key (with a "did you mean"),
a value of the wrong type, a missing checkpoint, an unknown task or visualizer, or an impossible
design (more trials per condition than units) raises one :class:`~neuroinspect.errors.UserError`
that names the key and the fix. Relative paths in a spec (``out``, ``database_url`` of a SQLite
file, ``model.checkpoint``) are relative to the spec file's folder.

Layout (every table but ``[model]`` and ``[[conditions]]`` is optional; ``configs/studies/`` holds
one runnable example per task type)::

    id = "shapes-2afc"             # the study id in the database and the export (default: file stem)
    title = "Which image makes the neuron fire?"
    task = "2afc"                  # 2afc | labelling | mistake | rating
    seed = 0
    out = "../../runs/studies/shapes-2afc"   # bundle/ (and the default database) go here
    database_url = "sqlite:///responses.db"  # default: sqlite:///<out>/responses.db
    allow_anonymous = false        # a link without PROLIFIC_PID gets an anonymous id
    consent = "..."                # Markdown
    instructions = "..."           # Markdown (default: the task type's own)

    [model]                        # the classifier whose units are studied
    dataset = "spurious-shapes"
    root = "data/x"                # real datasets: their folder
    dataset_params = {}            # the benchmark's --param values
    checkpoint = "model.pt"        # an existing checkpoint, or train one:
    arch = "resnet18"              # (cached by these settings)
    image_size = 64
    preset = "default"
    train = {}                     # overrides of the preset, e.g. {epochs = 3}
    train_seed = 0                 # default: the study's seed
    device = "cpu"                 # where build runs the model and the visualizers

    [units]                        # which neurons (or mistakes) the trials are about
    neurons = [3, 17, 40]          # explicit, or:
    sample = 8                     # sample N from the finder's list (or from the ground truth)
    source = "finder"              # finder | truth (default: truth for labelling, finder otherwise)
    finder = "counterfactual"
    finder_settings = {}           # the finder's hyperparameters
    class_idx = "worst"            # the class the finder debugs ("worst" or an index)
    classes = []                   # per-neuron classes for class-conditional visualizations
    condition_on_class = false     # sampled units carry the finder's class (default: true for mistakes)
    practice_neurons = []          # default: extra sampled units, or the main units when listed
    split = "val"                  # references come from here ...
    query_split = "test"           # ... 2AFC queries and mistakes from here (held out)
    truth_samples = 64             # counterfactual samples for the neuron ground truth

    [design]
    trials_per_condition = 4
    practice_trials = 2
    catch_trials = 2
    repeated_trials = 2
    counterbalance = "latin"       # latin | none
    trial_time_limit_s = 120
    total_time_limit_s = 3600
    n_references = 9               # 2AFC: max (and min) reference images per trial
    n_images = 6                   # labelling / mistake / rating: images per explanation
    blamed_neurons = 2             # mistake: neurons whose explanations are shown
    query_quantile = 0.05          # 2AFC: queries are drawn from the top / bottom 5% of activations
    cell_px = 96                   # displayed size of one image

    [[conditions]]
    name = "none"
    baseline = true                # the no-explanation control

    [[conditions]]
    name = "exemplars"
    label = "natural exemplars"    # how reports call it
    visualizer = "exemplars"       # any entry of `neuroinspect methods list --kind visualizers`
    settings = {}                  # its hyperparameters
    min_references = "natural"     # 2AFC, synthetic visualizers: "none" (default) or "natural"

    [exclusions]                   # ExclusionRules (neuroinspect.studies.exclusions)
    [completion]                   # code = "C0DE"; redirect_url = "https://...?cc={code}"
    [questionnaire]                # ml_experience = true; comments = true
    [task_options]                 # rating: items, scale; labelling: nothing yet
    [simulation]                   # model observer: noise, lapse, embedding, classifier
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError
from neuroinspect.studies.exclusions import ExclusionRules

TASKS = ("2afc", "labelling", "mistake", "rating")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# -- the schema: key -> (types, default) per table -----------------------------------------------------
_TOP: dict[str, tuple[tuple[type, ...], Any]] = {
    "id": ((str,), None),
    "title": ((str,), None),
    "task": ((str,), None),
    "seed": ((int,), 0),
    "out": ((str,), None),
    "database_url": ((str,), None),
    "allow_anonymous": ((bool,), False),
    "consent": ((str,), None),
    "instructions": ((str,), None),
    "model": ((dict,), None),
    "units": ((dict,), {}),
    "design": ((dict,), {}),
    "conditions": ((list,), None),
    "exclusions": ((dict,), {}),
    "completion": ((dict,), {}),
    "questionnaire": ((dict,), {}),
    "task_options": ((dict,), {}),
    "simulation": ((dict,), {}),
}
_MODEL: dict[str, tuple[tuple[type, ...], Any]] = {
    "dataset": ((str,), None),
    "root": ((str,), None),
    "dataset_params": ((dict,), {}),
    "checkpoint": ((str,), None),
    "arch": ((str,), "resnet18"),
    "image_size": ((int,), None),
    "preset": ((str,), "default"),
    "train": ((dict,), {}),
    "train_seed": ((int,), None),
    "device": ((str,), "cpu"),
}
_UNITS: dict[str, tuple[tuple[type, ...], Any]] = {
    "neurons": ((list,), None),
    "sample": ((int,), None),
    "source": ((str,), None),
    "finder": ((str,), "counterfactual"),
    "finder_settings": ((dict,), {}),
    "class_idx": ((int, str), "worst"),
    "classes": ((list,), None),
    "practice_neurons": ((list,), None),
    "split": ((str,), "val"),
    "query_split": ((str,), "test"),
    "truth_samples": ((int,), 64),
    "condition_on_class": ((bool,), None),
}
_DESIGN: dict[str, tuple[tuple[type, ...], Any]] = {
    "trials_per_condition": ((int,), 4),
    "practice_trials": ((int,), 2),
    "catch_trials": ((int,), 2),
    "repeated_trials": ((int,), 2),
    "counterbalance": ((str,), "latin"),
    "trial_time_limit_s": ((int, float), None),
    "total_time_limit_s": ((int, float), None),
    "n_references": ((int,), 9),
    "n_images": ((int,), 6),
    "blamed_neurons": ((int,), 2),
    "query_quantile": ((int, float), 0.05),
    "cell_px": ((int,), 96),
}
_CONDITION: dict[str, tuple[tuple[type, ...], Any]] = {
    "name": ((str,), None),
    "label": ((str,), None),
    "baseline": ((bool,), False),
    "visualizer": ((str,), None),
    "settings": ((dict,), {}),
    "min_references": ((str,), None),
}
_COMPLETION: dict[str, tuple[tuple[type, ...], Any]] = {
    "code": ((str,), None),
    "redirect_url": ((str,), None),
}
_QUESTIONNAIRE: dict[str, tuple[tuple[type, ...], Any]] = {
    "ml_experience": ((bool,), True),
    "comments": ((bool,), True),
}
_TASK_OPTIONS: dict[str, tuple[tuple[type, ...], Any]] = {
    "items": ((list,), None),
    "scale": ((int,), 7),
}
_SIMULATION: dict[str, tuple[tuple[type, ...], Any]] = {
    "noise": ((int, float), 0.15),
    "lapse": ((int, float), 0.05),
    "embedding": ((str,), "auto"),
    "classifier": ((dict,), {}),
    "rt_s": ((int, float), 4.0),
}


def _type_name(types: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }
    return " or ".join(names[t] for t in types)


def _check_table(
    values: Mapping[str, Any], schema: Mapping[str, tuple[tuple[type, ...], Any]], where: str
) -> dict[str, Any]:
    """``values`` checked against ``schema`` (unknown keys with a suggestion, types) and filled with defaults."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(f"{where}: unknown key {key!r}.{hint} Known keys: {', '.join(schema)}.")
        types, _ = schema[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise UserError(f"{where}: {key} must be {_type_name(types)}, got {value!r}.")
        out[key] = value
    for key, (_, default) in schema.items():
        if key not in out:
            out[key] = json.loads(json.dumps(default)) if isinstance(default, (dict, list)) else default
    return out


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@dataclass(frozen=True)
class Condition:
    """One explanation condition: a visualizer of the method registry with its settings, or the baseline.

    ``label``: what participants and reports call it; ``min_references`` (2AFC): what fills the
    "least activating" panel of a visualizer without a min mode (``"none"``: no panel; ``"natural"``:
    the natural least-activating exemplars).
    """

    name: str
    visualizer: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False
    label: str = ""
    min_references: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "visualizer": self.visualizer,
            "settings": dict(self.settings),
            "baseline": self.baseline,
            "label": self.label,
            "min_references": self.min_references,
        }


@dataclass(frozen=True)
class UnitsSpec:
    neurons: list[int] | None
    sample: int | None
    source: str
    finder: str
    finder_settings: dict[str, Any]
    class_idx: int | str
    classes: list[int | None] | None
    practice_neurons: list[int] | None
    split: str
    query_split: str
    truth_samples: int
    condition_on_class: bool | None = None


@dataclass(frozen=True)
class DesignSpec:
    trials_per_condition: int
    practice_trials: int
    catch_trials: int
    repeated_trials: int
    counterbalance: str
    trial_time_limit_s: float | None
    total_time_limit_s: float | None
    n_references: int
    n_images: int
    blamed_neurons: int
    query_quantile: float
    cell_px: int


@dataclass(frozen=True)
class ModelSpec:
    dataset: str
    root: str | None
    dataset_params: dict[str, Any]
    checkpoint: Path | None
    arch: str
    image_size: int | None
    preset: str
    train: dict[str, Any]
    train_seed: int
    device: str


@dataclass
class StudySpec:
    """A validated study spec. The attributes the analysis relies on: ``title``, ``task``, ``n_options``,
    ``exclusions``, ``conditions`` (one marked ``baseline``), ``dataset``, ``model`` (e.g.
    ``"resnet18@64px"``, as in result records), ``seed``, ``database_url``, ``path``."""

    path: Path
    id: str
    title: str
    task: str
    seed: int
    out: Path
    database_url: str
    allow_anonymous: bool
    consent: str
    instructions: str | None
    model_spec: ModelSpec
    units: UnitsSpec
    design: DesignSpec
    conditions: list[Condition]
    exclusions: ExclusionRules
    completion_code: str | None
    redirect_url: str | None
    questionnaire: dict[str, bool]
    task_options: dict[str, Any]
    simulation: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- the contract names -----------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return self.model_spec.dataset

    @property
    def model(self) -> str:
        """``<arch>@<image size>px``, the ``model`` string of result records."""
        return f"{self.model_spec.arch}@{self.image_size}px"

    @property
    def image_size(self) -> int:
        if self.model_spec.image_size:
            return int(self.model_spec.image_size)
        from neuroinspect.datasets import get_dataset

        return int(getattr(get_dataset(self.dataset), "default_image_size", 224) or 224)

    @property
    def n_options(self) -> int | None:
        from neuroinspect.studies.tasks import get_task

        return get_task(self.task).n_options(self)

    @property
    def baseline(self) -> str | None:
        """The name of the no-explanation baseline condition (``None`` when the spec has none)."""
        return next((c.name for c in self.conditions if c.baseline), None)

    @property
    def bundle_dir(self) -> Path:
        return self.out / "bundle"

    def condition(self, name: str) -> Condition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise UserError(
            f"the study has no condition {name!r}; conditions: {', '.join(self.condition_names)}."
        )

    @property
    def condition_names(self) -> list[str]:
        return [c.name for c in self.conditions]

    def spec_hash(self) -> str:
        """sha256 of the settings that determine the bundle's content: task, seed, model, units, design
        (but its time limits), conditions and task options. Texts, links, the database and the
        exclusion rules can change without a rebuild."""
        keep = {
            k: self.raw.get(k)
            for k in ("task", "seed", "model", "units", "design", "conditions", "task_options")
        }
        design = dict(keep["design"] or {})
        for k in ("trial_time_limit_s", "total_time_limit_s"):
            design.pop(k, None)
        keep["design"] = design
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _resolve_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def resolve_database_url(url: str, base: Path) -> str:
    """A SQLite URL with a relative file path made absolute against ``base``; other URLs unchanged."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str(_resolve_path(base, rest))
    return url


def _int_list(values: list[Any], where: str, allow_none: bool = False) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if allow_none and (v is None or (isinstance(v, str) and v.lower() in ("none", "-"))):
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"{where} must hold non-negative integers, got {v!r}.")
        out.append(int(v))
    return out


def _conditions(values: list[Any], task: str, check_methods: bool = True) -> list[Condition]:
    if not values:
        raise UserError(
            'the spec has no [[conditions]]; add at least one, e.g. [[conditions]] name = "exemplars" '
            'visualizer = "exemplars", and a baseline [[conditions]] name = "none" baseline = true.'
        )
    if check_methods:
        from neuroinspect.methods.visualizers import VISUALIZERS, load_all

        load_all()
    out: list[Condition] = []
    seen: set[str] = set()
    for i, raw in enumerate(values):
        where = f"conditions[{i}]"
        if not isinstance(raw, dict):
            raise UserError(f"{where} must be a table ([[conditions]]), got {raw!r}.")
        c = _check_table(raw, _CONDITION, where)
        name = c["name"]
        if not name:
            raise UserError(f'{where}: every condition needs a name, e.g. name = "exemplars".')
        if not _ID_RE.match(name):
            raise UserError(
                f"{where}.name {name!r} must be letters, digits, '_', '-' or '.' (it becomes part of trial ids)."
            )
        if name in seen:
            raise UserError(f"{where}.name: two conditions are called {name!r}; give each its own name.")
        seen.add(name)
        if c["baseline"]:
            if c["visualizer"]:
                raise UserError(
                    f"{where}: the baseline shows no explanation; drop visualizer = {c['visualizer']!r} "
                    "or baseline = true."
                )
            vis = None
        else:
            if not c["visualizer"]:
                raise UserError(
                    f'{where} ({name}): set visualizer = "..." (see `neuroinspect methods list --kind '
                    "visualizers`), or baseline = true for the no-explanation control."
                )
            vis = c["visualizer"]
            if check_methods:
                VISUALIZERS.get(vis)  # an unknown name is a UserError with a suggestion
                _check_settings(VISUALIZERS.get(vis), c["settings"], f"{where}.settings")
        minref = c["min_references"]
        if minref is not None and minref not in ("none", "natural"):
            raise UserError(f'{where}.min_references must be "none" or "natural", got {minref!r}.')
        out.append(
            Condition(
                name=name,
                visualizer=vis,
                settings=dict(c["settings"]),
                baseline=bool(c["baseline"]),
                label=c["label"] or ("no explanation" if c["baseline"] else name.replace("_", " ")),
                min_references=minref,
            )
        )
    baselines = [c.name for c in out if c.baseline]
    if len(baselines) > 1:
        raise UserError(f"conditions: {len(baselines)} baselines ({', '.join(baselines)}); mark only one.")
    if not baselines and task != "rating":
        raise UserError(
            'conditions: no baseline; add [[conditions]] name = "none" baseline = true (the no-explanation '
            "control every comparison needs)."
        )
    if not any(not c.baseline for c in out):
        raise UserError("conditions: only a baseline; add at least one condition with a visualizer.")
    return out


def _check_settings(cls: type, settings: Mapping[str, Any], where: str) -> None:
    import inspect

    params = inspect.signature(cls).parameters
    accepted = [k for k in params if k != "self"]
    for key in settings:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"{where}: visualizer {getattr(cls, 'name', cls.__name__)!r} has no setting {key!r}.{hint} "
                f"Its settings: {', '.join(accepted)}."
            )


def _check_dataset(name: str, live: bool) -> None:
    """An unknown dataset name is a :class:`UserError` listing the registered ones. ``live=False``
    reads the names from the cached catalog (``neuroinspect methods list``'s), which does not import
    torch and every dataset module."""
    if live:
        from neuroinspect.datasets import DATASETS

        if name not in DATASETS:
            DATASETS.get(name)  # raises with the choices
        return
    from neuroinspect.commands.methods import collect

    names = [entry[0] for entry in collect("datasets").entries]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"model.dataset: unknown dataset {name!r}.{hint} Known: {', '.join(names)}.")


def load_spec(path: str | Path, *, check_methods: bool = True) -> StudySpec:
    """Read and validate a study spec (see the module docstring); a :class:`UserError` names the key and the fix.

    ``check_methods=False`` skips checking the conditions' visualizers against the method registry
    (which imports every visualizer module: Lucent, Captum, open_clip) and reads the dataset names
    from the cached catalog: the study app and every action but ``build`` use a bundle that was built,
    and so checked, from this spec already, and start faster without them.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"study spec {path} does not exist; copy one from configs/studies/ (e.g. configs/studies/shapes-2afc.toml)."
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path} is not valid TOML: {err}.") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file; a study spec is TOML.") from None
    return spec_from_dict(raw, path, check_methods=check_methods)


def spec_from_dict(raw: Mapping[str, Any], path: str | Path, *, check_methods: bool = True) -> StudySpec:
    """A :class:`StudySpec` from a parsed TOML document; ``path`` anchors relative paths."""
    path = Path(path).expanduser().resolve()
    base = path.parent
    top = _check_table(raw, _TOP, "")
    sid = top["id"] or path.stem
    if not _ID_RE.match(sid):
        raise UserError(f"id {sid!r} must be letters, digits, '_', '-' or '.', at most 64 characters.")
    if not top["title"]:
        raise UserError('the spec needs a title, e.g. title = "Which image makes the neuron fire?".')
    task = top["task"]
    if task not in TASKS:
        close = difflib.get_close_matches(str(task), TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"task must be one of {', '.join(TASKS)}, got {task!r}.{hint}")
    if top["model"] is None:
        raise UserError(
            'the spec needs a [model] table naming the dataset, e.g. [model] dataset = "spurious-shapes".'
        )
    m = _check_table(top["model"], _MODEL, "model")
    if not m["dataset"]:
        raise UserError('model.dataset is missing; e.g. dataset = "spurious-shapes".')
    _check_dataset(m["dataset"], live=check_methods)
    ckpt = None
    if m["checkpoint"]:
        ckpt = _resolve_path(base, m["checkpoint"])
        if not ckpt.is_file():
            raise UserError(
                f"model.checkpoint {ckpt} does not exist; fix the path (relative to {base}) or drop the key to "
                "train the model during `study build`."
            )
    if m["image_size"] is not None and m["image_size"] < 8:
        raise UserError(f"model.image_size must be at least 8 pixels, got {m['image_size']}.")
    model_spec = ModelSpec(
        dataset=m["dataset"],
        root=m["root"],
        dataset_params=dict(m["dataset_params"]),
        checkpoint=ckpt,
        arch=m["arch"],
        image_size=m["image_size"],
        preset=m["preset"],
        train=dict(m["train"]),
        train_seed=int(m["train_seed"] if m["train_seed"] is not None else top["seed"]),
        device=m["device"],
    )

    u = _check_table(top["units"], _UNITS, "units")
    neurons = _int_list(u["neurons"], "units.neurons") if u["neurons"] is not None else None
    if neurons is not None and u["sample"] is not None:
        raise UserError("units: give either neurons = [...] or sample = N, not both.")
    if neurons is not None and len(set(neurons)) != len(neurons):
        raise UserError("units.neurons lists a neuron twice; list each once.")
    if u["sample"] is not None and u["sample"] < 1:
        raise UserError(f"units.sample must be at least 1, got {u['sample']}.")
    source = u["source"] or ("truth" if task == "labelling" else "finder")
    if source not in ("finder", "truth"):
        raise UserError(f'units.source must be "finder" or "truth", got {source!r}.')
    cls_idx = u["class_idx"]
    if isinstance(cls_idx, str) and cls_idx != "worst":
        raise UserError(f'units.class_idx must be a class index or "worst", got {cls_idx!r}.')
    if isinstance(cls_idx, int) and cls_idx < 0:
        raise UserError(f"units.class_idx must be >= 0, got {cls_idx}.")
    classes = _int_list(u["classes"], "units.classes", allow_none=True) if u["classes"] is not None else None
    if classes is not None and neurons is not None and len(classes) not in (1, len(neurons)):
        raise UserError(
            f"units.classes has {len(classes)} entries for {len(neurons)} neurons; give one class for all or one per neuron."
        )
    practice = (
        _int_list(u["practice_neurons"], "units.practice_neurons")
        if u["practice_neurons"] is not None
        else None
    )
    if u["truth_samples"] < 1:
        raise UserError(f"units.truth_samples must be at least 1, got {u['truth_samples']}.")
    units = UnitsSpec(
        neurons=neurons,
        sample=u["sample"],
        source=source,
        finder=u["finder"],
        finder_settings=dict(u["finder_settings"]),
        class_idx=cls_idx,
        classes=classes,
        practice_neurons=practice,
        split=u["split"],
        query_split=u["query_split"],
        truth_samples=int(u["truth_samples"]),
        condition_on_class=u["condition_on_class"],
    )

    d = _check_table(top["design"], _DESIGN, "design")
    for key in ("practice_trials", "catch_trials", "repeated_trials"):
        if d[key] < 0:
            raise UserError(f"design.{key} must be 0 or more, got {d[key]}.")
    for key in ("trials_per_condition", "n_references", "n_images", "blamed_neurons"):
        if d[key] < 1:
            raise UserError(f"design.{key} must be at least 1, got {d[key]}.")
    if d["counterbalance"] not in ("latin", "none"):
        raise UserError(f'design.counterbalance must be "latin" or "none", got {d["counterbalance"]!r}.')
    for key in ("trial_time_limit_s", "total_time_limit_s"):
        if d[key] is not None and d[key] <= 0:
            raise UserError(f"design.{key} must be a positive number of seconds (or left out), got {d[key]}.")
    if not 0 < d["query_quantile"] <= 0.5:
        raise UserError(f"design.query_quantile must be in (0, 0.5], got {d['query_quantile']}.")
    if not 32 <= d["cell_px"] <= 512:
        raise UserError(f"design.cell_px must be between 32 and 512 pixels, got {d['cell_px']}.")
    design = DesignSpec(
        trials_per_condition=d["trials_per_condition"],
        practice_trials=d["practice_trials"],
        catch_trials=d["catch_trials"],
        repeated_trials=d["repeated_trials"],
        counterbalance=d["counterbalance"],
        trial_time_limit_s=None if d["trial_time_limit_s"] is None else float(d["trial_time_limit_s"]),
        total_time_limit_s=None if d["total_time_limit_s"] is None else float(d["total_time_limit_s"]),
        n_references=d["n_references"],
        n_images=d["n_images"],
        blamed_neurons=d["blamed_neurons"],
        query_quantile=float(d["query_quantile"]),
        cell_px=d["cell_px"],
    )

    conditions = _conditions(top["conditions"] or [], task, check_methods)
    exclusions = ExclusionRules.from_mapping(top["exclusions"], where="[exclusions]")
    comp = _check_table(top["completion"], _COMPLETION, "completion")
    code = comp["code"]
    if code is not None and not re.match(r"^[A-Za-z0-9_-]{1,64}$", code):
        raise UserError(f"completion.code {code!r} must be letters, digits, '_' or '-'.")
    redirect = comp["redirect_url"]
    if redirect is not None and not redirect.startswith(("https://", "http://")):
        raise UserError(f"completion.redirect_url must start with https://, got {redirect!r}.")
    quest = _check_table(top["questionnaire"], _QUESTIONNAIRE, "questionnaire")
    topts = _check_table(top["task_options"], _TASK_OPTIONS, "task_options")
    sim = _check_table(top["simulation"], _SIMULATION, "simulation")
    if not 0 <= sim["lapse"] <= 1:
        raise UserError(f"simulation.lapse is a probability in [0, 1], got {sim['lapse']}.")
    if sim["noise"] < 0:
        raise UserError(f"simulation.noise must be >= 0, got {sim['noise']}.")
    if sim["embedding"] not in ("auto", "attributes", "pixels"):
        raise UserError(
            f'simulation.embedding must be "auto", "attributes" or "pixels", got {sim["embedding"]!r}.'
        )

    out = _resolve_path(base, top["out"]) if top["out"] else base / f"{path.stem}-study"
    db = top["database_url"] or f"sqlite:///{out / 'responses.db'}"
    db = resolve_database_url(db, base)
    if not re.match(r"^[a-z0-9+]+://", db):
        raise UserError(
            f"database_url {db!r} is not a database URL; use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB."
        )
    spec = StudySpec(
        path=path,
        id=sid,
        title=top["title"],
        task=task,
        seed=int(top["seed"]),
        out=out,
        database_url=db,
        allow_anonymous=bool(top["allow_anonymous"]),
        consent=top["consent"] or _DEFAULT_CONSENT,
        instructions=top["instructions"],
        model_spec=model_spec,
        units=units,
        design=design,
        conditions=conditions,
        exclusions=exclusions,
        completion_code=code,
        redirect_url=redirect,
        questionnaire={"ml_experience": quest["ml_experience"], "comments": quest["comments"]},
        task_options=topts,
        simulation=sim,
        raw=json.loads(json.dumps(dict(raw), default=str)),
    )
    from neuroinspect.studies.tasks import get_task

    get_task(task).validate(spec)
    check_design(spec)
    return spec


def check_design(spec: StudySpec) -> None:
    """Impossible designs that can be seen before building: more trials per condition than units."""
    d = spec.design
    u = spec.units
    if spec.task == "mistake":
        if u.neurons is not None:
            raise UserError(
                "units.neurons: a mistake-explanation study is about misclassified images, not neurons; "
                "use units.sample = N (mistakes drawn from the query split) instead."
            )
        n = u.sample if u.sample is not None else d.trials_per_condition + d.practice_trials
        if n < d.trials_per_condition:
            raise UserError(
                f"design.trials_per_condition = {d.trials_per_condition} but units.sample = {n} mistakes; "
                f"raise units.sample to at least {d.trials_per_condition} or lower trials_per_condition."
            )
        return
    if u.neurons is not None:
        main = len(u.neurons)
        if d.trials_per_condition > main:
            raise UserError(
                f"design.trials_per_condition = {d.trials_per_condition} but units.neurons lists only {main} "
                f"neuron(s): each condition needs its own unit per trial. List at least {d.trials_per_condition} "
                f"neurons or lower design.trials_per_condition to {main}."
            )
    elif u.sample is not None and d.trials_per_condition > u.sample:
        raise UserError(
            f"design.trials_per_condition = {d.trials_per_condition} but units.sample = {u.sample}: "
            f"raise units.sample to at least {d.trials_per_condition} or lower design.trials_per_condition."
        )
    if d.repeated_trials > d.trials_per_condition * len([c for c in spec.conditions]):
        raise UserError(
            f"design.repeated_trials = {d.repeated_trials} is more than the main trials a participant sees "
            f"({d.trials_per_condition * len(spec.conditions)}); lower it."
        )


_DEFAULT_CONSENT = """\
This is a research study about how people understand what artificial neural networks have learned.
You will look at images and answer short questions. It takes about 10 minutes. Your answers are stored
with your participant id, are used for research only, and you can stop at any time by closing the page.
"""
