"""The neuron-choice stages (harness/choice.py) on hand-built finder results: which candidates each
selector sees, which neurons each set holds, the controls, γ per set, and the small helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.choice import (
    NeuronSet,
    attribute_mask,
    class_means,
    gamma_for,
    resolve_pipelines,
    select_sets,
    split_variant,
)
from neuroinspect.harness.config import ExperimentConfig
from neuroinspect.methods.causal_truth import effects_from_activations
from neuroinspect.methods.finders.base import FinderResult
from neuroinspect.methods.selectors import SELECTORS, SelectionContext
from neuroinspect.methods.selectors.base import Selector
from neuroinspect.methods.selectors.labels import write_labels

D = 8


def _result(ins: list[int], exc: list[int], imp: list[float] | None = None) -> FinderResult:
    """A finder result over D = 8 neurons whose two lists are ``ins`` and ``exc`` (printed rows, in
    order), with per-list scores that rank the listed neurons first and the rest by index."""
    ins_s = torch.zeros(D, dtype=torch.float64)
    exc_s = torch.zeros(D, dtype=torch.float64)
    for r, n in enumerate(ins):
        ins_s[n] = 10.0 - r
    for r, n in enumerate(exc):
        exc_s[n] = 100.0 - r
    return FinderResult(
        method="fake",
        class_idx=1,
        insufficient=[{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in ins],
        excessive=[{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in exc],
        scores=ins_s + exc_s,
        insufficient_scores=ins_s,
        excessive_scores=exc_s,
        imp=torch.tensor(imp if imp is not None else [1.0] * D, dtype=torch.float64),
        counts={"mistakes": 3},
    )


def _ctx(interactive: bool | None = False) -> SelectionContext:
    return SelectionContext(
        surface=None,
        decision=nn.Linear(D, 2),
        class_idx=1,
        class_names=["a", "b"],
        prompts=["a", "b"],
        interactive=interactive,
    )


def _cfg(**kw: Any) -> ExperimentConfig:
    base: dict[str, Any] = {
        "finder": "f1",
        "finders": ["f1", "f2"],
        "selector": "top",
        "selectors": ["top"],
        "num_neurons": 2,
        "candidate_pool": 2,
        "controls": [],
    }
    return ExperimentConfig(**{**base, **kw})


def _labels_file(tmp_path: Path, spurious: list[int]) -> str:
    rows = [
        {"neuron": n, "label": "spurious", "class_idx": None, "n_votes": 3, "agreement": 1.0}
        for n in spurious
    ]
    return str(write_labels(tmp_path / "labels.csv", rows))


def test_each_pipeline_hands_its_selector_the_first_pool_of_its_finders_list(tmp_path: Path) -> None:
    # neuron 0 is also on f2's excessive list: the selector sees its insufficient score only
    results = {"f1": _result([5, 1, 7, 3, 0], [2, 6]), "f2": _result([4, 0, 2, 5, 6], [3, 0])}
    # the labels call 7 and 0 spurious (in the pool of 4 of f1 and of f2) and 6 (5th of f2: outside it)
    file = _labels_file(tmp_path, [7, 0, 6, 3])
    selectors = {"top": SELECTORS.get("top")(), "labels": SELECTORS.get("labels")(file=file)}
    cfg = _cfg(selectors=["top", "labels"])
    ctx = _ctx()
    logged: list[str] = []
    sets = select_sets(cfg, results, selectors, ctx, num_features=D, seed=0, log=logged.append)
    # main pair first, then the rest in config order
    assert list(sets) == ["f1+top", "f1+labels", "f2+top", "f2+labels"]
    assert sets["f1+top"].neurons == [5, 1] and sets["f2+top"].neurons == [4, 0]
    assert sets["f1+top"].candidates == [5, 1, 7, 3]  # candidate_pool × num_neurons = 4
    assert sets["f1+labels"].neurons == [7, 3]  # in the finder's order, up to k = 2
    assert sets["f2+labels"].neurons == [0]  # 6 and 3 are outside f2's pool: not topped up
    assert sets["f2+labels"].candidates == [4, 0, 2, 5]
    assert sets["f1+labels"].selection.labels[5] == "unclear"
    assert [ns.key for ns in sets.values()] == list(sets)
    ns = sets["f2+labels"]
    assert (ns.finder, ns.selector, ns.imp_finder) == ("f2", "labels", "f2")
    assert ns.method() == {"finder": "f2", "selector": "labels"}
    # the selector saw the candidates' scores on the list they came from
    assert ctx.finder_scores == {4: 10.0, 0: 9.0, 2: 8.0, 5: 7.0}
    assert "f2+labels: 1 neuron(s) [0] of 4 candidates" in logged
    assert "f1+top: 2 neuron(s) [5, 1]" in logged


def test_the_excessive_list_and_its_scores_feed_the_selector(tmp_path: Path) -> None:
    results = {"f1": _result([5, 1, 7], [2, 6, 3, 4]), "f2": _result([0], [1])}
    cfg = _cfg(neuron_list="excessive", finders=["f1"], candidate_pool=1)
    ctx = _ctx()
    sets = select_sets(
        cfg, results, {"top": SELECTORS.get("top")()}, ctx, num_features=D, seed=0, log=lambda s: None
    )
    assert list(sets) == ["f1+top"]
    assert sets["f1+top"].neurons == [2, 6] and sets["f1+top"].candidates == [2, 6]
    assert ctx.finder_scores == {2: 100.0, 6: 99.0}


def test_the_merged_list_ranks_by_the_summed_scores() -> None:
    # insufficient scores 10, 9 for 5, 1; excessive 100, 99 for 2, 6: merged, 2 and 6 come first
    results = {"f1": _result([5, 1], [2, 6])}
    cfg = _cfg(neuron_list="both", finders=["f1"], candidate_pool=2)
    ctx = _ctx()
    sets = select_sets(
        cfg, results, {"top": SELECTORS.get("top")()}, ctx, num_features=D, seed=0, log=lambda s: None
    )
    assert sets["f1+top"].candidates == [2, 6, 5, 1]
    assert ctx.finder_scores == {2: 100.0, 6: 99.0, 5: 10.0, 1: 9.0}


def test_manual_neurons_and_the_controls() -> None:
    results = {"f1": _result([5, 1], [2]), "f2": _result([4], [3])}
    # a hand-built causal effect: E = [0, 1, 0, 3, -1, 2, 0, 0] (d = 1, Δa = E, one mistake)
    effect = np.array([0.0, 1.0, 0.0, 3.0, -1.0, 2.0, 0.0, 0.0])
    W = np.zeros((2, D))
    W[1] = 1.0
    effects = effects_from_activations(np.zeros((1, D)), effect[None, None, :], W, None, 1, [0])
    cfg = _cfg(neurons=[6, 2], controls=["oracle-neurons", "random-neurons"], num_neurons=3)
    sets = select_sets(cfg, results, {}, None, num_features=D, seed=4, effects=effects, log=lambda s: None)
    assert list(sets) == ["manual", "oracle-neurons", "random-neurons"]
    assert sets["manual"].neurons == [6, 2] and sets["manual"].imp_finder == "f1"
    assert sets["manual"].key == "manual" and sets["oracle-neurons"].key == "oracle-neurons"
    assert sets["random-neurons"].key == sets["random-neurons"].finder == "random-neurons"
    assert sets["oracle-neurons"].method() == {"finder": "oracle-neurons"}
    assert sets["manual"].method() == {"finder": "manual"}
    assert sets["oracle-neurons"].neurons == [3, 5, 1]  # the 3 largest E, largest first
    rnd = sets["random-neurons"].neurons
    assert len(set(rnd)) == 3 and all(0 <= n < D for n in rnd)
    assert sets["random-neurons"].imp_finder == "f1" and sets["random-neurons"].selector is None
    again = select_sets(cfg, results, {}, None, num_features=D, seed=4, effects=effects, log=lambda s: None)
    assert again["random-neurons"].neurons == rnd  # seeded
    seeds = {
        tuple(
            select_sets(cfg, results, {}, None, num_features=D, seed=s, log=lambda s: None)[
                "random-neurons"
            ].neurons
        )
        for s in range(6)
    }
    assert len(seeds) > 1  # the seed is used
    # no causal effects (not a bundled benchmark): no oracle row, the random control stays
    no_truth = select_sets(cfg, results, {}, None, num_features=D, seed=4, log=lambda s: None)
    assert list(no_truth) == ["manual", "random-neurons"]


def test_gamma_per_set_comes_from_its_finders_imp() -> None:
    results = {
        "f1": _result([0], [1], imp=[1.3, 0.7, 1.6, 1.0, 1.0, 1.0, 1.0, 1.0]),
        "f2": _result([0], [1], imp=[1.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    }
    # γ = 1 + (min imp over S − 1) / 3
    assert gamma_for(results, NeuronSet("f2+top", "f2", "top", [0], imp_finder="f2"), "f1") == pytest.approx(
        1.3
    )
    assert gamma_for(results, NeuronSet("x", "x", None, [0, 2], imp_finder="f1"), "f2") == pytest.approx(1.1)
    # a control names the main finder; an unknown one falls back to it
    assert gamma_for(results, NeuronSet("r", "r", None, [0], imp_finder=None), "f2") == pytest.approx(1.3)
    assert gamma_for(results, NeuronSet("r", "r", None, [0], imp_finder="gone"), "f1") == pytest.approx(1.1)
    assert gamma_for(results, NeuronSet("e", "e", None, [], imp_finder="f1"), "f1") is None


def test_pipelines_put_the_main_pair_first_once_and_reject_bad_entries() -> None:
    cfg = _cfg(selectors=["top", "clip"], finder="f2", selector="clip")
    assert resolve_pipelines(cfg) == [("f2", "clip"), ("f1", "top"), ("f1", "clip"), ("f2", "top")]
    cfg = _cfg(selectors=["top", "clip"], pipelines=["f2+top", "f1+clip", "f2+top", "f1+top"])
    assert resolve_pipelines(cfg) == [("f1", "top"), ("f2", "top"), ("f1", "clip")]
    for bad, message in (
        ("f1top", "must be"),
        ("+top", "must be"),
        ("f1+", "must be"),
        ("f3+top", "names finder 'f3'"),
        ("f1+labels", "names selector 'labels'"),
        ("f1+top+clip", "names selector 'top\\+clip'"),  # the first "+" splits
    ):
        with pytest.raises(UserError, match=message):
            resolve_pipelines(_cfg(pipelines=[bad]))


def test_split_variant_class_means_and_attribute_mask() -> None:
    assert split_variant("neuroinspect:l1") == ("neuroinspect", "l1")
    assert split_variant("fc") == ("fc", None)
    assert split_variant("fc:") == ("fc", None)
    assert split_variant("a:b:c") == ("a", "b:c")
    feats = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 0.0]])
    means = class_means(feats, torch.tensor([0, 0, 2]), 3)
    assert means.dtype == torch.float32
    assert means.tolist() == [[2.0, 4.0], [0.0, 0.0], [5.0, 0.0]]  # class 1 has no sample: zeros
    assert attribute_mask(None, "core") is None
    mask = attribute_mask(["core", "spurious", "core"], "core")
    assert mask is not None and mask.dtype == bool and mask.tolist() == [True, False, True]


def test_causal_records_name_the_variant_the_source_and_the_selection(tmp_path: Path) -> None:
    from neuroinspect.harness.choice import causal_records
    from neuroinspect.methods.causal_truth import causal_truth

    prov = {
        "versions": {
            "torch": None,
            "timm": None,
            "open_clip_torch": None,
            "captum": None,
            "torch-lucent": None,
        },
        "git_commit": None,
        "device": "cpu",
        "started_at": None,
        "wall_seconds": 0.0,
    }
    effect = np.array([0.0, 1.0, 0.0, 3.0, -1.0, 2.0, 0.0, 0.0])
    W = np.zeros((2, D))
    W[1] = 1.0
    effects = effects_from_activations(np.zeros((1, D)), effect[None, None, :], W, None, 1, [0])
    fres = _result([3, 1, 0], [4])
    fres.settings = {"top": 30}
    file = _labels_file(tmp_path, [1])
    labels_sel = SELECTORS.get("labels")(file=file).select([3, 1, 0], 2, _ctx())
    sets = {
        "f1:v2+labels": NeuronSet(
            "f1:v2+labels", "f1:v2", "labels", [1], imp_finder="f1:v2", selection=labels_sel
        ),
        "random-neurons": NeuronSet("random-neurons", "random-neurons", None, [0, 6], imp_finder="f1:v2"),
    }
    recs, summary = causal_records(
        {"f1:v2": fres},
        sets,
        effects,
        causal_truth(effects),
        k=2,
        ks=(1,),
        attribute_labels=None,
        dataset="spurious-shapes",
        model="m",
        seed=5,
        provenance=prov,
        config={"experiment": "e"},
    )
    assert [r["config"]["list"] for r in recs] == ["insufficient", "excessive", "edited", "edited"]
    ins = recs[0]
    assert ins["method"] == {"finder": "f1"}  # the registry name; the variant goes in config
    assert ins["config"]["variant"] == "v2" and ins["config"]["finder"] == {"top": 30}
    assert ins["config"]["experiment"] == "e" and ins["seed"] == 5
    assert summary["f1:v2"]["insufficient"]["precision_at_k"] == {"1": 1.0}  # neuron 3: E = 3
    assert summary["f1:v2"]["excessive"]["precision_at_k"] == {"1": 0.0}  # neuron 4: E < 0
    edited = recs[2]
    assert edited["method"] == {"finder": "f1", "selector": "labels"}
    assert edited["config"]["source"] == "f1:v2+labels" and edited["config"]["variant"] == "v2"
    assert edited["config"]["selector_settings"] == {"file": file, "min_votes": 1, "min_agreement": 0.0}
    assert edited["config"]["neurons"] == [1] and edited["config"]["experiment"] == "e"
    assert edited["metrics"]["selection"] == {
        "counts": {"spurious": 1, "core": 0, "unclear": 2, "not_judged": 0},
        "candidates": 3,
    }
    assert summary["f1:v2+labels"]["edited"]["precision_at_k"] == {"2": 1.0}
    control = recs[3]
    assert control["method"] == {"finder": "random-neurons"} and control["config"]["variant"] is None
    assert control["config"]["selector_settings"] is None and "selection" not in control["metrics"]
    assert summary["random-neurons"]["edited"]["precision_at_k"] == {"2": 0.0}


class _LooksAtPictures(Selector):
    """A selector double that reads visualizations (settings given) and calls every candidate spurious."""

    name = "pictures"
    uses_visualizations = True

    def __init__(self, settings: dict[str, Any], conditioned: bool | None = None) -> None:
        self.visualizer = "clip_illusion"
        self.visualizer_settings = settings
        if conditioned is not None:
            self.conditioned = conditioned

    def label(self, candidates: Any, ctx: Any) -> tuple[dict[int, str], dict[int, float]]:
        return {int(n): "spurious" for n in candidates}, {}


class _Recording:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def get(self, neurons: Any, method: str = "", settings: Any = None, conditioned: bool = True) -> list:
        self.calls.append((list(neurons), method, settings, conditioned))
        return []


def test_candidates_of_every_visual_selector_are_visualized_once_per_setting() -> None:
    results = {"f1": _result([5, 1, 7], [2]), "f2": _result([1, 4, 6], [3])}
    selectors = {
        "top": SELECTORS.get("top")(),
        "a": _LooksAtPictures({"iters": 4}),
        "a2": _LooksAtPictures({"iters": 4}, conditioned=True),  # the same images as "a"
        "b": _LooksAtPictures({"iters": 8}, conditioned=False),
    }
    cfg = _cfg(
        selectors=["top", "a", "a2", "b"], pipelines=["f1+top", "f1+a", "f2+a2", "f1+b"], candidate_pool=1
    )  # pools of 2
    ctx = _ctx()
    ctx.visuals = _Recording()  # type: ignore[assignment]
    logged: list[str] = []
    sets = select_sets(cfg, results, selectors, ctx, num_features=D, seed=0, log=logged.append)
    # one batch per (visualizer, settings, conditioning), over the union of its pipelines' pools
    assert ctx.visuals.calls == [  # type: ignore[attr-defined]
        ([5, 1, 4], "clip_illusion", {"iters": 4}, True),
        ([5, 1], "clip_illusion", {"iters": 8}, False),
    ]
    assert logged[:2] == [
        "visualizing 3 candidate neurons for the selectors (clip_illusion)",
        "visualizing 2 candidate neurons for the selectors (clip_illusion)",
    ]
    assert sets["f2+a2"].neurons == [1, 4] and sets["f1+b"].neurons == [5, 1]
    # without shared visualizations nothing is optimized in advance
    plain = _ctx()
    select_sets(cfg, results, selectors, plain, num_features=D, seed=0, log=lambda s: None)
    assert plain.visuals is None


def test_top_selection_records_its_name_settings_and_time() -> None:
    sel = SELECTORS.get("top")().select([3, 1], 1, _ctx())
    assert sel.selector == "top" and sel.settings == {} and sel.labels == {} and sel.scores == {}
    assert 0.0 < sel.wall_seconds < 3600.0  # an elapsed time (Linux: ns clock), not a clock reading
