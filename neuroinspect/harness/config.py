"""Experiment configuration: data (TOML), validated once at the edge.

An experiment trains (or loads) a classifier, finds the neurons behind a class's mistakes with every
finder, edits the decision layer with every editor, and measures the result (DESIGN.md pipeline).
``neuroinspect demo`` runs the bundled default; ``neuroinspect bench run CONFIG.toml`` runs any
config over seeds. Unknown keys are errors (a typo never silently falls back to a default).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

DEFAULT_FINDERS = ("counterfactual", "contribution", "gradient", "random")
DEFAULT_EDITORS = ("neuroinspect", "cw", "focal", "fc", "dfr", "random-neurons")
#: neuron sets edited beside every (finder, selector) choice, under every editor that uses neurons
CONTROLS = ("oracle-neurons", "random-neurons")


@dataclass
class ExperimentConfig:
    """One mitigation experiment. Every field is a TOML key of the same name.

    - ``class_idx``: the class to debug; ``None`` picks the worst class on ``finder_split`` (lowest
      accuracy; a tie goes to the lowest class index).
    - ``neurons``: the neurons to edit; ``None`` picks them automatically: the top ``num_neurons``
      entries of the main finder's ``neuron_list`` ("insufficient": features class c lacks on its
      mistakes, the paper's choice; or "excessive", or "both").
    - ``checkpoint``: load this model instead of training one; the dataset parameters stored in it
      are the defaults of ``dataset_params`` (the config's values override them), so the model is
      measured on the data it was made for.
    - ``train``: overrides of the training preset (epochs, lr, batch_size, ...).
    - ``pretrained``: ``false`` (random initialisation), ``true`` (timm's default weights), a timm tag
      or a weight file; unset means the preset's choice.
    - ``finder_settings`` / ``editor_settings``: per-method constructor arguments.
    - ``selector`` / ``selectors`` / ``selector_settings``: which of the finder's first
      ``candidate_pool`` × ``num_neurons`` neurons to edit (``top`` = the first ``num_neurons``).
    - ``pipelines``: the ``"finder+selector"`` pairs whose neurons are edited (``None``: every finder
      × every selector); ``controls``: neuron sets edited beside them (``oracle-neurons``: the top
      ``num_neurons`` by causal effect, bundled benchmarks only; ``random-neurons``).
    - ``editors`` may name a variant, ``"neuroinspect:l1"``, with its own ``editor_settings`` entry.
    - ``causal_threshold``: E_n ≥ this × max E makes a neuron causal (``methods.causal_truth``).
    - ``clip``: the CLIP spec for visualizations and the ``clip`` selector (bundled benchmarks:
      ``synthetic-clip:<dataset>``, trained on first use).
    """

    name: str = "experiment"
    dataset: str = "spurious-shapes"
    root: str | None = None
    dataset_params: dict[str, Any] = field(default_factory=dict)
    model: str = "resnet18"
    image_size: int | None = None
    pretrained: str | bool | None = None
    checkpoint: str | None = None
    preset: str = "default"
    train: dict[str, Any] = field(default_factory=dict)
    class_idx: int | None = None
    finder: str = "counterfactual"
    finders: list[str] = field(default_factory=lambda: list(DEFAULT_FINDERS))
    finder_split: str = "val"
    finder_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    neurons: list[int] | None = None
    num_neurons: int = 5
    neuron_list: str = "insufficient"
    editors: list[str] = field(default_factory=lambda: list(DEFAULT_EDITORS))
    editor_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    gamma: float | str = "auto"
    recovery_k: list[int] = field(default_factory=lambda: [5, 10, 20])
    # -- the selection step and the edit grid (finder -> selector -> editor); see harness/experiment.py
    selector: str = "top"
    selectors: list[str] = field(default_factory=lambda: ["top"])
    selector_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidate_pool: int = 3
    pipelines: list[str] | None = None
    controls: list[str] = field(default_factory=lambda: ["oracle-neurons", "random-neurons"])
    causal_threshold: float = 0.1
    clip: str | None = None
    truth_samples: int = 200
    n_boot: int = 1000
    batch_size: int = 256
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.neuron_list not in ("insufficient", "excessive", "both"):
            raise UserError(f"neuron_list = {self.neuron_list!r}; use insufficient, excessive or both.")
        if self.num_neurons < 1:
            raise UserError("num_neurons must be at least 1.")
        if isinstance(self.gamma, str) and self.gamma != "auto":
            raise UserError(f'gamma = {self.gamma!r}; use a number or "auto" (the §2.5 heuristic).')
        if self.finder not in self.finders:
            self.finders = [self.finder, *self.finders]
        if self.selector not in self.selectors:
            self.selectors = [self.selector, *self.selectors]
        if self.candidate_pool < 1:
            raise UserError(
                "candidate_pool must be at least 1 (a selector sees candidate_pool × num_neurons neurons)."
            )
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise UserError(f"controls = {bad}; choose among {', '.join(CONTROLS)}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ExperimentConfig:
        """Build a config from TOML data: unknown keys (with a "did you mean") and values of the wrong
        type (naming the key, the expected type and the value) are :class:`UserError` s."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = "; ".join(h for h in (_unknown_key_hint(k, known) for k in unknown) if h)
            raise UserError(
                f"{source}: unknown key(s) {', '.join(unknown)}"
                + (f" ({hints})" if hints else f"; valid keys are {', '.join(sorted(known))}")
                + "."
            )
        check_types(cls, data, source)
        train = data.get("train") or {}
        from neuroinspect.harness.presets import TrainConfig

        train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(train) - train_keys)
        if unknown:
            hints = "; ".join(h for h in (_unknown_key_hint(k, train_keys, False) for k in unknown) if h)
            raise UserError(
                f"{source}: unknown training setting(s) {', '.join(unknown)} in train"
                + (f" ({hints})" if hints else f"; valid ones are {', '.join(sorted(train_keys))}")
                + "."
            )
        check_types(TrainConfig, train, source, prefix="train.")
        TrainConfig().with_overrides(**train)  # values (epochs >= 1, known optimizer, ...) at load
        try:
            return cls(**data)
        except TypeError as err:
            raise UserError(f"{source}: {err}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist. See configs/ for examples.")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{path} is not valid TOML: {err}.") from None
        return cls.from_dict(data.get("experiment", data), source=str(path))

    def check_methods(self, source: str = "config") -> None:
        """Before any work: a :class:`UserError` for a finder or editor that is not registered, and for
        a ``finder_settings`` / ``editor_settings`` entry its method does not take or refuses (each
        method is built once with its settings, as the run will build it)."""
        import inspect

        from neuroinspect.methods.editors import EDITORS
        from neuroinspect.methods.editors import load_all as load_editors
        from neuroinspect.methods.finders import FINDERS
        from neuroinspect.methods.finders import load_all as load_finders

        load_finders()
        load_editors()
        for table, registry, names in (
            ("finder_settings", FINDERS, self.finders),
            ("editor_settings", EDITORS, self.editors),
        ):
            for name in names:
                cls = registry.get(name.split(":", 1)[0])  # "neuroinspect:l1": a variant of neuroinspect
                settings = getattr(self, table).get(name, {})
                accepted = set(inspect.signature(cls).parameters) - {"self", "kwargs"}
                if hasattr(cls, "hyperparameters"):
                    accepted |= set(cls.hyperparameters())
                for key in settings:
                    if key not in accepted:
                        close = difflib.get_close_matches(key, sorted(accepted), n=1)
                        hint = (
                            f"did you mean {close[0]!r}?"
                            if close
                            else f"it takes {', '.join(sorted(accepted))}"
                        )
                        raise UserError(f"{source}: {table}.{name} has no setting {key!r} ({hint}).")
                try:
                    cls(**settings)
                except UserError as err:
                    raise UserError(f"{source}: {table}.{name}: {err}") from None
                except (TypeError, ValueError) as err:
                    raise UserError(
                        f"{source}: {table}.{name} = {json.dumps(settings)} is not accepted by {name} ({err})."
                    ) from None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- validation of TOML values against the dataclass annotations ---------------------------------------
_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "unset",
}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return "a list" + (
            "" if inner is Any else f" of {_describe(inner).removeprefix('an ').removeprefix('a ')}s"
        )
    if origin is dict or tp is dict:
        return "a table (e.g. { key = value })"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return isinstance(value, dict) and (not args or all(_matches(v, args[1]) for v in value.values()))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def check_types(cls: type, data: dict[str, Any], source: str, prefix: str = "") -> None:
    """A :class:`UserError` for the first value of ``data`` whose type does not fit the annotation of
    the dataclass field of the same name: ``num_neurons = "five"`` → key, expected type, value, example."""
    hints = typing.get_type_hints(cls)
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    for key, value in data.items():
        tp = hints.get(key)
        if tp is None or _matches(value, tp):
            continue
        example = defaults.get(key)
        eg = f" (e.g. {prefix}{key} = {json.dumps(example)})" if example not in (None, [], {}, "") else ""
        raise UserError(f"{source}: {prefix}{key} = {json.dumps(value)} must be {_describe(tp)}{eg}.")


def _unknown_key_hint(key: str, known: set[str], train_hint: bool = True) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    if not train_hint:
        return ""
    from neuroinspect.harness.presets import TrainConfig

    if key in {f.name for f in dataclasses.fields(TrainConfig)}:
        return f"{key} is a training setting: put it in the train table, e.g. train = {{ {key} = ... }}"
    return ""
