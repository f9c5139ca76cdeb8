"""The neuron-choice stages of an experiment: finder → selector → editor, scored against causal truth.

:func:`~neuroinspect.harness.experiment.run_experiment` calls these in order; each takes plain inputs
and returns plain data (data flows one way):

1. :func:`select_sets`: every ``"finder+selector"`` pipeline of the config hands its selector the
   first ``candidate_pool × num_neurons`` neurons of the finder's ``neuron_list`` (in
   :meth:`FinderResult.ordered` order) and keeps what the selector chooses
   (:func:`~neuroinspect.harness.pipeline.select_pair`); the controls are added beside them
   (:func:`~neuroinspect.harness.pipeline.control_set`): ``oracle-neurons`` (the top
   ``num_neurons`` by causal effect on the mistakes, bundled benchmarks only) and ``random-neurons``
   (seeded, uniform).
2. :func:`causal_records`: per finder, one ``neuron_recovery`` record per list (``insufficient``,
   ``excessive``; :func:`list_records`) against that list's causal truth, and one per edited set
   (``config.list = "edited"``; :func:`edited_record`), which also counts the core neurons the
   selector let through.
3. every editor of the config on every neuron set (editors that use no neurons run once;
   :func:`~neuroinspect.harness.pipeline.edit_and_measure`, ``edit_record``); each edit becomes a
   ``mitigation`` record whose ``method`` names the editor, the finder (or control) and the
   selector, and whose ``config.source`` / ``config.variant`` say which cell of the grid it is. An
   empty selection is not topped up: the layer is left unchanged for that set (:func:`no_edit`).

The sweep's stage nodes (:mod:`neuroinspect.harness.stages`) call the same per-pair, per-set and
per-finder functions, one node each.

Editor and finder entries may carry a variant label, ``"neuroinspect:l1"``: the part before ``:``
is the registry name, the whole string keys ``editor_settings`` / ``finder_settings``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from neuroinspect.errors import UserError

Log = Callable[[str], None]


def split_variant(name: str) -> tuple[str, str | None]:
    """``"neuroinspect:l1"`` → ``("neuroinspect", "l1")``; ``"fc"`` → ``("fc", None)``."""
    base, sep, label = str(name).partition(":")
    return base, (label if sep and label else None)


@dataclass
class NeuronSet:
    """One set of neurons to edit: a pipeline's choice, a control, or the user's own.

    ``key``: ``"<finder>+<selector>"``, a control name or ``"manual"``; ``finder`` / ``selector``: the
    methods that chose it (``selector`` is ``None`` for controls); ``imp_finder``: the finder whose
    ``imp`` gives the editing target γ; ``selection``: the selector's full output.
    """

    key: str
    finder: str
    selector: str | None
    neurons: list[int]
    imp_finder: str | None = None
    selection: Any = None
    candidates: list[int] = field(default_factory=list)

    def method(self) -> dict[str, str]:
        out = {"finder": self.finder}
        if self.selector:
            out["selector"] = self.selector
        return out


def resolve_pipelines(cfg: Any) -> list[tuple[str, str]]:
    """The (finder, selector) pairs to edit: ``cfg.pipelines`` (``"finder+selector"`` strings) or every
    finder × every selector; the main pair (``cfg.finder``, ``cfg.selector``) comes first."""
    if cfg.pipelines is None:
        pairs = [(f, s) for f in cfg.finders for s in cfg.selectors]
    else:
        pairs = []
        for p in cfg.pipelines:
            f, sep, s = str(p).partition("+")
            if not sep or not f or not s:
                raise UserError(
                    f'pipelines entry {p!r} must be "finder+selector", e.g. "counterfactual+clip".'
                )
            if f not in cfg.finders:
                raise UserError(
                    f"pipelines entry {p!r} names finder {f!r}, which is not in finders = {cfg.finders}."
                )
            if s not in cfg.selectors:
                raise UserError(
                    f"pipelines entry {p!r} names selector {s!r}, which is not in selectors = {cfg.selectors}."
                )
            pairs.append((f, s))
    main = (cfg.finder, cfg.selector)
    return [main] + [p for p in dict.fromkeys(pairs) if p != main]


def make_selectors(cfg: Any, interactive: bool | None = None) -> dict[str, Any]:
    """One selector instance per name in ``cfg.selectors`` (settings checked now, before any training)."""
    from neuroinspect.methods.selectors import SELECTORS

    out = {}
    for name in cfg.selectors:
        base, _ = split_variant(name)
        cls = SELECTORS.get(base)
        try:
            sel = cls(**cfg.selector_settings.get(name, {}))
        except TypeError as err:
            raise UserError(f"selector_settings.{name}: {err}") from None
        check = getattr(sel, "check", None)
        if callable(check):
            check(interactive)
        out[name] = sel
    return out


def visual_request(selector: Any) -> dict[str, Any] | None:
    """What a visual selector asks :meth:`NeuronVisuals.get` for: ``{"method", "settings",
    "conditioned"}``; ``None`` for a selector that does not look at pictures."""
    if not getattr(selector, "uses_visualizations", False):
        return None
    return {
        "method": selector.visualizer,
        "settings": dict(selector.visualizer_settings),
        "conditioned": bool(getattr(selector, "conditioned", True)),
    }


def clip_guided(request: Mapping[str, Any] | None) -> bool:
    """Whether the pictures of a :func:`visual_request` are optimized under CLIP guidance."""
    return (
        request is not None
        and request["method"] == "clip_illusion"
        and bool(request["settings"].get("use_clip", True))
    )


def needs_clip(selectors: Mapping[str, Any]) -> bool:
    """Whether any selector reads CLIP or CLIP-guided images."""
    return any(
        getattr(sel, "uses_clip", False) or clip_guided(visual_request(sel)) for sel in selectors.values()
    )


def resolve_clip(cfg: Any, device: Any, log: Log, show_progress: bool = True) -> Any:
    """The CLIP model named by ``cfg.clip``; for a bundled benchmark with default parameters and no
    ``clip`` given, its synthetic CLIP (``neuroinspect clip train``), trained once and cached."""
    from neuroinspect.clip.loader import default_synthetic_path, load_clip
    from neuroinspect.methods.concept_recovery import is_benchmark

    spec = cfg.clip
    if spec is None:
        if not is_benchmark(cfg.dataset):
            raise UserError(
                'the selectors of this config need a CLIP: set clip = "ViT-B-32:laion2b_s34b_b79k" (or another '
                "open_clip ARCH:TAG / ARCH:PATH) in the experiment config."
            )
        spec = f"synthetic-clip:{cfg.dataset}"
    if spec == f"synthetic-clip:{cfg.dataset}" and is_benchmark(cfg.dataset):
        path = default_synthetic_path(cfg.dataset)
        if not path.is_file():
            _train_default_clip(cfg, path, device, log, show_progress)
    return load_clip(spec, device=device)


def _train_default_clip(cfg: Any, path: Any, device: Any, log: Log, show_progress: bool) -> None:
    """Train a bundled benchmark's synthetic CLIP into ``path``, once: concurrent workers of a sweep that
    need it wait for the first one (a lock beside the file) and then load its result."""
    from neuroinspect.fileio import exclusive

    with exclusive(f"{path}.lock"):
        if not path.is_file():
            if cfg.dataset_params:
                raise UserError(
                    f"no synthetic CLIP at {path} for {cfg.dataset} with parameters {cfg.dataset_params}: train one with "
                    f'`neuroinspect clip train --dataset {cfg.dataset} --out PATH` and set clip = "synthetic-clip:PATH".'
                )
            from neuroinspect.clip.synthetic import train_synthetic_clip
            from neuroinspect.datasets import get_dataset

            log(f"training the synthetic CLIP for {cfg.dataset} (once; cached at {path})")
            # as `neuroinspect clip train` does: balanced attributes from a data seed of its own
            defaults = getattr(get_dataset(cfg.dataset), "defaults", {})
            params = {k: v for k, v in (("align", 0.5), ("seed", 1000)) if k in defaults}
            train_synthetic_clip(
                cfg.dataset, out=path, params=params, seed=0, device=device, show_progress=show_progress
            )


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K×D mean pooled feature per class (zeros for a class without samples): the §2.1 prototypes."""
    f = features.double()
    out = torch.zeros(num_classes, f.shape[1], dtype=torch.float64)
    for k in range(num_classes):
        m = labels == k
        if bool(m.any()):
            out[k] = f[m].mean(dim=0)
    return out.float()


