"""Causal truth on the mistakes: E_n and margin share on a hand-built linear case, the renders of a
benchmark, direction-matched truth, and per-list scoring of a finder's lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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
