"""The activation-aware finder (margin-deficit) and the two-class notice of `neuroinspect debug`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from neuroinspect.cli import main
from neuroinspect.commands.debug import TWO_CLASS_NOTICE
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.finders import FINDERS, load_all

load_all()


def _fs(feats: list[list[float]], labels: list[int], logits: torch.Tensor) -> FeatureSet:
    n = len(labels)
    return FeatureSet(
        features=torch.tensor(feats),
        logits=logits,
        labels=torch.tensor(labels),
        groups=None,
        indices=torch.arange(n),
        paths=[f"s{i}" for i in range(n)],
        meta={"split": "val"},
    )


def test_margin_deficit_on_a_hand_made_two_class_example() -> None:
    dec = nn.Linear(3, 2)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 1.0]]))  # d = W[1] - W[0] = [1, -2, 1]
        dec.bias.zero_()
    # class 1: two correct samples (neuron 0 on, "land") and two mistakes (neuron 1 on, "water")
    feats = [[2.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.5, 1.0], [0.0, 1.0, 0.0]]
    labels = [1, 1, 1, 1, 0]
    with torch.no_grad():
        logits = dec(torch.tensor(feats))
    r = FINDERS.get("margin-deficit")().find(dec, _fs(feats, labels, logits), 1, show_progress=False)
    # prototype of the correct class-1 samples [2, 0, 1]; mistakes' mean [0, 1.25, 1]
    # deficit = d * (proto - mean mistake) = [1*2, -2*(-1.25), 1*0] = [2, 2.5, 0]
    torch.testing.assert_close(r.scores, torch.tensor([2.0, 2.5, 0.0], dtype=torch.float64))
    assert r.top_neurons("insufficient") == [0]  # the mistakes lack it
    assert r.top_neurons("excessive") == [1]  # the mistakes carry it
    assert r.counts["mistakes"] == 2 and r.counts["correct"] == 2
    # the deficits add up to the mean margin gain of moving every mistake onto the prototype
    W = dec.weight.detach().double()
    f = torch.tensor(feats, dtype=torch.float64)
    margin = f @ (W[1] - W[0])
    assert float(r.scores.sum()) == pytest.approx(float(margin[:2].mean() - margin[2:4].mean()))


def test_debug_prints_the_two_class_notice_for_the_counterfactual_only(
    tiny_shapes_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["debug", "--dataset", "spurious-shapes", "--ckpt", str(tiny_shapes_ckpt), "--no-progress"]
    # the random-init model gets one of its two classes wrong on the tiny split: explain that one
    rc = main([*base, "--class-idx", "1", "--max-steps", "50"])
    if rc == 2:
        assert "has no mistakes" in capsys.readouterr().err
        base += ["--class-idx", "0"]
        assert main([*base, "--max-steps", "50"]) == 0
    else:
        assert rc == 0
        base += ["--class-idx", "1"]
    captured = capsys.readouterr()
    assert TWO_CLASS_NOTICE in captured.err and len(TWO_CLASS_NOTICE.splitlines()) == 1
    assert main([*base, "--finder", "margin-deficit"]) == 0
    captured = capsys.readouterr()
    assert TWO_CLASS_NOTICE not in captured.err and "margin deficit" in captured.out


def test_margin_deficit_compares_with_the_stored_prediction_in_range() -> None:
    # three classes over two neurons; class 1's only sample is a mistake (no correct prototype: 0)
    dec = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]]))
    feats, labels = [[1.0, 1.0], [5.0, 0.0]], [1, 0]
    # deficit_n = d_n · (0 − f_n) with d = W[1] − W[k]
    stored_2 = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # predicted as class 2: d = [0, −3]
    r = FINDERS.get("margin-deficit")().find(dec, _fs(feats, labels, stored_2), 1, show_progress=False)
    torch.testing.assert_close(r.scores, torch.tensor([0.0, 3.0], dtype=torch.float64))
    assert r.settings["prototype"] == "zero" and r.counts["correct"] == 0
    # logits cached without a prediction (-1) compare with class 0; wider stale logits with the last class
    none = FINDERS.get("margin-deficit")().find(
        dec, _fs(feats, labels, torch.zeros(0, 3)), 1, show_progress=False
    )
    torch.testing.assert_close(none.scores, torch.tensor([1.0, 0.0], dtype=torch.float64))  # d = [−1, 0]
    wide = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])  # "class 3" of another head
    stale = FINDERS.get("margin-deficit")().find(dec, _fs(feats, labels, wide), 1, show_progress=False)
    torch.testing.assert_close(stale.scores, torch.tensor([0.0, 3.0], dtype=torch.float64))
