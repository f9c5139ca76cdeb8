"""Training presets: named, validated :class:`TrainConfig` values keyed by (preset, dataset).

- ``paper``: the reference's settings (spec §6.3 for Flowers102 / Food101 / Waterbirds, §7 for
  MetaShift), with the reference's transforms (``ref_transforms=True``) and the pretrained tags
  that reproduce timm 0.6.12's defaults (spec bug 30).
- ``default``: sane settings per dataset (AdamW, cosine to a small floor, light augmentation,
  the timm eval transform); for the bundled benchmarks a cheap random-init recipe that trains a
  ResNet-18 at the benchmark's size within a few CPU minutes (``neuroinspect demo``).

``get_preset(name, dataset)`` looks up ``(name, dataset)`` and then ``(name, "*")``; anything else
is a :class:`UserError` listing what exists. Command-line overrides go through
:meth:`TrainConfig.with_overrides`, which validates them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from neuroinspect.errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "none")
SELECTIONS = ("val_acc", "val_worst_class_acc", "val_worst_group_acc", "last")
AUGMENTS = ("none", "light", "ref", "timm")
FINETUNES = ("all", "head")

#: timm 1.0 renamed the default pretrained weights (spec bug 30); these tags are the weights that
#: timm 0.6.12 loaded for the reference's ``timm.create_model(name, pretrained=True)``.
PAPER_PRETRAINED_TAGS: dict[str, str] = {
    "resnet50": "resnet50.a1_in1k",
    "resnet18": "resnet18.tv_in1k",
    "vit_base_patch16_224": "vit_base_patch16_224.augreg_in21k_ft_in1k",
    "vit_base_patch16_224_dino": "vit_base_patch16_224.dino",
}


#: What each ``augment`` value does to a training image (``neuroinspect.harness.transforms``).
AUGMENT_HELP = {
    "none": "none (the evaluation transform)",
    "light": "a random shift on the bundled benchmarks (crop with reflect padding, no flip); on real "
    "data a random resized crop (scale 0.7-1) and a horizontal flip",
    "ref": "the reference's (a random affine of 15 degrees and a 15% shift; Waterbirds: a random "
    "resized crop and a horizontal flip), ImageNet normalization",
    "timm": "timm's training transform (random resized crop, horizontal flip, colour jitter)",
}


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a classifier training run.

    ``lr`` is the peak learning rate; with ``scheduler="cosine"`` it decays per iteration to
    ``eta_min`` over ``epochs × batches-per-epoch`` steps (only when ``lr > eta_min``, as in ref).
    ``selection`` picks the checkpoint: the epoch with the strictly best validation metric
    (the first epoch included, spec bug 20) whose value also exceeds ``min_val_metric`` (the reference's
    0.5 / 0.7 thresholds; 0 by default). ``patience`` stops after that many epochs without a new
    best (``None``: never). ``finetune="head"`` trains only the decision layer with the backbone
    frozen in eval mode; ``ref_bn_drift=True`` keeps the backbone in train mode anyway (the
    reference's MetaShift quirk, spec bug 19). ``pretrained``: ``False`` (random init), ``True``
    (timm's default tag, or the parity tag of :data:`PAPER_PRETRAINED_TAGS` when ``ref_transforms``),
    a timm tag or a weight-file path. ``image_size`` ``None`` means the dataset's default size.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    eta_min: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    selection: str = "val_acc"
    min_val_metric: float = 0.0
    patience: int | None = None
    augment: str = "none"
    ref_transforms: bool = False
    finetune: str = "all"
    ref_bn_drift: bool = False
    pretrained: bool | str = False
    image_size: int | None = None
    model: str | None = None
    grad_clip: float | None = None
    num_workers: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first bad field."""

        def bad(field: str, why: str) -> None:
            raise UserError(f"training setting {field}={getattr(self, field)!r} is invalid: {why}.")

        from neuroinspect.harness.config import check_types

        check_types(TrainConfig, self.as_dict(), "training settings")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            bad("epochs", "use a positive integer")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad("batch_size", "use a positive integer")
        if not self.lr > 0:
            bad("lr", "the learning rate must be > 0")
        if self.eta_min < 0:
            bad("eta_min", "must be >= 0")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"choose one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            bad("scheduler", f"choose one of {', '.join(SCHEDULERS)}")
        if self.warmup_epochs < 0:
            bad("warmup_epochs", "must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "must be in [0, 1)")
        if self.selection not in SELECTIONS:
            bad("selection", f"choose one of {', '.join(SELECTIONS)}")
        if self.patience is not None and self.patience < 1:
            bad("patience", "use a positive number of epochs, or leave it unset")
        if self.augment not in AUGMENTS:
            bad("augment", f"choose one of {', '.join(AUGMENTS)}")
        if self.finetune not in FINETUNES:
            bad("finetune", f"choose one of {', '.join(FINETUNES)}")
        if self.image_size is not None and self.image_size < 8:
            bad("image_size", "use at least 8 pixels")
        if self.grad_clip is not None and not self.grad_clip > 0:
            bad("grad_clip", "must be > 0 or unset")

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the non-``None`` ``overrides`` applied (validated); unknown keys are an error.

        When a setting changes, ``description`` is rewritten from the values (:meth:`summary`) so that
        it never describes the preset's recipe for a run that does something else.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UserError(
                f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}."
            )
        given = {k: v for k, v in overrides.items() if v is not None}
        out = dataclasses.replace(self, **given)
        changed = [k for k, v in given.items() if k != "description" and getattr(self, k) != v]
        if changed and "description" not in given:
            out = dataclasses.replace(out, description=out.summary())
        return out

    def summary(self) -> str:
        """The recipe in words, from the values: initialisation, optimizer and schedule, epochs, batch,
        augmentation, e.g. "random initialisation; adamw, lr 0.002 cosine to 1e-05, warm-up 0.5
        epochs; 6 epochs of batch 64; augmentation: a random shift (crop with reflect padding)"."""
        if self.pretrained is False:
            init = "random initialisation"
        elif self.pretrained is True:
            init = "pretrained timm weights (the model's default tag)"
        else:
            init = f"pretrained weights {self.pretrained}"
        sched = (
            f" cosine to {self.eta_min:g}"
            if self.scheduler == "cosine" and self.lr > self.eta_min
            else " constant"
        )
        warm = f", warm-up {self.warmup_epochs:g} epochs" if self.warmup_epochs else ""
        what = "the decision layer only" if self.finetune == "head" else "every layer"
        return (
            f"{init}; {self.optimizer}, lr {self.lr:g}{sched}{warm}; {self.epochs} epochs of batch "
            f"{self.batch_size}, training {what}; augmentation: {AUGMENT_HELP[self.augment]}"
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolve_pretrained(self, arch: str) -> bool | str:
        """The value to pass to ``create_model(pretrained=...)`` for ``arch``."""
        if self.pretrained is True and self.ref_transforms:
            return PAPER_PRETRAINED_TAGS.get(arch, True)
        return self.pretrained


_PRESETS: dict[tuple[str, str], TrainConfig] = {}
_PRESET_HELP: dict[str, str] = {
    "default": "fine-tune pretrained weights (AdamW, cosine, light augmentation) on real data; the "
    "cheap random-init recipe on the bundled benchmarks",
    "paper": "the reference's settings (spec §6.3, §7) with its transforms and pretrained tags",
    "scratch-64": "any dataset, offline: a random-init ResNet-18 at 64 px with the bundled benchmarks' "
    "recipe (6 epochs, AdamW lr 2e-3, warm-up 0.5 epochs, light augmentation)",
}


def register_preset(name: str, dataset: str, config: TrainConfig) -> TrainConfig:
    """Add ``config`` as preset ``name`` for ``dataset`` (``"*"``: any dataset without its own entry)."""
    _PRESETS[(name, dataset)] = config
    return config


def preset_names() -> list[str]:
    return sorted({name for name, _ in _PRESETS})


def preset_datasets(name: str) -> list[str]:
    return sorted(ds for n, ds in _PRESETS if n == name)


def get_preset(name: str, dataset: str) -> TrainConfig:
    """The :class:`TrainConfig` of preset ``name`` for ``dataset``; a :class:`UserError` otherwise."""
    if (name, dataset) in _PRESETS:
        return _PRESETS[(name, dataset)]
    if (name, "*") in _PRESETS:
        return _PRESETS[(name, "*")]
    if name not in preset_names():
        raise UserError(f"unknown training preset {name!r}; choose one of {', '.join(preset_names())}.")
    raise UserError(
        f"preset {name!r} has no settings for dataset {dataset!r} (it covers {', '.join(preset_datasets(name))}). "
        "Use --preset default, or give the hyper-parameters explicitly."
    )


# -- paper (spec §6.3 and §7) -----------------------------------------------------------------------
# Fine-tune everything from ImageNet weights with Adam and a per-iteration cosine schedule.
register_preset(
    "paper",
    "flowers102",
    TrainConfig(
        epochs=30,
        batch_size=128,
        lr=2e-3,
        eta_min=1e-4,
        weight_decay=0.0,
        optimizer="adam",
        scheduler="cosine",
        selection="val_acc",
        min_val_metric=0.5,
        augment="ref",
        ref_transforms=True,
        finetune="all",
        pretrained=True,
        image_size=224,
        model="resnet50",
        description="spec §6.3 Flowers102 row (README table: 30 epochs)",
    ),
)
register_preset(
    "paper",
    "food101",
    TrainConfig(
        epochs=30,
        batch_size=128,
        lr=2e-3,
        eta_min=1e-4,
        weight_decay=0.0,
        optimizer="adam",
        scheduler="cosine",
        selection="val_acc",
        min_val_metric=0.5,
        augment="ref",
        ref_transforms=True,
        finetune="all",
        pretrained=True,
        image_size=224,
        model="resnet50",
        description="spec §6.3 Food101 row",
    ),
)
register_preset(
    "paper",
    "waterbirds",
    TrainConfig(
        # lr == eta_min: the reference's scheduler is then off (it runs only if lr > eta_min).
        epochs=50,
        batch_size=32,
        lr=1e-4,
        eta_min=1e-4,
        weight_decay=1e-4,
        optimizer="adam",
        scheduler="none",
        selection="val_acc",
        min_val_metric=0.5,
        augment="none",
        ref_transforms=True,
        finetune="all",
        pretrained=True,
        image_size=224,
        model="resnet50",
        description="spec §6.3 Waterbirds row (DRO loader, no reweighting, no augmentation)",
    ),
)
register_preset(
    "paper",
    "metashift",
    TrainConfig(
        # fc only, Adam, batch 8, 20 epochs; the reference leaves the model in train mode (BN drift).
        epochs=20,
        batch_size=8,
        lr=2e-3,
        eta_min=2e-4,
        weight_decay=0.0,
        optimizer="adam",
        scheduler="cosine",
        selection="val_acc",
        min_val_metric=0.7,
        augment="none",
        ref_transforms=True,
        finetune="head",
        ref_bn_drift=True,
        pretrained=True,
        image_size=224,
        model="resnet18",
        description="spec §7 MetaShift confounded model",
    ),
)

# -- default --------------------------------------------------------------------------------------
_REAL_DEFAULT = TrainConfig(
    epochs=20,
    batch_size=64,
    lr=5e-4,
    eta_min=1e-6,
    weight_decay=0.05,
    optimizer="adamw",
    scheduler="cosine",
    warmup_epochs=1.0,
    label_smoothing=0.0,
    selection="val_acc",
    augment="light",
    finetune="all",
    pretrained=True,
    image_size=224,
    model="resnet50",
    description="fine-tune a pretrained timm model with AdamW, cosine decay, light augmentation",
)
register_preset("default", "*", _REAL_DEFAULT)
register_preset("default", "flowers102", _REAL_DEFAULT.with_overrides(epochs=30, batch_size=32, lr=1e-3))
register_preset("default", "food101", _REAL_DEFAULT.with_overrides(epochs=15, batch_size=128, lr=1e-3))
register_preset(
    "default",
    "waterbirds",
    # Worst-class selection needs no group labels at validation time (SubpopBench's criterion).
    _REAL_DEFAULT.with_overrides(
        epochs=30, batch_size=32, lr=1e-4, weight_decay=1e-4, selection="val_worst_class_acc"
    ),
)
register_preset(
    "default",
    "metashift",
    _REAL_DEFAULT.with_overrides(epochs=20, batch_size=16, lr=1e-3, model="resnet18"),
)

# Bundled benchmarks: random-init ResNet-18 at the generated size, a few CPU minutes for ~2-3k images.
_BENCHMARK_DEFAULT = TrainConfig(
    epochs=6,
    batch_size=64,
    lr=2e-3,
    eta_min=1e-5,
    weight_decay=0.05,
    optimizer="adamw",
    scheduler="cosine",
    warmup_epochs=0.5,
    selection="val_acc",
    augment="light",
    finetune="all",
    pretrained=False,
    model="resnet18",
    image_size=None,
    description="cheap random-init recipe for the bundled benchmarks (CPU minutes)",
)
register_preset("default", "spurious-shapes", _BENCHMARK_DEFAULT.with_overrides(image_size=64))
register_preset("default", "colored-digits", _BENCHMARK_DEFAULT.with_overrides(image_size=32))
# The same recipe for any dataset (a Waterbirds-format folder of one's own, say): no pretrained
# weights to fetch, minutes on a CPU for a few thousand images.
register_preset("scratch-64", "*", _BENCHMARK_DEFAULT.with_overrides(image_size=64))


def describe_presets() -> str:
    """A short text listing of every preset and the datasets it covers (``*``: any dataset)."""
    import textwrap

    lines = []
    for name in preset_names():
        covers = ", ".join("any dataset" if d == "*" else d for d in preset_datasets(name))
        text = f"{name}: {_PRESET_HELP.get(name, '')} [{covers}]"
        lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def describe_augmentations() -> str:
    """What each ``--augment`` value does, one line each."""
    import textwrap

    return "\n".join(
        textwrap.fill(f"{name}: {text}", 100, initial_indent="  ", subsequent_indent="      ")
        for name, text in AUGMENT_HELP.items()
    )


__all__ = [
    "PAPER_PRETRAINED_TAGS",
    "TrainConfig",
    "describe_presets",
    "get_preset",
    "preset_datasets",
    "preset_names",
    "register_preset",
]