def select_sets(
    cfg: Any,
    finder_results: Mapping[str, Any],
    selectors: Mapping[str, Any],
    ctx: Any,
    *,
    num_features: int,
    seed: int,
    effects: Any = None,
    log: Log = print,
) -> dict[str, NeuronSet]:
    """Every pipeline's neuron set and every control (module docstring), keyed by :attr:`NeuronSet.key`."""
    from neuroinspect.harness.pipeline import control_set, select_pair

    k = int(cfg.num_neurons)
    pool = int(cfg.candidate_pool) * k
    sets: dict[str, NeuronSet] = {}
    if cfg.neurons:
        sets["manual"] = NeuronSet(
            "manual", "manual", None, [int(n) for n in cfg.neurons], imp_finder=cfg.finder
        )
    else:
        pairs = resolve_pipelines(cfg)
        if ctx is not None and ctx.visuals is not None:
            # every candidate the visual selectors will look at, optimized in one batch per visualizer setting
            wanted: dict[str, tuple[dict[str, Any], list[int]]] = {}
            for f, s in pairs:
                args = visual_request(selectors[s])
                if args is None:
                    continue
                key = repr(sorted(args.items(), key=lambda kv: kv[0]))
                cand = finder_results[f].ordered(cfg.neuron_list)[:pool]
                entry = wanted.setdefault(key, (args, []))
                entry[1].extend(n for n in cand if n not in entry[1])
            for args, neurons in wanted.values():
                log(f"visualizing {len(neurons)} candidate neurons for the selectors ({args['method']})")
                ctx.visuals.get(neurons, **args)
        for f, s in pairs:
            ns = select_pair(
                f,
                finder_results[f],
                s,
                selectors[s],
                ctx,
                k=k,
                neuron_list=cfg.neuron_list,
                candidate_pool=cfg.candidate_pool,
                log=log,
            )
            sets[ns.key] = ns
    for ctl in cfg.controls:
        cs = control_set(
            ctl, k=k, num_features=num_features, seed=seed, effects=effects, imp_finder=cfg.finder
        )
        if cs is not None:
            sets[ctl] = cs
    return sets


