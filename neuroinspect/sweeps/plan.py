"""A sweep's grid expanded into a DAG of stage nodes, deduplicated by the hash of their inputs.

Every grid cell (dataset variant × model × seed × finder × selector × editor × visualizer) needs a
chain of stages; most of the chain is shared with other cells. Nodes are keyed like the store keys
them (:func:`neuroinspect.harness.stages.node_key`), so a node that two cells need is planned, run
and stored once:

- one ``train`` per (dataset variant, model, seed) (one per checkpoint file when a model gives one;
  ``{seed}`` in its path names one file per seed);
- one ``features`` per (model, split), one ``evaluate`` per model (the class to debug and the
  metrics before editing), one ``truth`` and one ``causal`` (the mistakes' causal effects) per model
  (bundled benchmarks), one ``attributes`` per dataset variant (concept recovery of visualizations);
- one ``find`` per (model, class, finder variant), one ``select`` per (finder run, selector variant),
  and one ``render`` per (finder run, candidate pool, picture settings): the images that every visual
  selector of that finder run reads (``core-sensitivity``, ``clip`` and ``concept`` share them);
  one ``clip`` per dataset variant that a node reads a CLIP of (the sweep's, or a benchmark's
  synthetic one: trained once, before the nodes that read it),
  and per model one ``select`` per (control, k) for the ``controls`` (k: every ``num_neurons`` the
  selectors use; γ from the first finder's ``imp``, as ``run_experiment`` takes the main finder's);
- one leaf per result: ``recovery`` per finder run (its two lists) and per selection (the edited set;
  bundled benchmarks), ``edit`` per (editor variant, and for the editors that use neurons,
  selection or control), ``visualize`` per (visualizer variant, selection). Editors that do not read
  neurons (``cw``, ``focal``, ``fc``, ``dfr``) are run once per model, not once per finder and
  selector. With ``fc`` in the sweep, every other edit of a model reads that model's plain ``fc`` edit
  (``metrics.after_minus_fc``).

:meth:`Plan.naive_executions` counts what running every cell from scratch would execute (each cell's
whole chain, nothing shared); the sweep's summary sets it beside the nodes actually run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.harness.choice import clip_guided, split_variant
from neuroinspect.harness.stages import CHOICE_KEYS, LEAF_STAGES, canonical_json, node_key, reads_shared_clip
from neuroinspect.sweeps.config import DatasetVariant, MethodVariant, ModelEntry, SweepConfig, selector_choice

#: the cell coordinates, in grid order
AXES = ("dataset", "model", "seed", "finder", "selector", "editor", "visualizer")


@dataclass
class Node:
    """One stage execution: ``deps`` maps a role to the key of the node it reads."""

    key: str
    stage: str
    params: dict[str, Any]
    deps: dict[str, str]
    label: str
    order: int

    @property
    def leaf(self) -> bool:
        return self.stage in LEAF_STAGES

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stage": self.stage,
            "label": self.label,
            "params": self.params,
            "deps": self.deps,
        }


@dataclass
class Cell:
    """One grid cell: its coordinates and the leaf nodes that hold its results."""

    coords: dict[str, str]
    leaves: list[str]


@dataclass
class Plan:
    nodes: dict[str, Node] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    _cell_keys: set[tuple[Any, ...]] = field(default_factory=set, repr=False)

    @staticmethod
    def node_key(stage: str, params: dict[str, Any], deps: dict[str, str]) -> str:
        """The key :meth:`add` would give this node."""
        return node_key(stage, json.loads(canonical_json(params)), deps)

    def add(self, stage: str, params: dict[str, Any], deps: dict[str, str], label: str) -> str:
        params = json.loads(canonical_json(params))
        key = node_key(stage, params, deps)
        if key not in self.nodes:
            self.nodes[key] = Node(key, stage, params, dict(deps), label, len(self.nodes))
        return key

    def skip(self, entry: dict[str, str]) -> None:
        """A cell the grid names but cannot run, with why (once)."""
        if entry not in self.skipped:
            self.skipped.append(entry)

    def add_cell(self, coords: dict[str, str], leaves: list[str]) -> None:
        """A grid cell, once (two grids of one sweep may both name it)."""
        key = (tuple(sorted(coords.items())), tuple(leaves))
        if key not in self._cell_keys:
            self._cell_keys.add(key)
            self.cells.append(Cell(coords, leaves))

    @property
    def leaves(self) -> list[str]:
        return [k for k, n in self.nodes.items() if n.leaf]

    def closure(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and every node they depend on, transitively."""
        seen: set[str] = set()
        stack = list(keys)
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            stack.extend(self.nodes[k].deps.values())
        return seen

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.nodes}
        for k, n in self.nodes.items():
            for d in n.deps.values():
                out[d].append(k)
        return out

    def descendants(self, key: str, children: dict[str, list[str]] | None = None) -> set[str]:
        children = children if children is not None else self.children()
        seen: set[str] = set()
        stack = list(children[key])
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(children[k])
        return seen

    def naive_executions(self) -> int:
        """Stage executions if every cell ran its whole chain from scratch (nothing shared)."""
        return sum(len(self.closure(c.leaves)) for c in self.cells if c.leaves)

    def naive_by_stage(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cells:
            for k in self.closure(c.leaves) if c.leaves else ():
                s = self.nodes[k].stage
                out[s] = out.get(s, 0) + 1
        return out

    def by_stage(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes.values():
            out[n.stage] = out.get(n.stage, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": [n.as_dict() for n in self.nodes.values()],
            "cells": [{"coords": c.coords, "leaves": c.leaves} for c in self.cells],
            "skipped": self.skipped,
        }


def _resolve(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def build_plan(cfg: SweepConfig) -> Plan:
    """Expand ``cfg``'s grid and its parts' into one deduplicated DAG (see the module docstring)."""
    plan = Plan()
    ckpt_sha: dict[str, str] = {}
    for grid in cfg.grids:  # the sweep's grid and its [[sweep.parts]]: shared stages dedupe by key
        _plan_grid(plan, grid, ckpt_sha)
    return plan


def _plan_grid(plan: Plan, cfg: SweepConfig, ckpt_sha: dict[str, str]) -> None:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import file_sha256

    for d in cfg.datasets:
        spec = get_dataset(d.name)
        benchmark = spec.kind == "benchmark"
        data = {"dataset": d.name, "root": d.root, "dataset_params": d.params}
        attrs_key = None
        if cfg.visualizers and benchmark and cfg.concept_recovery:
            attrs_key = plan.add(
                "attributes",
                {**data, "settings": cfg.attribute_settings, "seed": 0},
                {},
                f"attributes {d.label}",
            )
        for m in cfg.models:
            for seed in cfg.seeds:
                where = f"{d.label}/{m.label}/seed{seed}"
                if m.checkpoint:
                    path = _resolve(m.checkpoint_for(seed))
                    assert path is not None
                    if path not in ckpt_sha:
                        ckpt_sha[path] = file_sha256(path)
                    model = plan.add(
                        "train",
                        {**data, "checkpoint": path, "checkpoint_sha256": ckpt_sha[path]},
                        {},
                        f"load {Path(path).name} ({d.label})",
                    )
                else:
                    model = plan.add(
                        "train",
                        {
                            **data,
                            "model": m.name,
                            "image_size": m.image_size or d.image_size,
                            "pretrained": m.pretrained,
                            "preset": m.preset or d.preset or cfg.preset,
                            "train": {**d.train, **m.train},
                            "seed": seed,
                        },
                        {},
                        f"train {where}",
                    )
                _plan_model(plan, cfg, d, m, seed, model, attrs_key)


def _plan_model(
    plan: Plan,
    cfg: SweepConfig,
    d: DatasetVariant,
    m: ModelEntry,
    seed: int,
    model: str,
    attrs_key: str | None,
) -> None:
    """The nodes and cells of one trained (or loaded) model: its features, class, causal truth, finders,
    selections, controls, edits and visualizations."""
    from neuroinspect.datasets import get_dataset
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.methods.visualizers import VISUALIZERS, load_all

    load_all()

    spec = get_dataset(d.name)
    benchmark = spec.kind == "benchmark"
    data = {"dataset": d.name, "root": d.root, "dataset_params": d.params}
    where = f"{d.label}/{m.label}/seed{seed}"
    splits = {"train": "train", "val": d.finder_split, "test": "test"}
    if cfg.visualizers:
        splits["vis"] = cfg.visualize_split
    feats = {
        role: plan.add(
            "features",
            {**data, "split": split, "batch_size": cfg.batch_size},
            {"model": model},
            f"features {split} {where}",
        )
        for role, split in splits.items()
    }
    ev = plan.add(
        "evaluate",
        {
            **data,
            "finder_split": d.finder_split,
            "class_idx": d.class_idx,
            "n_boot": cfg.n_boot,
            "seed": seed,
        },
        {"model": model, "train": feats["train"], "val": feats["val"], "test": feats["test"]},
        f"evaluate {where}",
    )
    truth = causal = None
    if benchmark and (cfg.finders or (cfg.visualizers and cfg.concept_recovery)):
        truth = plan.add(
            "truth",
            {
                **data,
                "split": "test",
                "n_samples": cfg.truth_samples,
                "seed": seed,
                "batch_size": cfg.batch_size,
            },
            {"model": model},
            f"truth {where}",
        )
    if benchmark and cfg.finders:
        causal = plan.add(
            "causal",
            {
                **data,
                "split": d.finder_split,
                "threshold": cfg.causal_threshold,
                "batch_size": cfg.batch_size,
            },
            {"model": model, "val": feats["val"], "evaluate": ev},
            f"causal truth {where}",
        )
    base_edit = {
        "dataset": d.name,
        "dataset_params": d.params,
        "seed": seed,
        "n_boot": cfg.n_boot,
        "experiment": cfg.name,
    }
    edit_deps = {
        "model": model,
        "train": feats["train"],
        "val": feats["val"],
        "test": feats["test"],
        "evaluate": ev,
    }
    rec_params = {
        "dataset": d.name,
        "dataset_params": d.params,
        "ks": cfg.recovery_k,
        "experiment": cfg.name,
        "finder_split": d.finder_split,
        "seed": seed,
    }
    rec_deps = {"model": model, "evaluate": ev}
    if causal is not None:
        rec_deps["causal"] = causal
        if truth is not None:
            rec_deps["truth"] = truth
    # the plain fc edit: every other edit of this model is also reported against it
    fc = None
    fc_entry = next((e for e in cfg.editors if e.name == "fc"), None)
    if fc_entry is not None:
        fc = plan.add(
            "edit",
            {**base_edit, "editor": "fc", "settings": fc_entry.settings},
            edit_deps,
            f"edit {fc_entry.label} · {where}",
        )

    def edit_node(e: MethodVariant, sel: str | None, label: str, extra: dict[str, Any] | None = None) -> str:
        deps = dict(edit_deps)
        if sel is not None:
            deps["select"] = sel
        params = {**base_edit, "editor": e.name, "settings": e.settings, **(extra or {})}
        if fc is not None and plan.node_key("edit", params, deps) != fc:
            deps["fc"] = fc
        return plan.add("edit", params, deps, label)

    # editors that ignore neurons: one node per model, shared by every finder and selector
    plain_edits: dict[str, str] = {}
    for e in cfg.editors:
        cls = EDITORS.get(split_variant(e.name)[0])
        if cls.uses_group_labels and not spec.has_groups:
            continue
        if not cls.uses_neurons:
            plain_edits[e.label] = edit_node(e, None, f"edit {e.label} · {where}")

    def neuron_edits(sel: str, source: str, extra: dict[str, Any]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for e in cfg.editors:
            cls = EDITORS.get(split_variant(e.name)[0])
            if cls.uses_group_labels and not spec.has_groups:
                out[e.label] = None
            elif not cls.uses_neurons:
                out[e.label] = plain_edits[e.label]
            else:
                out[e.label] = edit_node(e, sel, f"edit {e.label} ← {source} · {where}", extra)
        return out

    def add_cells(
        coords: dict[str, str],
        fixed: list[str],
        edits: dict[str, str | None],
        visuals: dict[str, str],
        editors: list[str] | None = None,
    ) -> None:
        e_labels: list[str | None] = list(
            editors if editors is not None else [e.label for e in cfg.editors]
        ) or [None]
        v_labels: list[str | None] = list(visuals) or [None]
        for e_label in e_labels:
            for v_label in v_labels:
                cell = {**coords, "editor": e_label or "-", "visualizer": v_label or "-"}
                leaves = [k for k in fixed if k]
                if e_label is not None:
                    ek = edits.get(e_label)
                    if ek is None:
                        plan.skip(
                            {
                                **cell,
                                "why": f"editor {e_label} needs group labels; {d.name} has none",
                            }
                        )
                    else:
                        leaves.append(ek)
                if v_label is not None:
                    leaves.append(visuals[v_label])
                plan.add_cell(cell, leaves)

    def clip_node() -> str:
        """The CLIP every CLIP-reading node of this dataset variant depends on (one node per variant)."""
        return plan.add("clip", {**data, "clip": cfg.clip}, {}, f"clip {cfg.clip or 'synthetic'} · {d.label}")

    cell_base = {"dataset": d.label, "model": m.label, "seed": str(seed)}
    finders: list[MethodVariant | None] = list(cfg.finders) or [None]
    finds: dict[str, str] = {}
    for f in finders:
        find = rec = None
        if f is not None:
            find = plan.add(
                "find",
                {"finder": f.name, "settings": f.settings, "seed": seed},
                {"model": model, "val": feats["val"], "evaluate": ev},
                f"find {f.label} · {where}",
            )
            finds[f.label] = find
            if causal is not None:
                rec = plan.add(
                    "recovery",
                    {
                        **rec_params,
                        "finder": f.name,
                        "neuron_list": cfg.neuron_list,
                        "candidate_pool": cfg.candidate_pool,
                    },
                    {**rec_deps, "find": find},
                    f"recovery {f.label} · {where}",
                )
        selectors: list[MethodVariant | None] = list(cfg.selectors) or [None]
        for s in selectors:
            sel = edited = None
            extra: dict[str, Any] = {}
            if find is not None and f is not None and s is not None:
                choice = selector_choice(cfg, s)
                sel_deps = {"model": model, "val": feats["val"], "evaluate": ev, "find": find}
                ask, reads_clip = _visual_request(s)
                if reads_clip:
                    sel_deps["clip"] = clip_node()
                if ask is not None:  # one render per (finder run, candidates, picture settings)
                    sel_deps["render"] = plan.add(
                        "render",
                        {
                            **data,
                            "split": d.finder_split,
                            **choice,
                            **ask,
                            "clip": cfg.clip,
                            "seed": seed,
                        },
                        {
                            "model": model,
                            "evaluate": ev,
                            "find": find,
                            **({"clip": clip_node()} if clip_guided(ask) else {}),
                        },
                        f"render {ask['method']} of {f.label}'s candidates · {where}",
                    )
                sel = plan.add(
                    "select",
                    {
                        **data,
                        "split": d.finder_split,
                        "finder": f.name,
                        "selector": s.name,
                        "settings": {k: v for k, v in s.settings.items() if k not in CHOICE_KEYS},
                        **choice,
                        "gamma": cfg.gamma,
                        "clip": cfg.clip,
                        "seed": seed,
                    },
                    sel_deps,
                    f"select {s.label} ← {f.label} · {where}",
                )
                if causal is not None:
                    edited = plan.add(
                        "recovery",
                        {
                            **rec_params,
                            **{k: choice[k] for k in ("neuron_list", "candidate_pool")},
                        },
                        {**rec_deps, "select": sel},
                        f"recovery edited {f.label}/{s.label} · {where}",
                    )
                extra = {"finder_settings": f.settings, "selector_settings": s.settings}
            edits: dict[str, str | None] = (
                neuron_edits(sel, f"{f.label}/{s.label}", extra)
                if sel is not None and f is not None and s is not None
                else {e.label: plain_edits.get(e.label) for e in cfg.editors}
            )
            visuals: dict[str, str] = {}
            for v in cfg.visualizers:
                assert sel is not None and f is not None and s is not None
                vdeps = {"model": model, "features": feats["vis"], "evaluate": ev, "select": sel}
                if truth is not None and attrs_key is not None:
                    vdeps.update({"truth": truth, "attributes": attrs_key})
                if reads_shared_clip(VISUALIZERS.get(v.name), v.settings, cfg.clip, d.name):
                    vdeps["clip"] = clip_node()
                visuals[v.label] = plan.add(
                    "visualize",
                    {
                        **data,
                        "visualizer": v.name,
                        "settings": v.settings,
                        "seed": seed,
                        "split": cfg.visualize_split,
                        **({"max_neurons": cfg.visualize_neurons} if cfg.visualize_neurons else {}),
                        "batch_size": min(cfg.batch_size, 64),
                        "experiment": cfg.name,
                        "finder": f.name,
                        "selector": s.name,
                        "selector_settings": s.settings,
                        **({"clip": cfg.clip} if cfg.clip else {}),
                    },
                    vdeps,
                    f"visualize {v.label} ← {f.label}/{s.label} · {where}",
                )
            coords = {
                **cell_base,
                "finder": f.label if f else "-",
                "selector": s.label if s else "-",
            }
            add_cells(coords, [k for k in (rec, edited) if k], edits, visuals)
    # the controls: edited by every editor that uses neurons, at every k the selectors use
    if cfg.controls and cfg.finders:
        main = cfg.finders[0]  # whose imp gives the controls' γ (run_experiment: the main finder)
        ks = sorted({int(selector_choice(cfg, s)["num_neurons"]) for s in cfg.selectors}) or [cfg.num_neurons]
        for ctl in cfg.controls:
            if ctl == "oracle-neurons" and causal is None:
                plan.skip(
                    {
                        **cell_base,
                        "finder": ctl,
                        "why": f"{ctl} needs a bundled benchmark's causal truth",
                    }
                )
                continue
            for k in ks:
                cdeps = {"model": model, "find": finds[main.label]}
                if causal is not None:
                    cdeps["causal"] = causal
                klabel = ctl if len(ks) == 1 else f"{ctl}[k={k}]"
                sel = plan.add(
                    "select",
                    {
                        "dataset": d.name,
                        "control": ctl,
                        "finder": main.name,
                        "num_neurons": k,
                        "neuron_list": cfg.neuron_list,
                        "gamma": cfg.gamma,
                        "seed": seed,
                    },
                    cdeps,
                    f"select {klabel} · {where}",
                )
                edited = None
                if causal is not None:
                    edited = plan.add(
                        "recovery",
                        {
                            **rec_params,
                            "neuron_list": cfg.neuron_list,
                            "candidate_pool": cfg.candidate_pool,
                        },
                        {**rec_deps, "select": sel},
                        f"recovery edited {klabel} · {where}",
                    )
                edits = neuron_edits(sel, klabel, {})
                neuron_editors = [
                    e.label
                    for e in cfg.editors
                    if edits[e.label] is not None and edits[e.label] not in plain_edits.values()
                ]
                add_cells(
                    {**cell_base, "finder": klabel, "selector": "-"},
                    [edited] if edited else [],
                    edits,
                    {},
                    neuron_editors,
                )


def _visual_request(s: MethodVariant) -> tuple[dict[str, Any] | None, bool]:
    """The pictures selector entry ``s`` reads (:func:`choice.visual_request`; ``None`` if it reads none)
    and whether it reads a CLIP (:func:`choice.needs_clip`)."""
    from types import SimpleNamespace

    from neuroinspect.harness.choice import make_selectors, needs_clip, visual_request

    settings = {k: v for k, v in s.settings.items() if k not in CHOICE_KEYS}
    sel = make_selectors(
        SimpleNamespace(selectors=[s.name], selector_settings={s.name: settings}), interactive=False
    )[s.name]
    return visual_request(sel), needs_clip({s.name: sel})


def plan_text(plan: Plan) -> str:
    """A short description of the plan: nodes per stage against the cells' chains."""
    naive = plan.naive_by_stage()
    parts = [
        f"{s} {n}" + (f" (of {naive.get(s, n)})" if naive.get(s, n) != n else "")
        for s, n in plan.by_stage().items()
    ]
    return (
        f"{len(plan.cells)} cells, {len(plan.leaves)} result nodes, {len(plan.nodes)} stage nodes "
        f"(running every cell from scratch: {plan.naive_executions()}): " + ", ".join(parts)
    )
