"""The pipeline's steps: small functions with plain inputs and outputs, one implementation for every path.

:func:`neuroinspect.harness.experiment.run_experiment` (``demo``, ``bench run EXPERIMENT.toml``) calls
them in order for one seed; the stage nodes of :mod:`neuroinspect.harness.stages` (``bench run
SWEEP.toml``) call the same functions, one node per step, each cached by the hash of its inputs. Neither
path computes anything these functions do not, so a config and a seed give the same class, neurons
and metrics on both (``tests/test_sweep_choice.py`` checks it).

========================  ====================================================================
step                      what it computes
========================  ====================================================================
:func:`train_model`       a classifier trained on a dataset (the preset with the config's overrides)
:func:`split_features`    one split's pooled penultimate features, cached by checkpoint, data and
                          transform (the same cache entry for every path)
:func:`choose_class`      the class to debug: given, or the worst on the finder split (ties: the
                          lowest index; classes without samples are never chosen)
:func:`class_mistakes`    the class's mistakes on the finder split (dataset index, path, prediction)
:func:`run_finder`        one finder (``"name"`` or a variant ``"name:label"``) on the finder split
:func:`measure_causal`    the mistakes' causal effects E_n and the direction-matched causal truth
:func:`selection_context` what the selectors may look at (visualizations, CLIP, class prototypes)
:func:`select_pair`       one (finder, selector) neuron set from the finder's candidate pool
:func:`control_set`       one control set: ``oracle-neurons`` (top k by E_n) or ``random-neurons``
:func:`set_gamma`         the editing target γ of a set (§2.5 heuristic from its finder's ``imp``)
:func:`edit_and_measure`  one editor on one neuron set; the test metrics after the edit
:func:`edit_record`       the ``mitigation`` record of that edit (``method`` names editor, finder
                          or control, selector; ``config.source`` the neuron set)
:func:`relative_to_fc`    ``metrics.after_minus_fc`` on mitigation records (against plain ``fc``)
========================  ====================================================================

The per-list and edited-set ``neuron_recovery`` records are
:func:`neuroinspect.harness.choice.list_records` / :func:`~neuroinspect.harness.choice.edited_record`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.choice import NeuronSet, split_variant

Log = Callable[[str], None]

#: the accuracy keys that ``after_minus_fc`` compares
FC_KEYS = ("test_acc", "class_acc", "worst_class_acc", "worst_group_acc")


def _quiet(_: str) -> None:
    return None


# -- training ------------------------------------------------------------------------------------
def train_model(
    *,
    dataset: str,
    root: str | None,
    dataset_params: Mapping[str, Any],
    model: str,
    image_size: int | None,
    pretrained: bool | str | None,
    preset: str,
    train: Mapping[str, Any],
    seed: int,
    out_dir: Any,
    device: Any,
    show_progress: bool = False,
    log: Log = _quiet,
) -> tuple[Any, dict[str, Any]]:
    """Train ``model`` on ``dataset`` with training preset ``preset`` overridden by ``train`` (and by
    ``pretrained`` when given: the config's choice, ``False`` included, wins over the preset's) into
    ``out_dir`` (``best.pt`` and the training log); returns ``(Checkpoint, summary)``. ``image_size``:
    pixels per side (``None``: the preset's, else the dataset's default)."""
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.presets import get_preset
    from neuroinspect.harness.training import build_datasets, train_classifier
    from neuroinspect.runtime import seed_everything

    cfg = get_preset(preset, dataset)
    if pretrained is not None:
        cfg = cfg.with_overrides(pretrained=pretrained)
    if train:
        cfg = cfg.with_overrides(**dict(train))
    spec = get_dataset(dataset)
    params = dict(dataset_params)
    probe = spec.load(root, "val" if "val" in spec.splits else spec.splits[0], None, **params)
    size = image_size or getattr(cfg, "image_size", None) or spec.default_image_size
    seed_everything(seed)
    surface = create_model(
        model, probe.num_classes, pretrained=cfg.resolve_pretrained(model), image_size=size
    )
    train_ds, val_ds = build_datasets(dataset, root, surface.data_config, cfg, params=params)
    log(f"training {model} on {dataset} ({len(train_ds)} images, {cfg.epochs} epochs, seed {seed})")
    res = train_classifier(
        surface,
        train_ds,
        val_ds,
        cfg,
        device=device,
        seed=seed,
        out_dir=out_dir,
        show_progress=show_progress,
        class_names=train_ds.classes,
        dataset_name=dataset,
        dataset_params=params,
    )
    if res.checkpoint_path is None:
        raise UserError("training produced no checkpoint; check the training preset (epochs >= 1).")
    ckpt = load_checkpoint(res.checkpoint_path, expect_dataset=dataset)
    summary = {
        "trained": True,
        "preset": preset,
        "train_config": cfg.as_dict(),
        "best_epoch": res.best_epoch,
        "best_metrics": res.best_metrics,
        "wall_seconds": round(res.wall_seconds, 1),
        "n_train": len(train_ds),
    }
    return ckpt, summary


# -- features --------------------------------------------------------------------------------------
def split_features(
    ckpt: Any,
    dataset: Any,
    transform: Any,
    cache: Any,
    *,
    batch_size: int = 256,
    device: Any = "cpu",
    show_progress: bool = False,
) -> Any:
    """The pooled penultimate features of one split, ``features`` (N, D), with labels, groups and logits.

    ``ckpt`` is a :class:`~neuroinspect.harness.checkpoint.Checkpoint`, ``dataset`` a split loaded
    with ``transform`` (the checkpoint's evaluation transform), ``cache`` a
    :class:`~neuroinspect.harness.features.FeatureCache`. The entry's key is (checkpoint sha256,
    dataset fingerprint, :func:`~neuroinspect.harness.transforms.describe` of ``transform``): stable
    across processes, so ``run_experiment`` and a sweep's ``features`` node over the same store read
    one entry. The key is in ``meta["cache_key"]``.
    """
    from neuroinspect.harness.transforms import describe

    return cache.get_or_compute(
        ckpt.surface,
        ckpt.sha256 or "",
        dataset,
        batch_size=batch_size,
        device=device,
        transform_desc=describe(transform),
        show_progress=show_progress,
    )


# -- the class to debug ----------------------------------------------------------------------------
def choose_class(decision: nn.Linear, val_fs: Any, class_idx: int | None, *, seed: int = 0) -> int:
    """The class to debug: ``class_idx`` when given (checked against the layer's K outputs), else the
    class with the lowest accuracy of ``decision`` on ``val_fs`` (the finder split's
    :class:`~neuroinspect.harness.features.FeatureSet`, N×D features); ties go to the lowest index and a
    class without samples is never chosen."""
    from neuroinspect.harness.metrics import classification_metrics

    K = decision.out_features
    if class_idx is not None:
        c = int(class_idx)
        if not 0 <= c < K:
            raise UserError(f"class_idx {c} is out of range: the model has {K} classes, 0..{K - 1}.")
        return c
    with torch.no_grad():
        preds = decision(val_fs.features).argmax(1).numpy()
    m = classification_metrics(preds, val_fs.labels.numpy(), num_classes=K, n_boot=0, seed=seed)
    per_class = [np.inf if v is None else v for v in m["per_class_acc"]]
    return int(np.argmin(per_class))  # the first minimum: ties go to the lowest index


def worst_class_accuracy(decision: nn.Linear, val_fs: Any, class_idx: int) -> float:
    """Accuracy (0..1) of ``decision`` on ``val_fs``'s samples of ``class_idx`` (for the log line)."""
    with torch.no_grad():
        preds = decision(val_fs.features).argmax(1)
    m = val_fs.labels == class_idx
    return float((preds[m] == class_idx).float().mean()) if bool(m.any()) else float("nan")


def train_group_counts(train_fs: Any, num_groups: int | None) -> list[int] | None:
    """Training samples per group (for the train-weighted mean accuracy), or ``None`` without groups."""
    from neuroinspect.harness.metrics import group_counts

    if train_fs.groups is None:
        return None
    return [int(c) for c in group_counts(train_fs.groups.numpy(), num_groups or None)]


def class_mistakes(val_fs: Any, class_idx: int) -> list[dict[str, Any]]:
    """Samples of ``class_idx`` the model gets wrong on ``val_fs``: ``{"index", "path", "pred"}`` each, in
    dataset order (``index``: the dataset index; ``pred``: the predicted class)."""
    mask = (val_fs.labels == class_idx) & (val_fs.preds != class_idx)
    return [
        {"index": int(i), "path": val_fs.paths[j], "pred": int(val_fs.preds[j])}
        for j, i in enumerate(val_fs.indices.tolist())
        if bool(mask[j])
    ]


# -- finders and the causal truth ------------------------------------------------------------------
def run_finder(
    name: str,
    settings: Mapping[str, Any],
    decision: nn.Linear,
    val_fs: Any,
    class_idx: int,
    *,
    seed: int,
    show_progress: bool = False,
) -> Any:
    """One finder (``name`` may be a variant, ``"counterfactual:x"``) on the finder split's features;
    its :class:`~neuroinspect.methods.finders.FinderResult`."""
    from neuroinspect.methods.finders import FINDERS
    from neuroinspect.methods.finders import load_all as load_finders

    load_finders()
    finder = FINDERS.get(split_variant(name)[0])(**dict(settings))
    return finder.find(decision, val_fs, class_idx, seed=seed, show_progress=show_progress)


def measure_causal(
    surface: Any,
    dataset: Any,
    transform: Any,
    decision: nn.Linear,
    class_idx: int,
    mistakes: Sequence[Mapping[str, Any]],
    *,
    threshold: float,
    batch_size: int = 256,
    device: Any = "cpu",
    show_progress: bool = False,
) -> tuple[Any, Any]:
    """``(MistakeEffects, CausalTruth)`` of the class's ``mistakes`` (:func:`class_mistakes`) on a bundled
    benchmark's finder split ``dataset`` (eval ``transform``): each mistake re-rendered on the other
    spurious values; E_n in logit units, causal when E_n ≥ ``threshold`` × max E."""
    from neuroinspect.methods.causal_truth import causal_truth, mistake_effects

    effects = mistake_effects(
        surface,
        dataset,
        transform,
        decision,
        class_idx,
        [int(m["index"]) for m in mistakes],
        [int(m["pred"]) for m in mistakes],
        batch_size=batch_size,
        device=device,
        show_progress=show_progress,
    )
    return effects, causal_truth(effects, threshold)


# -- the selection step ----------------------------------------------------------------------------
def selection_context(
    *,
    surface: Any,
    decision: nn.Linear,
    class_idx: int,
    class_names: Sequence[str],
    val_fs: Any,
    finder_ds: Any,
    benchmark: bool,
    train_ds: Any,
    selectors: Mapping[str, Any],
    clip: Any,
    seed: int,
    device: Any,
    show_progress: bool = False,
    log: Log = _quiet,
) -> Any:
    """The :class:`~neuroinspect.methods.selectors.SelectionContext` the selectors read: class prototypes
    (K×D mean pooled features of ``val_fs``), the finder split ``finder_ds``, the benchmark's spurious
    attribute names (``benchmark``), a shared :class:`NeuronVisuals` when a selector reads pictures, the
    loaded ``clip`` (or ``None``) and the benchmark's train split (``train_ds``) for ``concept``."""
    from neuroinspect.harness.choice import class_means
    from neuroinspect.methods.selectors import SelectionContext

    visual = any(getattr(sel, "uses_visualizations", False) for sel in selectors.values())
    attrs = None
    if benchmark:
        from neuroinspect.datasets import groundtruth

        attrs = groundtruth.spurious_names(finder_ds)
    prompts = list(getattr(finder_ds, "prompts", class_names))
    return SelectionContext(
        surface=surface,
        decision=decision,
        class_idx=class_idx,
        class_names=list(class_names),
        prompts=prompts,
        class_means=class_means(val_fs.features, val_fs.labels, decision.out_features),
        dataset=finder_ds,
        attributes=attrs,
        visuals=neuron_visuals(
            surface,
            class_idx,
            finder_ds,
            class_names,
            clip,
            seed=seed,
            device=device,
            show_progress=show_progress,
        )
        if visual
        else None,
        clip=clip,
        benchmark_train=train_ds if benchmark else None,
        seed=seed,
        device=device,
        show_progress=show_progress,
        log=log,
    )


def neuron_visuals(
    surface: Any,
    class_idx: int,
    finder_ds: Any,
    class_names: Sequence[str],
    clip: Any,
    *,
    seed: int,
    device: Any,
    show_progress: bool = False,
) -> Any:
    """The :class:`~neuroinspect.methods.selectors.NeuronVisuals` the visual selectors read: pictures of
    the finder split ``finder_ds``'s class ``class_idx``, with its CLIP prompts (``class_names`` where
    it has none). A sweep's ``render`` node builds the same one, so its pictures are the select node's."""
    from neuroinspect.methods.selectors import NeuronVisuals

    return NeuronVisuals(
        surface,
        class_idx,
        dataset=finder_ds,
        class_names=list(getattr(finder_ds, "prompts", class_names)),
        clip=clip,
        seed=seed,
        device=device,
        show_progress=show_progress,
    )


def candidates(fres: Any, neuron_list: str, k: int, candidate_pool: int) -> list[int]:
    """The first ``candidate_pool × k`` neurons of the finder's ``neuron_list`` (:meth:`FinderResult.ordered`)."""
    return [int(n) for n in fres.ordered(neuron_list)[: int(candidate_pool) * int(k)]]


def select_pair(
    finder: str,
    fres: Any,
    selector_name: str,
    selector: Any,
    ctx: Any,
    *,
    k: int,
    neuron_list: str,
    candidate_pool: int,
    log: Log = _quiet,
) -> NeuronSet:
    """The neuron set ``"<finder>+<selector>"``: ``selector`` (an instance) chooses at most ``k`` of the
    finder's candidates (:func:`candidates`); ``ctx``: :func:`selection_context` (``None`` for ``top``)."""
    cand = candidates(fres, neuron_list, k, candidate_pool)
    scores = (
        fres.scores
        if neuron_list == "both"
        else (fres.insufficient_scores if neuron_list == "insufficient" else fres.excessive_scores)
    )
    if ctx is not None:
        ctx.finder_scores = {int(n): float(scores[n]) for n in cand}
    sel = selector.select(cand, int(k), ctx)
    key = f"{finder}+{selector_name}"
    log(
        f"{key}: {len(sel.neurons)} neuron(s) {sel.neurons}"
        + (f" of {len(cand)} candidates" if selector_name != "top" else "")
    )
    return NeuronSet(
        key,
        finder,
        selector_name,
        [int(n) for n in sel.neurons],
        imp_finder=finder,
        selection=sel,
        candidates=cand,
    )


def control_set(
    control: str, *, k: int, num_features: int, seed: int, effects: Any, imp_finder: str
) -> NeuronSet | None:
    """A control neuron set: ``oracle-neurons`` (the ``k`` neurons with the largest positive E_n; ``None``
    without causal effects, i.e. off the bundled benchmarks) or ``random-neurons`` (``k`` of the
    ``num_features`` neurons, drawn with ``seed``). ``imp_finder``: whose ``imp`` gives its γ."""
    from neuroinspect.methods.editors.baselines import random_neurons

    if control == "oracle-neurons":
        if effects is None:
            return None
        neurons = effects.oracle(int(k))
    elif control == "random-neurons":
        neurons = random_neurons(int(num_features), [], int(seed), int(k))
    else:
        raise UserError(f"unknown control {control!r}; use oracle-neurons or random-neurons.")
    return NeuronSet(control, control, None, [int(n) for n in neurons], imp_finder=imp_finder)


def set_gamma(fres: Any, neurons: Sequence[int], gamma: float | str) -> float:
    """γ for editing ``neurons``: the number given, or (``"auto"``) the §2.5 heuristic from the ``imp`` of
    ``fres`` (the set's finder; the main finder for controls); 1.0 for an empty set."""
    if gamma != "auto":
        return float(gamma)
    return float(fres.gamma_for(list(neurons))) if neurons else 1.0


# -- editing ---------------------------------------------------------------------------------------
def edit_and_measure(
    editor: str,
    settings: Mapping[str, Any],
    decision: nn.Linear,
    train_fs: Any,
    val_fs: Any,
    test_fs: Any,
    class_idx: int,
    neurons: Sequence[int] | None,
    *,
    gamma: float | None,
    seed: int,
    n_boot: int,
    train_counts: list[int] | None,
    show_progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """One editor (``editor`` may be a variant ``"neuroinspect:l1"``) on the cached features; returns
    ``(EditResult, after)`` with ``after`` the test metrics of the edited layer (:func:`measure`).

    ``neurons``: the set to edit (``None`` for editors that use no neurons); an empty set leaves the layer
    unchanged. ``gamma``: the editing target, given to editors that take one unless ``settings`` does.
    """
    from neuroinspect.harness.choice import no_edit
    from neuroinspect.harness.mitigation import measure
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.methods.editors import load_all as load_editors

    load_editors()
    base = split_variant(editor)[0]
    cls = EDITORS.get(base)
    if cls.uses_group_labels and train_fs.groups is None:
        raise UserError(f"editor {editor} needs group labels; the dataset has none.")
    settings = dict(settings)
    if gamma is not None and "gamma" in cls.hyperparameters() and "gamma" not in settings:
        settings["gamma"] = float(gamma)
    ed = cls(**settings)
    uses = cls.uses_neurons
    if uses and not neurons:
        edit = no_edit(base, decision, class_idx, ed.settings())
    else:
        edit = ed.edit(
            decision,
            train_fs,
            val_fs,
            class_idx,
            [int(n) for n in neurons or []] if uses else [],
            seed=seed,
            show_progress=show_progress,
        )
    after = measure(
        edit.decision, test_fs, class_idx, train_group_counts=train_counts, n_boot=n_boot, seed=seed
    )
    return edit, after


def edit_record(
    edit: Any,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    editor: str,
    ns: NeuronSet | None,
    dataset: str,
    model: str,
    seed: int,
    experiment: str,
    dataset_params: Mapping[str, Any],
    k: int,
    neuron_list: str,
    gamma_auto: bool,
    provenance: Any,
    extra_config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The ``mitigation`` record of one edit. ``ns``: the neuron set edited (``None`` for editors that
    use no neurons: then ``method.finder = "none"``); ``config.variant``: the editor's variant label,
    ``config.source``: the set's key, ``config.k`` / ``config.neuron_list``: the selection settings."""
    from neuroinspect.harness.mitigation import mitigation_record

    uses = ns is not None
    variant = split_variant(editor)[1]
    return mitigation_record(
        edit,
        before,
        after,
        dataset=dataset,
        model=model,
        seed=seed,
        finder=split_variant(ns.finder)[0] if ns is not None else "none",
        selector=ns.selector if ns is not None else None,
        provenance=provenance,
        config={
            "experiment": experiment,
            "dataset_params": dict(dataset_params),
            "variant": variant,
            "source": ns.key if ns is not None else None,
            "k": int(k) if uses else None,
            "finder_variant": split_variant(ns.finder)[1] if ns is not None else None,
            "neuron_list": neuron_list if uses else None,
            **dict(extra_config or {}),
        },
        gamma_rule="auto" if gamma_auto and uses else None,
        run_id=run_id,
    )


def is_plain_fc(rec: Mapping[str, Any]) -> bool:
    """Whether a record is the plain ``fc`` edit (no variant): the baseline of ``after_minus_fc``."""
    return (
        rec.get("task") == "mitigation"
        and rec["method"].get("editor") == "fc"
        and not rec["config"].get("variant")
    )


def relative_to_fc(records: Iterable[dict[str, Any]], fc_after: Mapping[str, Any] | None = None) -> None:
    """Add ``metrics.after_minus_fc`` (after − the plain ``fc`` edit's after, per key of :data:`FC_KEYS`,
    accuracy units 0..1) to every mitigation record: every edit is reported against plain retraining as
    well as against the original model. ``fc_after``: the ``fc`` record's ``metrics.after``; by default
    taken from the first plain ``fc`` record among ``records`` (nothing is added without one)."""
    records = list(records)
    if fc_after is None:
        fc = next((r for r in records if is_plain_fc(r)), None)
        if fc is None:
            return
        fc_after = fc["metrics"]["after"]
    for r in records:
        if r["task"] != "mitigation":
            continue
        after = r["metrics"]["after"]
        r["metrics"]["after_minus_fc"] = {
            key: (
                None
                if after.get(key) is None or fc_after.get(key) is None
                else float(after[key]) - float(fc_after[key])
            )
            for key in FC_KEYS
        }


__all__ = [
    "FC_KEYS",
    "candidates",
    "choose_class",
    "class_mistakes",
    "control_set",
    "edit_and_measure",
    "edit_record",
    "is_plain_fc",
    "measure_causal",
    "relative_to_fc",
    "run_finder",
    "select_pair",
    "selection_context",
    "set_gamma",
    "train_group_counts",
    "train_model",
    "worst_class_accuracy",
]
