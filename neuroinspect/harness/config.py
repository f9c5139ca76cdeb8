"""Experiment configuration: data (TOML), validated once at the edge.

An experiment trains (or loads) a classifier, finds the neurons behind a class's mistakes with every
finder, edits the decision layer with every editor, and measures the result (DESIGN.md pipeline).
``neuroinspect demo`` runs the bundled default; ``neuroinspect bench run CONFIG.toml`` runs any
config over seeds. Unknown keys are errors (a typo never silently falls back to a default).
"""

from __future__ import annotations

import dataclasses
import tomllib
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

    - ``class_idx``: the class to debug; ``None`` picks the worst class on the validation split.
    - ``neurons``: the neurons to edit; ``None`` picks them automatically: the top ``num_neurons``
      entries of the main finder's ``neuron_list`` ("insufficient": features class c lacks on its
      mistakes, the paper's choice; or "excessive", or "both").
    - ``train``: overrides of the training preset (epochs, lr, batch_size, ...).
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
    pretrained: str | bool = False
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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"{source}: unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(sorted(known))}."
            )
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

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