def list_records(
    name: str,
    fres: Any,
    effects: Any,
    truth: Any,
    *,
    ks: Sequence[int],
    attribute_labels: Sequence[str] | None,
    dataset: str,
    model: str,
    seed: int,
    provenance: dict[str, Any],
    config: dict[str, Any],
) -> list[dict[str, Any]]:
    """One finder's ``neuron_recovery`` records, one per list (``insufficient``, ``excessive``), each
    scored against that list's causal truth. ``name``: the finder's entry (``"name"`` or a variant)."""
    from neuroinspect.methods.causal_truth import list_recovery_record

    base, label = split_variant(name)
    return [
        list_recovery_record(
            fres.ordered(which),
            which,
            effects,
            truth,
            method={"finder": base},
            dataset=dataset,
            model=model,
            seed=seed,
            provenance=provenance,
            ks=ks,
            attribute_labels=attribute_labels,
            config={**config, "finder": dict(fres.settings), "variant": label},
        )
        for which in ("insufficient", "excessive")
    ]


def edited_record(
    ns: NeuronSet,
    effects: Any,
    truth: Any,
    *,
    k: int,
    attribute_labels: Sequence[str] | None,
    dataset: str,
    model: str,
    seed: int,
    provenance: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The ``neuron_recovery`` record of one neuron set as edited (``config.list = "edited"``,
    ``config.source`` = its key), with how many core neurons its selector let through."""
    from neuroinspect.methods.causal_truth import edited_recovery_record

    method = dict(ns.method())
    method["finder"] = split_variant(method["finder"])[0]
    sel = ns.selection
    return edited_recovery_record(
        ns.neurons,
        k,
        effects,
        truth,
        method=method,
        dataset=dataset,
        model=model,
        seed=seed,
        provenance=provenance,
        attribute_labels=attribute_labels,
        selection=None if sel is None else {"counts": sel.counts(), "candidates": len(sel.candidates)},
        config={
            **config,
            "source": ns.key,
            "variant": split_variant(ns.finder)[1],
            "selector_settings": None if sel is None else dict(sel.settings),
        },
    )


def causal_records(
    finder_results: Mapping[str, Any],
    sets: Mapping[str, NeuronSet],
    effects: Any,
    truth: Any,
    *,
    k: int,
    ks: Sequence[int],
    attribute_labels: Sequence[str] | None,
    dataset: str,
    model: str,
    seed: int,
    provenance: dict[str, Any],
    config: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per-list records for every finder (:func:`list_records`) and an ``edited`` record for every neuron
    set (:func:`edited_record`).

    Returns ``(records, summary)``; ``summary[finder][list]`` / ``summary[set key]["edited"]`` hold the metrics.
    """
    records: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    common = {
        "attribute_labels": attribute_labels,
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "provenance": provenance,
        "config": config,
    }
    for name, fres in finder_results.items():
        for rec in list_records(name, fres, effects, truth, ks=ks, **common):  # type: ignore[arg-type]
            records.append(rec)
            summary.setdefault(name, {})[rec["config"]["list"]] = rec["metrics"]
    for key, ns in sets.items():
        rec = edited_record(ns, effects, truth, k=k, **common)  # type: ignore[arg-type]
        records.append(rec)
        summary.setdefault(key, {})["edited"] = rec["metrics"]
    return records, summary


def no_edit(editor: str, decision: nn.Linear, class_idx: int, settings: dict[str, Any]) -> Any:
    """The unchanged layer as an :class:`EditResult` (a selector that chose no neuron)."""
    from neuroinspect.methods.editors.base import EditResult

    return EditResult(
        editor=editor,
        decision=copy.deepcopy(decision),
        class_idx=int(class_idx),
        neurons=[],
        selected_epoch=None,
        history=[],
        settings=dict(settings),
        info={"empty_selection": True},
        notes=["the selector chose no neuron: the layer is unchanged"],
    )


def gamma_for(finder_results: Mapping[str, Any], ns: NeuronSet, fallback: str) -> float | None:
    """γ of spec §2.5 for the set, from its finder's ``imp`` (the main finder's for controls)."""
    if not ns.neurons:
        return None
    fres = finder_results.get(ns.imp_finder or fallback) or finder_results[fallback]
    return float(fres.gamma_for(ns.neurons))


def attribute_mask(labels: Sequence[str] | None, label: str) -> np.ndarray | None:
    if labels is None:
        return None
    return np.array([v == label for v in labels], dtype=bool)


__all__ = [
    "NeuronSet",
    "causal_records",
    "class_means",
    "clip_guided",
    "edited_record",
    "gamma_for",
    "list_records",
    "make_selectors",
    "needs_clip",
    "no_edit",
    "resolve_clip",
    "resolve_pipelines",
    "select_sets",
    "split_variant",
    "visual_request",
]
