"""Causal truth on the mistakes: E_n and margin share on a hand-built linear case, the renders of a
benchmark, direction-matched truth, and per-list scoring of a finder's lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuroinspect.errors import UserError
from neuroinspect.harness.choice import NeuronSet, causal_records
from neuroinspect.methods.causal_truth import (
    causal_truth,
    effects_from_activations,
    list_scores,
    margin_share,
    mistake_effects,
)
from neuroinspect.methods.finders.base import FinderResult

PROV = {
    "versions": {"torch": None, "timm": None, "open_clip_torch": None, "captum": None, "torch-lucent": None},
    "git_commit": None,
    "device": "cpu",
    "started_at": None,
    "wall_seconds": 0.0,
}

# A linear decision layer over 4 known features, class c = 1, two mistakes predicted as class 0.
W = np.array([[0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 3.0]])  # d = W[1] - W[0] = [1, -1, -2, 3]
B = np.array([0.5, -0.5])
ORIG = np.array([[1.0, 2.0, 0.0, 0.0], [2.0, 1.0, 1.0, 0.0]])
CF = np.array([[[1.0, 0.0, 0.5, 1.0]], [[2.0, 0.0, 1.0, 0.5]]])  # one other background per mistake


def _effects():  # noqa: ANN202
    return effects_from_activations(ORIG, CF, W, B, 1, [0, 0])


def test_effects_and_margin_share_on_a_hand_built_linear_model() -> None:
    eff = _effects()
    # per mistake: d * (cf - orig) = [0, 2, -1, 3] and [0, 1, 0, 1.5]
    np.testing.assert_allclose(eff.per_mistake, [[0, 2, -1, 3], [0, 1, 0, 1.5]])
    np.testing.assert_allclose(eff.effect, [0, 1.5, -0.5, 2.25])
    np.testing.assert_allclose(eff.delta, [0, -1.5, 0.25, 0.75])
    # the effects add up to the change of each mistake's margin z_c - z_k (the bias cancels)
    np.testing.assert_allclose(eff.per_mistake.sum(axis=1), eff.margin_after - eff.margin_before)
    np.testing.assert_allclose(eff.margin_before, [-2.0, -2.0])  # z1 - z0, with b1 - b0 = -1
    np.testing.assert_allclose(eff.margin_after, [2.0, 0.5])  # -2 + 4 and -2 + 2.5: both flip
    assert eff.flip_rate == pytest.approx(1.0)
    # margin share = sum over S of E / sum of the positive E (3.75); negative members count against
    assert margin_share(eff.effect, [3]) == pytest.approx(2.25 / 3.75)
    assert eff.margin_share([1, 3]) == pytest.approx(1.0)
    assert eff.margin_share([2, 3, 3]) == pytest.approx((2.25 - 0.5) / 3.75)
    assert eff.margin_share([]) == 0.0
    assert eff.oracle(1) == [3] and eff.oracle(4) == [3, 1]  # only neurons with E > 0


def test_counterfactual_with_several_other_values_is_averaged() -> None:
    cf = np.stack([CF[:, 0], CF[:, 0] + np.array([0, 0, 0, 2.0])], axis=1)  # (M, 2, D)
    eff = effects_from_activations(ORIG, cf, W, B, 1, [0, 0])
    np.testing.assert_allclose(eff.effect, [0, 1.5, -0.5, 2.25 + 3.0])


def test_direction_matched_truth_and_its_threshold() -> None:
    eff = _effects()
    ct = causal_truth(eff, threshold=0.1)  # cutoff 0.225
    assert ct.cutoff == pytest.approx(0.225)
    assert np.flatnonzero(ct.insufficient).tolist() == [3]  # the re-render raises it
    assert np.flatnonzero(ct.excessive).tolist() == [1]  # the re-render lowers it
    assert ct.counts() == {"insufficient": 1, "excessive": 1, "either": 2}
    strict = causal_truth(eff, threshold=0.9)  # only E >= 2.025
    assert np.flatnonzero(strict.either).tolist() == [3]


def _finder_result(insufficient: list[int], excessive: list[int], D: int = 4) -> FinderResult:
    z = torch.zeros(D, dtype=torch.float64)
    ins, exc = z.clone(), z.clone()
    for r, n in enumerate(insufficient):
        ins[n] = 10 - r
    for r, n in enumerate(excessive):
        exc[n] = 20 - r  # the merged ranking would put the excessive neurons first
    return FinderResult(
        method="fake",
        class_idx=1,
        insufficient=[{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in insufficient],
        excessive=[{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in excessive],
        scores=ins + exc,
        insufficient_scores=ins,
        excessive_scores=exc,
        imp=torch.ones(D, dtype=torch.float64),
        counts={"mistakes": 2},
    )


def test_per_list_scoring_scores_each_list_against_its_own_truth() -> None:
    eff = _effects()
    ct = causal_truth(eff)
    fres = _finder_result(insufficient=[3, 0], excessive=[2, 1])
    assert fres.ordered("insufficient")[:2] == [3, 0] and fres.ordered("excessive")[:2] == [2, 1]
    assert fres.ranking("both")[0] == 2  # merged: the excessive list's first neuron
    sets = {"fake+top": NeuronSet("fake+top", "fake", "top", [3], imp_finder="fake")}
    recs, summary = causal_records(
        {"fake": fres},
        sets,
        eff,
        ct,
        k=1,
        ks=(1, 2),
        attribute_labels=["core", "spurious", "mixed", "spurious"],
        dataset="spurious-shapes",
        model="m",
        seed=0,
        provenance=PROV,
        config={"experiment": "t"},
    )
    ins, exc = summary["fake"]["insufficient"], summary["fake"]["excessive"]
    assert ins["list"] == "insufficient" and ins["precision_at_k"]["1"] == 1.0  # neuron 3
    assert ins["precision_at_k"]["2"] == 0.5 and ins["chance_precision"] == 0.25
    assert ins["margin_share_at_k"]["1"] == pytest.approx(2.25 / 3.75)
    assert exc["precision_at_k"]["1"] == 0.0  # neuron 2: E < 0
    assert exc["precision_at_k"]["2"] == 0.5 and exc["margin_share_at_k"]["2"] == pytest.approx(1.0 / 3.75)
    assert ins["attribute_labels_at_k"]["1"] == {"spurious": 1}  # descriptive column
    edited = summary["fake+top"]["edited"]
    assert edited["precision_at_k"] == {"1": 1.0} and edited["core_let_through"] == 0
    assert {r["config"]["list"] for r in recs} == {"insufficient", "excessive", "edited"}
    assert all(r["task"] == "neuron_recovery" for r in recs)
    assert next(r for r in recs if r["config"]["list"] == "edited")["method"] == {
        "finder": "fake",
        "selector": "top",
    }


def test_list_scores_chance_rates() -> None:
    rel = np.array([True, False, False, True])
    e = np.array([1.0, 0.0, -1.0, 3.0])
    sc = list_scores([3, 2, 1, 0], rel, e, (1, 4))
    assert sc["precision_at_k"] == {"1": 1.0, "4": 0.5}
    assert sc["chance_precision"] == 0.5
    assert sc["margin_share_at_k"]["4"] == pytest.approx(3.0 / 4.0)
    assert sc["chance_margin_share_at_k"]["4"] == pytest.approx(3.0 / 4.0)  # k = D: all neurons


def test_mistake_effects_renders_the_benchmark_and_adds_up(tiny_shapes_ckpt: Path) -> None:
    from conftest import TINY_SHAPES

    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.evaluation import checkpoint_eval_transform

    ckpt = load_checkpoint(tiny_shapes_ckpt)
    surface = ckpt.surface.eval()
    tr = checkpoint_eval_transform(ckpt, "spurious-shapes")
    ds = get_dataset("spurious-shapes").load(None, "val", tr, **TINY_SHAPES)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        feats = surface.features(x).double()
        preds = surface.decision(feats.float()).argmax(1)
    c = 1
    wrong = [i for i in range(len(ds)) if ds.samples[i].label == c and int(preds[i]) != c]
    if not wrong:  # a random-init model may get class 1 right: explain class 0 instead
        c = 0
        wrong = [i for i in range(len(ds)) if ds.samples[i].label == c and int(preds[i]) != c]
    assert wrong
    eff = mistake_effects(
        surface, ds, tr, surface.decision, c, wrong, [int(preds[i]) for i in wrong], show_progress=False
    )
    assert eff.num_mistakes == len(wrong) and eff.effect.shape == (surface.num_features,)
    np.testing.assert_allclose(
        eff.per_mistake.sum(axis=1), eff.margin_after - eff.margin_before, rtol=1e-6, atol=1e-6
    )
    # the original side is the dataset image itself: its margin is the model's margin on it
    W = surface.decision.weight.detach().double()
    b = surface.decision.bias.detach().double()
    z = feats[wrong] @ W.T + b
    k = preds[wrong]
    np.testing.assert_allclose(
        eff.margin_before, (z[:, c] - z[torch.arange(len(wrong)), k]).numpy(), atol=1e-4
    )


def test_record_validator_checks_the_list_and_margin_shares() -> None:
    from neuroinspect.errors import RecordError
    from neuroinspect.harness.records import make_record

    def rec(**metrics: object) -> dict:
        return make_record(
            task="neuron_recovery",
            dataset="d",
            model="m",
            method={"finder": "f"},
            seed=0,
            metrics={"precision_at_k": {"5": 0.2}, **metrics},
            config={},
            provenance=PROV,
        )

    assert rec(list="edited", margin_share_at_k={"5": -0.3})["metrics"]["list"] == "edited"
    with pytest.raises(RecordError, match="metrics.list"):
        rec(list="both")
    with pytest.raises(RecordError, match="margin_share_at_k.5"):
        rec(list="insufficient", margin_share_at_k={"5": 1.5})


def test_truth_masks_by_name_and_the_oracle_keeps_small_positive_effects() -> None:
    ct = causal_truth(_effects())
    for name in ("both", "edited", "either"):
        assert np.flatnonzero(ct.mask(name)).tolist() == [1, 3]
    assert np.flatnonzero(ct.mask("insufficient")).tolist() == [3]
    assert np.flatnonzero(ct.mask("excessive")).tolist() == [1]
    with pytest.raises(ValueError, match="unknown list 'top'"):
        ct.mask("top")
    # effects below one logit still count as helping class c
    W2 = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    small = effects_from_activations(np.zeros((1, 3)), np.array([[[0.25, 0.0, 0.5]]]), W2, None, 1, [0])
    assert small.oracle(3) == [2, 0]


def _list_record(which: str = "insufficient", **kw: object) -> dict:
    from neuroinspect.methods.causal_truth import list_recovery_record

    eff = _effects()
    eff.split = "val"
    return list_recovery_record(
        [3, 0, 1, 2],
        which,
        eff,
        causal_truth(eff, threshold=0.2),
        method={"finder": "fake"},
        dataset="spurious-shapes",
        model="m",
        seed=3,
        provenance=PROV,
        ks=(1, 2),
        **kw,  # type: ignore[arg-type]
    )


def test_a_list_record_says_what_truth_it_was_scored_against() -> None:
    rec = _list_record(attribute_labels=["core", "spurious", "mixed", "spurious"], config={"experiment": "t"})
    assert rec["class_idx"] == 1 and rec["seed"] == 3 and rec["method"] == {"finder": "fake"}
    assert rec["config"] == {
        "list": "insufficient",
        "truth": {"kind": "causal_mistakes", "threshold": 0.2, "split": "val", "ks": [1, 2]},
        "experiment": "t",
    }
    m = rec["metrics"]
    assert (m["flip_rate"], m["n_mistakes"], m["num_features"]) == (1.0, 2, 4)
    # the first two of [3, 0]: one spurious and one core neuron
    assert m["attribute_labels_at_k"] == {"1": {"spurious": 1}, "2": {"spurious": 1, "core": 1}}
    assert "attribute_labels_at_k" not in _list_record()["metrics"]
    assert _list_record(attribute_labels=["core", "spurious", "spurious", "spurious"])["metrics"][
        "attribute_labels_at_k"
    ]["1"] == {"spurious": 1}
    twice = _list_record(attribute_labels=["spurious"] * 4)["metrics"]["attribute_labels_at_k"]
    assert twice["2"] == {"spurious": 2}
    with pytest.raises(ValueError, match="which must be one of .*'both'"):
        _list_record("both")


def test_mistake_effects_to_json_reports_the_means() -> None:
    eff = _effects()
    eff.split = "test"
    out = eff.to_json()
    assert out["class_idx"] == 1 and out["split"] == "test" and out["n_mistakes"] == 2
    assert out["flip_rate"] == 1.0
    assert out["mean_margin_before"] == pytest.approx(-2.0) and out["mean_margin_after"] == pytest.approx(
        1.25
    )
    assert out["effect"] == [0.0, 1.5, -0.5, 2.25] and out["delta"] == [0.0, -1.5, 0.25, 0.75]
    assert out["indices"] == [0, 1] and out["preds"] == [0, 0]
    empty = effects_from_activations(np.zeros((0, 4)), np.zeros((0, 1, 4)), W, B, 1, [])
    assert empty.flip_rate == 0.0 and empty.to_json()["mean_margin_before"] is None
    assert empty.to_json()["mean_margin_after"] is None and empty.effect.tolist() == [0.0] * 4


def _one_mistake(effect_rows: list[float], delta: list[float]):  # noqa: ANN202
    """Effects of one mistake (class 1 predicted as 0) whose margin weights are d = E / Δa (1 where Δa = 0)."""
    e, da = np.asarray(effect_rows, dtype=float), np.asarray(delta, dtype=float)
    d = np.where(da != 0, e / np.where(da != 0, da, 1.0), 1.0)
    W = np.stack([np.zeros_like(d), d])
    return effects_from_activations(np.zeros((1, d.size)), da[None, None, :], W, None, 1, [0])


def test_threshold_bounds_and_the_cutoff_itself_are_causal() -> None:
    eff = _effects()
    assert np.flatnonzero(causal_truth(eff, 0.0).either).tolist() == [1, 3]  # every E > 0
    assert causal_truth(eff, 0.0).cutoff == 0.0 and causal_truth(eff, 0.0).threshold == 0.0
    assert np.flatnonzero(causal_truth(eff, 1.0).either).tolist() == [3]  # only the largest
    for bad in (-0.01, 1.01):
        with pytest.raises(UserError, match=rf"threshold must be in \[0, 1\], got {bad}"):
            causal_truth(eff, bad)
    # E = [2, 1, 0.5] at threshold 0.5: the cutoff is 1, and E = 1 is at least the cutoff
    at = causal_truth(_one_mistake([2.0, 1.0, 0.5], [1.0, 1.0, 1.0]), 0.5)
    assert at.cutoff == 1.0 and np.flatnonzero(at.insufficient).tolist() == [0, 1]
    # effects below one logit are causal too
    small = causal_truth(_one_mistake([0.5, 0.25, 0.01], [1.0, -1.0, 1.0]), 0.1)
    assert np.flatnonzero(small.insufficient).tolist() == [0]
    assert np.flatnonzero(small.excessive).tolist() == [1]
    assert small.threshold == 0.1 and isinstance(small.threshold, float)


def _edited_chance(effects, neurons: list[int]) -> dict:  # noqa: ANN001
    """The chance margin share at k = 2 of an edited-set record."""
    from neuroinspect.methods.causal_truth import edited_recovery_record

    rec = edited_recovery_record(
        neurons,
        2,
        effects,
        causal_truth(effects),
        method={"finder": "f"},
        dataset="d",
        model="m",
        seed=0,
        provenance=PROV,
    )
    return rec["metrics"]["chance_margin_share_at_k"]


def test_no_positive_effect_means_no_truth_and_zero_shares() -> None:
    eff = _one_mistake([0.0, -1.0, 0.0], [1.0, -1.0, 0.0])  # E = 0 with Δa = 1: no help to class c
    assert eff.effect.tolist() == [0.0, -1.0, 0.0]
    ct = causal_truth(eff)
    assert ct.counts() == {"insufficient": 0, "excessive": 0, "either": 0} and ct.cutoff == 0.0
    assert eff.oracle(3) == [] and margin_share(eff.effect, [0, 1]) == 0.0
    sc = list_scores([0, 1, 2], ct.either, eff.effect, (2,))
    assert sc["chance_margin_share_at_k"] == {"2": 0.0} and sc["margin_share_at_k"] == {"2": 0.0}
    assert sc["n_relevant"] == 0
    assert list_scores([0], np.array([True, True, False]), eff.effect, (1,))["n_relevant"] == 2
    # a positive total below one logit is still a total
    small = np.array([0.2, 0.3, -0.1])
    assert margin_share(small, [1]) == pytest.approx(0.6)
    assert list_scores([1], small > 0, small, (1,))["chance_margin_share_at_k"]["1"] == pytest.approx(
        0.4 / 0.5 / 3
    )
    # a layer without inputs: zero rates, no division by zero
    empty = effects_from_activations(np.zeros((1, 0)), np.zeros((1, 1, 0)), np.zeros((2, 0)), None, 1, [0])
    ct0 = causal_truth(empty)
    assert ct0.cutoff == 0.0 and ct0.counts()["either"] == 0
    assert list_scores([], ct0.either, empty.effect, (1,))["chance_precision"] == 0.0


def test_a_neuron_whose_mean_change_is_zero_is_in_neither_direction() -> None:
    # three classes; mistake 1 predicted as 0 (d = 1), mistake 2 as 2 (d = -1); Δa = +1 and -1:
    # both raise the margin (E = 1) but the mean activation change is 0
    W3 = np.array([[0.0], [1.0], [2.0]])
    eff = effects_from_activations(np.zeros((2, 1)), np.array([[[1.0]], [[-1.0]]]), W3, None, 1, [0, 2])
    assert eff.effect.tolist() == [1.0] and eff.delta.tolist() == [0.0]
    ct = causal_truth(eff)
    assert not ct.insufficient.any() and not ct.excessive.any()


def test_float32_activations_and_weights_are_computed_in_float64() -> None:
    # a mean of 1e8 + 8 and 1e8 is 1e8 + 4, which float32 cannot hold; 1e8 + 8 - 1 neither
    a = np.array([[1e8]], dtype=np.float32)
    cf = np.array([[[1e8 + 8], [1e8]]], dtype=np.float32)
    W32 = np.array([[1.0], [1e8 + 8]], dtype=np.float32)
    eff = effects_from_activations(a, cf, W32, None, 1, [0])
    assert eff.delta.tolist() == [4.0]
    assert eff.effect.tolist() == [4.0 * (1e8 + 7)]
    # 2^24 + 1 + 1 in float32 is 2^24: the share's total is summed in float64
    e32 = np.array([2.0**24, 1.0, 1.0], dtype=np.float32)
    assert margin_share(e32, [1, 2]) == 2.0 / (2.0**24 + 2.0)  # exact: the same float64 division


def test_the_edited_record_scores_the_set_against_either_direction() -> None:
    from neuroinspect.methods.causal_truth import edited_recovery_record
    from neuroinspect.methods.selectors.base import Selection

    eff = _effects()  # E = [0, 1.5, -0.5, 2.25]; causal in either direction: 1 and 3
    eff.split = "val"
    ct = causal_truth(eff)
    sel = Selection("labels", [3, 2], [3, 2, 0, 1], labels={3: "spurious", 2: "spurious", 0: "core"})
    selection = {"counts": sel.counts(), "candidates": 4}

    def edited(neurons: list[int], **kw: object) -> dict:
        return edited_recovery_record(
            neurons,
            2,
            eff,
            ct,
            method={"finder": "fake", "selector": "labels"},
            dataset="d",
            model="m",
            seed=1,
            provenance=PROV,
            **kw,  # type: ignore[arg-type]
        )

    rec = edited(
        [3, 2], attribute_labels=["core", "spurious", "mixed", "core"], selection=selection, config={"x": 1}
    )
    m = rec["metrics"]
    assert rec["class_idx"] == 1 and rec["task"] == "neuron_recovery"
    assert m["list"] == "edited" and m["precision_at_k"] == {"2": 0.5}  # 3 is causal, 2 is not
    assert m["margin_share_at_k"] == {"2": pytest.approx((2.25 - 0.5) / 3.75)}
    assert m["chance_precision"] == 0.5 and m["n_relevant"] == 2
    # k random neurons: k / D of the total effect (3.25) over the positive effect (3.75)
    assert m["chance_margin_share_at_k"] == {"2": pytest.approx(2 / 4 * 3.25 / 3.75)}
    assert (m["n_selected"], m["causal_selected"], m["flip_rate"], m["n_mistakes"]) == (2, 1, 1.0, 2)
    assert m["core_let_through"] == 1 and m["attribute_labels"] == {"core": 1, "mixed": 1}
    assert m["selection"] == {
        "counts": {"spurious": 2, "core": 1, "unclear": 0, "not_judged": 1},
        "candidates": 4,
    }
    assert rec["config"] == {
        "list": "edited",
        "k": 2,
        "neurons": [3, 2],
        "truth": {"kind": "causal_mistakes", "threshold": 0.1, "split": "val"},
        "x": 1,
    }
    none = edited([])["metrics"]
    assert none["precision_at_k"] == {"2": 0.0} and none["margin_share_at_k"] == {"2": 0.0}
    assert none["n_selected"] == 0 and none["causal_selected"] == 0
    assert "core_let_through" not in none and "selection" not in none and "attribute_labels" not in none


def test_effects_keep_every_per_mistake_field() -> None:
    # three other backgrounds (V = 3) for two classes (K = 2): the margin after is their mean
    cf = np.stack([CF[:, 0], CF[:, 0], ORIG], axis=1)  # the third render changes nothing
    eff = effects_from_activations(ORIG, cf, W, B, 1, np.array([[0], [0]]), indices=[7, 2])
    np.testing.assert_allclose(eff.margin_after, [(2.0 + 2.0 - 2.0) / 3, (0.5 + 0.5 - 2.0) / 3])
    np.testing.assert_allclose(eff.flipped, [2 / 3, 2 / 3])  # two of three renders flip each mistake
    assert eff.flip_rate == pytest.approx(2 / 3)
    np.testing.assert_allclose(eff.margin_weight, [1.0, -1.0, -2.0, 3.0])  # W[1] - W[0]
    assert eff.indices == [7, 2] and eff.preds == [0, 0]
    # mistakes predicted as different classes: one flips, the other does not
    W3 = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    eff3 = effects_from_activations(
        np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[[2.0, 0.0]], [[1.0, 0.0]]]), W3, None, 1, [2, 0]
    )
    np.testing.assert_allclose(eff3.margin_before, [-5.0, 0.0])  # no bias: z = W f
    np.testing.assert_allclose(eff3.margin_after, [2.0, 1.0])
    np.testing.assert_allclose(eff3.flipped, [1.0, 1.0])
    np.testing.assert_allclose(eff3.margin_weight, [1.0, -2.5])  # mean of [1, -5] and [1, 0]
    assert eff3.indices == [0, 1] and eff3.preds == [2, 0]
    empty = effects_from_activations(np.zeros((0, 3)), np.zeros((0, 2, 3)), np.zeros((2, 3)), None, 1, [])
    assert empty.delta.tolist() == [0.0] * 3 and empty.margin_weight.tolist() == [0.0] * 3


@pytest.mark.parametrize(
    ("original", "counterfactual", "preds"),
    [
        (np.zeros(4), np.zeros((1, 1, 4)), [0]),  # original not (M, D)
        (np.zeros((1, 4)), np.zeros((1, 4)), [0]),  # counterfactual not (M, V, D)
        (np.zeros((1, 4)), np.zeros((2, 1, 4)), [0]),  # another number of mistakes
        (np.zeros((1, 4)), np.zeros((1, 1, 3)), [0]),  # another width
        (np.zeros((1, 4)), np.zeros((1, 1, 4)), [0, 0]),  # a prediction too many
    ],
)
def test_effects_reject_shapes_that_do_not_match(
    original: np.ndarray, counterfactual: np.ndarray, preds: list
) -> None:
    with pytest.raises(
        ValueError, match=r"expected original \(M, D\), counterfactual \(M, V, D\), preds \(M,\)"
    ):
        effects_from_activations(original, counterfactual, W, B, 1, preds)


def test_effects_need_another_value_and_a_wrong_prediction() -> None:
    with pytest.raises(
        UserError, match="^the counterfactual needs at least one other value of the spurious attribute.$"
    ):
        effects_from_activations(ORIG, np.zeros((2, 0, 4)), W, B, 1, [0, 0])
    with pytest.raises(ValueError, match="^a mistake's predicted class must differ from class_idx$"):
        effects_from_activations(ORIG, CF, W, B, 1, [0, 1])


def test_the_edited_records_chance_share_needs_a_positive_effect() -> None:
    # E = [0, -1, 0]: no positive effect, so no share to take by chance
    assert _edited_chance(_one_mistake([0.0, -1.0, 0.0], [1.0, -1.0, 0.0]), [0, 1]) == {"2": 0.0}
    # E = [0.2, 0.3, -0.1]: a positive total below one logit is still a total; k / D of Σ E / Σ max(E, 0)
    small = _one_mistake([0.2, 0.3, -0.1], [1.0, 1.0, 1.0])
    assert _edited_chance(small, [1])["2"] == pytest.approx(2 / 3 * 0.4 / 0.5)
