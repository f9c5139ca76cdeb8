"""The pipeline's steps (harness/pipeline.py) on hand-made features, without a model or a run.

``run_experiment`` and the sweep's stages both call these functions; the end-to-end tests
(test_pipeline_invariants.py, test_experiment.py, test_sweep_choice.py) check that they are wired
together, these check each step's answer where it is known by construction: the worst class and its
ties, the mistakes, the finder and editor a name resolves to, the γ and the settings an editor
receives, the "after" metrics, the mitigation record's fields and ``after_minus_fc``.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPES
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness import pipeline as pl
from neuroinspect.harness.choice import NeuronSet, make_selectors, needs_clip, no_edit
from neuroinspect.harness.config import ExperimentConfig
from neuroinspect.harness.features import FeatureSet
from neuroinspect.harness.mitigation import measure
from neuroinspect.harness.records import validate_record
from neuroinspect.methods.finders import FINDERS, FinderResult
from neuroinspect.methods.finders import load_all as load_finders
from neuroinspect.methods.selectors import SELECTORS, NeuronVisuals

load_finders()

PROV = {
    "versions": {"torch": None, "timm": None, "open_clip_torch": None, "captum": None, "torch-lucent": None},
    "git_commit": None,
    "device": "cpu",
    "started_at": None,
    "wall_seconds": 0.0,
}


def _identity(k: int) -> nn.Linear:
    """``nn.Linear(k, k)`` with W = I, b = 0: a one-hot feature row predicts its own class."""
    lin = nn.Linear(k, k)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(k))
        lin.bias.zero_()
    return lin


def _fs(
    preds: list[int],
    labels: list[int],
    k: int,
    *,
    groups: list[int] | None = None,
    first_index: int = 0,
    split: str = "val",
) -> FeatureSet:
    """N one-hot features (row i = e_{preds[i]}, so :func:`_identity` predicts ``preds``), logits equal."""
    feats = torch.eye(k)[torch.tensor(preds)]
    n = len(preds)
    return FeatureSet(
        features=feats,
        logits=feats.clone(),
        labels=torch.tensor(labels),
        groups=None if groups is None else torch.tensor(groups),
        indices=torch.arange(first_index, first_index + n),
        paths=[f"{split}/{i:03d}" for i in range(first_index, first_index + n)],
        meta={"split": split},
    )


# -- the class to debug -----------------------------------------------------------------------------
def test_the_worst_class_is_chosen_and_a_given_class_is_checked() -> None:
    # per-class accuracy on val: class 0 2/3, class 1 1/3, class 2 1/2
    preds = [0, 0, 1, 1, 0, 2, 2, 0]
    labels = [0, 0, 0, 1, 1, 1, 2, 2]
    val = _fs(preds, labels, 3)
    dec = _identity(3)
    assert pl.choose_class(dec, val, None) == 1
    assert pl.worst_class_accuracy(dec, val, 1) == pytest.approx(1 / 3)
    assert pl.worst_class_accuracy(dec, val, 2) == pytest.approx(1 / 2)
    # a given class wins over the worst one; both ends of the range are valid
    assert pl.choose_class(dec, val, 0) == 0
    assert pl.choose_class(dec, val, 2) == 2
    for bad in (3, -1):
        with pytest.raises(
            UserError, match=rf"class_idx {bad} is out of range: the model has 3 classes, 0\.\.2\."
        ):
            pl.choose_class(dec, val, bad)


def test_a_tie_goes_to_the_lowest_index_and_an_empty_class_is_never_chosen() -> None:
    # class 0: 2/2; classes 1 and 2 tie at 1/2; class 3 has no sample (and no prediction)
    preds = [0, 0, 1, 0, 2, 0]
    labels = [0, 0, 1, 1, 2, 2]
    val = _fs(preds, labels, 4)
    dec = _identity(4)
    assert pl.choose_class(dec, val, None) == 1
    assert math.isnan(pl.worst_class_accuracy(dec, val, 3))
    # an empty class among the others (not the last): still skipped, even though every other is worse than 0%
    preds = [1, 0, 0, 0, 3, 0]
    labels = [0, 0, 2, 2, 3, 3]
    assert pl.choose_class(_identity(4), _fs(preds, labels, 4), None) == 2


def test_the_worst_class_is_read_from_the_decision_layer_given() -> None:
    # the stored logits say class 0 is perfect; the (edited) layer given gets every class-0 sample wrong
    val = _fs([0, 0, 1, 1], [0, 0, 1, 1], 2)
    flipped = nn.Linear(2, 2)
    with torch.no_grad():
        flipped.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # always class 1
        flipped.bias.zero_()
    assert pl.choose_class(flipped, val, None) == 0
    assert pl.worst_class_accuracy(flipped, val, 0) == 0.0
    assert pl.worst_class_accuracy(flipped, val, 1) == 1.0


def test_train_group_counts_and_class_mistakes() -> None:
    train = _fs([0, 1, 0, 1, 1], [0, 1, 1, 0, 1], 2, groups=[0, 0, 2, 2, 2])
    assert pl.train_group_counts(train, 4) == [2, 0, 3, 0]  # a group without samples counts 0
    assert pl.train_group_counts(train, None) == [2, 0, 3]
    assert pl.train_group_counts(train, 0) == [2, 0, 3]  # 0 groups given: as many as the labels show
    assert pl.train_group_counts(_fs([0], [0], 2), 4) is None  # no group labels
    # class 1's mistakes, in dataset order, with their dataset index, path and prediction
    val = _fs([1, 0, 2, 1, 0, 2, 1], [1, 1, 1, 1, 0, 2, 0], 3, first_index=40)
    assert pl.class_mistakes(val, 1) == [
        {"index": 41, "path": "val/041", "pred": 0},
        {"index": 42, "path": "val/042", "pred": 2},
    ]
    assert pl.class_mistakes(val, 2) == []
    assert pl.class_mistakes(val, 0) == [{"index": 46, "path": "val/046", "pred": 1}]


# -- finders and γ --------------------------------------------------------------------------------------
def _problem(seed: int = 0, n: int = 24, d: int = 12, k: int = 3) -> tuple[nn.Linear, FeatureSet]:
    g = torch.Generator().manual_seed(seed)
    dec = nn.Linear(d, k)
    with torch.no_grad():
        dec.weight.copy_(torch.randn(k, d, generator=g))
        dec.bias.zero_()
    feats = torch.relu(torch.randn(n, d, generator=g))
    labels = torch.arange(n) % k
    with torch.no_grad():
        logits = dec(feats)
    fs = FeatureSet(
        feats, logits, labels, None, torch.arange(n), [f"p{i}" for i in range(n)], {"split": "val"}
    )
    return dec, fs


def test_run_finder_resolves_a_variant_with_its_settings_and_seed() -> None:
    dec, fs = _problem()
    c = int(fs.labels[fs.labels != fs.preds][0])
    res = pl.run_finder("random:few", {"top": 2}, dec, fs, c, seed=3)
    assert res.method == "random" and res.class_idx == c
    assert res.settings["top"] == 2 and res.settings["seed"] == 3
    assert len(res.insufficient) <= 2 and len(res.excessive) <= 2
    same = FINDERS.get("random")(top=2).find(dec, fs, c, seed=3, show_progress=False)
    assert res.ranking() == same.ranking()
    assert pl.run_finder("random", {}, dec, fs, c, seed=4).ranking() != res.ranking()  # the seed is used
    with pytest.raises(UserError, match="out of range"):
        pl.run_finder("contribution", {}, dec, fs, 7, seed=0)


def _imp_result(imp: list[float]) -> FinderResult:
    d = len(imp)
    zeros = torch.zeros(d, dtype=torch.float64)
    return FinderResult(
        method="fake",
        class_idx=0,
        insufficient=[],
        excessive=[],
        scores=zeros,
        insufficient_scores=zeros,
        excessive_scores=zeros,
        imp=torch.tensor(imp, dtype=torch.float64),
        counts={},
    )


def test_set_gamma_is_the_number_given_or_the_formula_on_the_sets_imp() -> None:
    fres = _imp_result([1.6, 0.7, 1.3, 1.9])
    assert pl.set_gamma(fres, [0, 2], 1.25) == 1.25
    assert pl.set_gamma(fres, [0, 2], "auto") == pytest.approx(1 + (1.3 - 1) / 3)
    assert pl.set_gamma(fres, [1, 3], "auto") == pytest.approx(1 + (0.7 - 1) / 3)
    assert pl.set_gamma(fres, [], "auto") == 1.0  # nothing to edit: the neutral target


def test_candidates_are_the_first_pool_of_the_list() -> None:
    fres = _imp_result([1.0] * 6)
    fres.insufficient = [{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in (4, 2, 5)]
    fres.insufficient_scores = torch.tensor([0.0, 0.0, 2.0, 0.0, 3.0, 1.0], dtype=torch.float64)
    assert pl.candidates(fres, "insufficient", 2, 1) == [4, 2]
    assert pl.candidates(fres, "insufficient", 2, 2) == [4, 2, 5, 0]  # the list, then the ranking


# -- editing ------------------------------------------------------------------------------------------
def _edit_data() -> tuple[nn.Linear, FeatureSet, FeatureSet, FeatureSet, list[int]]:
    """Two classes over four neurons with groups (label × neuron 2 present), for a few epochs of editing."""
    g = torch.Generator().manual_seed(0)

    def split(n: int, name: str, offset: int) -> FeatureSet:
        labels = torch.arange(n) % 2
        spurious = (torch.arange(n) // 2) % 2
        feats = torch.rand(n, 4, generator=g) * 1.5
        feats[:, 0] += labels.float()  # core
        feats[:, 2] += spurious.float()  # spurious
        return FeatureSet(
            feats,
            torch.zeros(n, 2),
            labels,
            labels * 2 + spurious,
            torch.arange(offset, offset + n),
            [f"{name}/{i}" for i in range(n)],
            {"split": name, "num_groups": 4},
        )

    dec = nn.Linear(4, 2)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[-0.5, 0.0, 1.0, 0.0], [0.5, 0.0, -1.0, 0.0]]))
        dec.bias.zero_()
    train, val, test = split(32, "train", 0), split(16, "val", 100), split(16, "test", 200)
    return dec, train, val, test, [6, 1, 2, 7]


EDIT = {"epochs": 3, "lr": 0.5, "batch_size": 8, "schedule": "constant"}


def test_edit_and_measure_edits_with_the_gamma_given_and_measures_the_edited_layer() -> None:
    dec, train, val, test, counts = _edit_data()
    original = dec.weight.detach().clone()
    edit, after = pl.edit_and_measure(
        "neuroinspect:fast",
        EDIT,
        dec,
        train,
        val,
        test,
        1,
        [2],
        gamma=0.9,
        seed=3,
        n_boot=40,
        train_counts=counts,
    )
    assert edit.editor == "neuroinspect" and edit.neurons == [2] and edit.class_idx == 1
    assert edit.settings["gamma"] == 0.9 and edit.settings["epochs"] == 3  # the variant's settings and γ
    assert edit.info["seed"] == 3
    assert torch.equal(dec.weight, original)  # the layer given is not modified
    assert not torch.equal(edit.decision.weight, original)
    # "after": the test metrics of the edited layer (train-weighted with the given counts, seeded intervals)
    assert after == measure(edit.decision, test, 1, train_group_counts=counts, n_boot=40, seed=3)
    preds = edit.decision(test.features).argmax(1)
    assert after["test_acc"] == pytest.approx(float((preds == test.labels).float().mean()))
    assert after["mean_acc_train_weighted"] is not None and after["ci"]
    unedited = measure(dec, test, 1, train_group_counts=counts, n_boot=40, seed=3)
    assert after["test_acc"] != unedited["test_acc"]
    assert after["ci"] != measure(edit.decision, test, 1, train_group_counts=counts, n_boot=40, seed=4)["ci"]
    # γ in the editor's own settings wins over the γ of the set
    edit2, _ = pl.edit_and_measure(
        "neuroinspect",
        {**EDIT, "gamma": 0.8},
        dec,
        train,
        val,
        test,
        1,
        [2],
        gamma=0.9,
        seed=3,
        n_boot=0,
        train_counts=counts,
    )
    assert edit2.settings["gamma"] == 0.8
    # no γ given: the editor's default
    edit3, _ = pl.edit_and_measure(
        "neuroinspect", EDIT, dec, train, val, test, 1, [2], gamma=None, seed=3, n_boot=0, train_counts=counts
    )
    default = pl.edit_and_measure(
        "neuroinspect",
        {**EDIT, "gamma": None},
        dec,
        train,
        val,
        test,
        1,
        [2],
        gamma=None,
        seed=3,
        n_boot=0,
        train_counts=counts,
    )[0]
    assert edit3.settings["gamma"] == default.settings["gamma"] != 0.9


def test_editors_without_neurons_or_gamma_and_the_empty_selection() -> None:
    dec, train, val, test, counts = _edit_data()
    # fc takes neither neurons nor γ: both are withheld from it
    edit, after = pl.edit_and_measure(
        "fc", EDIT, dec, train, val, test, 1, [2], gamma=0.9, seed=0, n_boot=0, train_counts=counts
    )
    assert edit.editor == "fc" and edit.neurons == [] and "gamma" not in edit.settings
    assert (
        after["test_acc"] == measure(edit.decision, test, 1, train_group_counts=counts, n_boot=0)["test_acc"]
    )
    # an empty selection leaves the layer as it is: "after" is the original layer's metrics
    empty, after = pl.edit_and_measure(
        "neuroinspect", EDIT, dec, train, val, test, 0, [], gamma=0.9, seed=0, n_boot=0, train_counts=counts
    )
    assert empty.info == {"empty_selection": True} and empty.neurons == [] and empty.class_idx == 0
    assert torch.equal(empty.decision.weight, dec.weight) and empty.decision is not dec
    assert empty.settings["gamma"] == 0.9 and empty.editor == "neuroinspect"
    assert after == measure(dec, test, 0, train_group_counts=counts, n_boot=0)
    # an editor that reads group labels needs them; the others do not
    no_groups = FeatureSet(train.features, train.logits, train.labels, None, train.indices, train.paths, {})
    edit, _ = pl.edit_and_measure(
        "neuroinspect",
        EDIT,
        dec,
        no_groups,
        val,
        test,
        1,
        [2],
        gamma=0.9,
        seed=0,
        n_boot=0,
        train_counts=None,
    )
    assert edit.neurons == [2]
    with pytest.raises(UserError, match="editor dfr:x needs group labels; the dataset has none"):
        pl.edit_and_measure(
            "dfr:x", {}, dec, no_groups, val, test, 1, None, gamma=None, seed=0, n_boot=0, train_counts=None
        )


def test_no_edit_is_the_unchanged_layer() -> None:
    dec = _identity(3)
    res = no_edit("neuroinspect", dec, 2, {"gamma": 1.1})
    assert res.editor == "neuroinspect" and res.class_idx == 2 and res.neurons == []
    assert torch.equal(res.decision.weight, dec.weight) and res.decision is not dec
    with torch.no_grad():  # the result owns its weights: changing them leaves the layer given alone
        res.decision.weight.add_(1.0)
    assert torch.equal(dec.weight, torch.eye(3))
    assert res.settings == {"gamma": 1.1} and res.selected_epoch is None and res.history == []
    assert res.info == {"empty_selection": True}
    assert res.notes == ["the selector chose no neuron: the layer is unchanged"]


def test_edit_record_names_the_set_the_variant_and_the_gamma_rule() -> None:
    dec, train, val, test, counts = _edit_data()
    before = measure(dec, test, 1, train_group_counts=counts, n_boot=0)
    edit, after = pl.edit_and_measure(
        "neuroinspect:fast",
        EDIT,
        dec,
        train,
        val,
        test,
        1,
        [2, 0],
        gamma=0.95,
        seed=0,
        n_boot=0,
        train_counts=counts,
    )
    ns = NeuronSet("counterfactual:v2+labels", "counterfactual:v2", "labels", [2, 0])
    common: dict[str, Any] = {
        "dataset": "spurious-shapes",
        "model": "m",
        "seed": 4,
        "experiment": "exp",
        "dataset_params": {"n_train": 32},
        "k": 2,
        "neuron_list": "both",
        "provenance": PROV,
    }
    rec = pl.edit_record(
        edit,
        before,
        after,
        editor="neuroinspect:fast",
        ns=ns,
        gamma_auto=True,
        run_id="r1",
        extra_config={"finder_split": "val"},
        **common,
    )
    validate_record(rec)
    assert rec["method"] == {"editor": "neuroinspect", "finder": "counterfactual", "selector": "labels"}
    cfg = rec["config"]
    assert cfg["variant"] == "fast" and cfg["finder_variant"] == "v2" and cfg["source"] == ns.key
    assert cfg["k"] == 2 and cfg["neuron_list"] == "both" and cfg["experiment"] == "exp"
    assert cfg["dataset_params"] == {"n_train": 32} and cfg["finder_split"] == "val"
    assert cfg["gamma"] == "auto" and rec["metrics"]["gamma_used"] == 0.95
    assert cfg["neurons"] == [2, 0] and rec["seed"] == 4 and rec["run_id"] == "r1"
    assert rec["metrics"]["after"]["test_acc"] == after["test_acc"]
    assert rec["metrics"]["before"]["test_acc"] == before["test_acc"]
    # a given γ is a number in the config; a plain finder has no variant
    plain = NeuronSet("counterfactual+top", "counterfactual", "top", [2, 0])
    rec = pl.edit_record(edit, before, after, editor="neuroinspect", ns=plain, gamma_auto=False, **common)
    assert rec["config"]["gamma"] == 0.95 and rec["config"]["variant"] is None
    assert rec["config"]["finder_variant"] is None and rec["run_id"] != "r1"
    # an editor that uses no neurons: no set, no selection settings, no γ rule
    fc, fc_after = pl.edit_and_measure(
        "fc", EDIT, dec, train, val, test, 1, None, gamma=0.95, seed=0, n_boot=0, train_counts=counts
    )
    rec = pl.edit_record(fc, before, fc_after, editor="fc", ns=None, gamma_auto=True, **common)
    validate_record(rec)
    assert rec["method"] == {"editor": "fc", "finder": "none"}
    cfg = rec["config"]
    assert cfg["source"] is None and cfg["k"] is None and cfg["neuron_list"] is None
    assert cfg["finder_variant"] is None and "gamma" not in cfg
    # a control set has no selector
    ctl = NeuronSet("random-neurons", "random-neurons", None, [2, 0])
    rec = pl.edit_record(edit, before, after, editor="neuroinspect", ns=ctl, gamma_auto=True, **common)
    assert rec["method"] == {"editor": "neuroinspect", "finder": "random-neurons"}
    assert rec["config"]["source"] == "random-neurons" and rec["config"]["gamma"] == "auto"


def _mitigation(editor: str, after: dict[str, float | None], variant: str | None = None) -> dict[str, Any]:
    return {
        "task": "mitigation",
        "method": {"editor": editor, "finder": "counterfactual"},
        "config": {"variant": variant},
        "metrics": {"after": dict(after)},
    }


def test_after_minus_fc_is_against_the_first_plain_fc_edit() -> None:
    keys = pl.FC_KEYS
    fc_long = _mitigation("fc", dict.fromkeys(keys, 0.9), variant="long")  # a variant: not the baseline
    fc = _mitigation(
        "fc", {"test_acc": 0.5, "class_acc": 0.25, "worst_class_acc": 0.25, "worst_group_acc": None}
    )
    fc_again = _mitigation("fc", dict.fromkeys(keys, 0.0))
    ni = _mitigation(
        "neuroinspect", {"test_acc": 0.75, "class_acc": 0.5, "worst_class_acc": None, "worst_group_acc": 0.5}
    )
    recovery = {
        "task": "neuron_recovery",
        "method": {"finder": "counterfactual"},
        "config": {},
        "metrics": {},
    }
    records = [recovery, fc_long, fc, ni, fc_again]
    pl.relative_to_fc(records)
    assert ni["metrics"]["after_minus_fc"] == {
        "test_acc": 0.25,
        "class_acc": 0.25,
        "worst_class_acc": None,  # missing on this edit
        "worst_group_acc": None,  # missing on fc
    }
    assert fc["metrics"]["after_minus_fc"] == {
        "test_acc": 0.0,
        "class_acc": 0.0,
        "worst_class_acc": 0.0,
        "worst_group_acc": None,
    }
    assert fc_long["metrics"]["after_minus_fc"]["test_acc"] == pytest.approx(0.4)
    assert fc_again["metrics"]["after_minus_fc"]["class_acc"] == -0.25
    assert recovery["metrics"] == {}
    # fc's "after" given (the sweep reads it from another stage)
    other = _mitigation("neuroinspect", dict.fromkeys(keys, 0.5))
    pl.relative_to_fc([other], fc_after=dict.fromkeys(keys, 0.125))
    assert other["metrics"]["after_minus_fc"] == dict.fromkeys(keys, 0.375)
    # without a plain fc edit nothing is added
    alone = [
        _mitigation("neuroinspect", dict.fromkeys(keys, 0.5)),
        _mitigation("fc", dict.fromkeys(keys, 0.1), "x"),
    ]
    pl.relative_to_fc(alone)
    assert all("after_minus_fc" not in r["metrics"] for r in alone)


def test_is_plain_fc() -> None:
    assert pl.is_plain_fc(_mitigation("fc", {}))
    assert not pl.is_plain_fc(_mitigation("fc", {}, variant="long"))
    assert not pl.is_plain_fc(_mitigation("neuroinspect", {}))
    assert not pl.is_plain_fc({"task": "evaluation", "method": {"editor": "fc"}, "config": {}})


# -- the selectors' context and settings -------------------------------------------------------------------
class _Pictures:
    """A selector double that reads CLIP-Illusion images (``use_clip`` as given)."""

    uses_visualizations = True
    visualizer = "clip_illusion"

    def __init__(self, **settings: Any) -> None:
        self.visualizer_settings = settings


def test_needs_clip() -> None:
    top = SELECTORS.get("top")()
    assert not needs_clip({"top": top})
    assert needs_clip({"top": top, "clip": SELECTORS.get("clip")()})
    # the clip selector reads CLIP itself, even over images optimized without it
    assert needs_clip({"clip": SELECTORS.get("clip")(visualizer_settings={"use_clip": False})})
    assert needs_clip({"p": _Pictures()})  # CLIP-guided images by default
    assert not needs_clip({"p": _Pictures(use_clip=False)})
    natural = _Pictures()
    natural.visualizer = "exemplars"
    assert not needs_clip({"p": natural})
    assert needs_clip({"top": top, "p": _Pictures(use_clip=True)})


def test_make_selectors_checks_settings_before_any_work(tmp_path: Path) -> None:
    cfg = ExperimentConfig(selectors=["top", "labels"], selector_settings={"labels": {"min_votes": 2}})
    with pytest.raises(UserError, match="the labels selector needs a labels file"):
        make_selectors(cfg, interactive=False)
    file = tmp_path / "labels.csv"
    file.write_text("neuron,label,class_idx,n_votes,agreement\n3,spurious,,2,1.0\n", encoding="utf-8")
    cfg.selector_settings = {"labels": {"file": str(file), "min_votes": 2}}
    sels = make_selectors(cfg, interactive=False)
    assert list(sels) == ["top", "labels"] and sels["labels"].min_votes == 2
    # on a terminal the labels selector asks instead of reading a file: no error
    cfg.selector_settings = {}
    assert make_selectors(cfg, interactive=True)["labels"].file is None
    cfg.selector_settings = {"labels": {"file": str(file), "nope": 1}}
    with pytest.raises(UserError, match="selector_settings.labels: .*nope"):
        make_selectors(cfg, interactive=False)


def test_selection_context_holds_what_the_selectors_read() -> None:
    from neuroinspect.datasets import get_dataset

    ds = get_dataset("spurious-shapes").load(None, "val", None, **TINY_SHAPES)
    train_ds = get_dataset("spurious-shapes").load(None, "train", None, **TINY_SHAPES)
    feats = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 0.0]])
    val = FeatureSet(
        feats, torch.zeros(3, 2), torch.tensor([0, 0, 1]), None, torch.arange(3), ["a", "b", "c"]
    )
    dec = nn.Linear(2, 3)
    clip = object()  # a loaded CLIP: handed on as it is
    device = torch.device("cpu")  # handed on as given (not the default's "cpu" string)
    logged: list[str] = []
    common: dict[str, Any] = {
        "surface": "model",
        "decision": dec,
        "class_idx": 1,
        "class_names": ["triangle", "square", "other"],
        "val_fs": val,
        "finder_ds": ds,
        "train_ds": train_ds,
        "clip": clip,
        "seed": 7,
        "device": device,
        "log": logged.append,
    }
    ctx = pl.selection_context(benchmark=True, selectors={"top": SELECTORS.get("top")()}, **common)
    assert ctx.surface == "model" and ctx.decision is dec and ctx.class_idx == 1
    assert ctx.class_names == ["triangle", "square", "other"]
    assert ctx.prompts == ["triangle", "square"]  # the benchmark's own class prompts
    assert ctx.class_means.tolist() == [[2.0, 4.0], [5.0, 0.0], [0.0, 0.0]]  # K = 3 rows, from val
    assert ctx.attributes == list(ds.spurious_names) and len(ctx.attributes) > 0
    assert ctx.benchmark_train is train_ds and ctx.dataset is ds
    assert ctx.visuals is None and ctx.seed == 7 and ctx.device is device and ctx.show_progress is False
    assert ctx.clip is clip
    ctx.log("x")
    assert logged == ["x"]
    # not a benchmark: no attributes, no train split, the class names as prompts; a visual selector
    # gets shared visualizations
    plain = SimpleNamespace()
    ctx = pl.selection_context(
        benchmark=False, selectors={"p": _Pictures()}, show_progress=False, **{**common, "finder_ds": plain}
    )
    assert ctx.attributes is None and ctx.benchmark_train is None and ctx.show_progress is False
    assert ctx.prompts == ["triangle", "square", "other"] and ctx.dataset is plain
    vis = ctx.visuals
    assert isinstance(vis, NeuronVisuals)
    assert vis.class_idx == 1 and vis.seed == 7 and vis.dataset is plain and vis.surface == "model"
    assert vis.class_names == ctx.prompts and vis.show_progress is False and vis.device is device
    assert vis.clip is clip and ctx.clip is clip


def test_measure_causal_scores_the_given_mistakes_against_the_given_threshold(tiny_shapes_ckpt: Path) -> None:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.evaluation import checkpoint_eval_transform
    from neuroinspect.harness.features import extract_features
    from neuroinspect.methods.causal_truth import causal_truth

    ckpt = load_checkpoint(tiny_shapes_ckpt)
    surface = ckpt.surface.eval()
    tr = checkpoint_eval_transform(ckpt, "spurious-shapes")
    ds = get_dataset("spurious-shapes").load(None, "val", tr, **TINY_SHAPES)
    val = extract_features(surface, ds, show_progress=False)
    c = pl.choose_class(surface.decision, val, None)
    mistakes = pl.class_mistakes(val, c)
    assert mistakes
    effects, truth = pl.measure_causal(
        surface, ds, tr, surface.decision, c, mistakes, threshold=0.25, batch_size=3
    )
    assert effects.class_idx == c
    assert effects.indices == [m["index"] for m in mistakes] and effects.preds == [
        m["pred"] for m in mistakes
    ]
    # the original side is the mistake's own image: its margin over the predicted class
    z = val.logits.double()
    rows = [int(np.nonzero(val.indices.numpy() == m["index"])[0][0]) for m in mistakes]
    margins = [float(z[r, c] - z[r, m["pred"]]) for r, m in zip(rows, mistakes, strict=True)]
    np.testing.assert_allclose(effects.margin_before, margins, atol=1e-4)
    assert truth.threshold == 0.25
    strict = causal_truth(effects, 0.25)
    assert np.array_equal(truth.insufficient, strict.insufficient) and np.array_equal(
        truth.excessive, strict.excessive
    )


def test_the_recovery_records_count_the_attribute_labels_of_the_neurons() -> None:
    from neuroinspect.harness.choice import edited_record, list_records
    from neuroinspect.methods.causal_truth import causal_truth, effects_from_activations

    d = 6
    effect = np.array([0.0, 1.0, 0.0, 3.0, -1.0, 2.0])
    W = np.zeros((2, d))
    W[1] = 1.0
    effects = effects_from_activations(np.zeros((1, d)), effect[None, None, :], W, None, 1, [0])
    truth = causal_truth(effects)
    fres = _imp_result([1.0] * d)
    fres.insufficient = [{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in (3, 5, 0)]
    labels = ["core", "spurious", "core", "spurious", "dead", "mixed"]
    common: dict[str, Any] = {
        "attribute_labels": labels,
        "dataset": "spurious-shapes",
        "model": "m",
        "seed": 0,
        "provenance": PROV,
        "config": {"experiment": "e"},
    }
    ins, exc = list_records("contribution:x", fres, effects, truth, ks=(2, 3), **common)
    assert ins["config"]["list"] == "insufficient" and exc["config"]["list"] == "excessive"
    assert ins["metrics"]["attribute_labels_at_k"] == {
        "2": {"spurious": 1, "mixed": 1},
        "3": {"spurious": 1, "mixed": 1, "core": 1},
    }
    ns = NeuronSet("random-neurons", "random-neurons", None, [4, 1])
    rec = edited_record(ns, effects, truth, k=2, **common)
    assert rec["metrics"]["attribute_labels"] == {"dead": 1, "spurious": 1}
    assert (
        "attribute_labels"
        not in edited_record(ns, effects, truth, k=2, **{**common, "attribute_labels": None})["metrics"]
    )
