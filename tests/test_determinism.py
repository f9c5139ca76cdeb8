"""Determinism that changes a table: tie-breaking and the cut boundary of the counterfactual's vote, the
feature cache's key, the bootstrap's level, the editor's early stopping and the deletion curve's order.

Every case is hand-made so that its answer is known before the code runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import binom
from torch import nn

from neuroinspect.harness.features import FeatureCache, FeatureSet
from neuroinspect.harness.metrics import classification_metrics
from neuroinspect.harness.mitigation import measure
from neuroinspect.methods.editors.base import EditContext, TrainedEditor
from neuroinspect.methods.finders import FinderResult
from neuroinspect.methods.finders.counterfactual import aggregate_vote, build_list, vote_topk

# -- the counterfactual's vote ----------------------------------------------------------------------------
# Four corrected mistakes, six neurons, top-2 positive shifts per row:
# row 0 votes n0, n1; row 1 n2, n3; row 2 n4, n0; row 3 n5, n1.
# Shares (of 4 rows): n0 = n1 = 0.5; n2 = n3 = n4 = n5 = 0.25.
# Mean |shift| (the default tie-break): n0 1.25, n1 0.75, n2 0.75, n3 0.5, n4 0.75, n5 0.5.
A = torch.tensor(
    [
        [3.0, 2.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 3.0, 2.0, 0.0, 0.0],
        [2.0, 0.0, 0.0, 0.0, 3.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0, 2.0],
    ]
)
TIEBREAK = A.abs().mean(dim=0)


def _shares(cut: float, ref: bool = False, negative: bool = False) -> dict[int, float]:
    votes = vote_topk(-A if negative else A, negative=negative, k=2, ref=ref)
    return aggregate_vote(votes, votes.rows, cut, ref=ref, tiebreak=TIEBREAK)


def test_equal_shares_go_to_the_larger_mean_shift_then_the_lower_index() -> None:
    ranked = _shares(cut=3.0)
    assert ranked == {0: 0.5, 1: 0.5, 2: 0.25, 4: 0.25, 3: 0.25, 5: 0.25}
    assert list(ranked) == [0, 1, 2, 4, 3, 5]  # dict order is the ranking
    assert list(_shares(cut=3.0, negative=True)) == [0, 1, 2, 4, 3, 5]  # the negative list alike
    # without a tie-break, equal shares go by index
    votes = vote_topk(A, negative=False, k=2)
    assert list(aggregate_vote(votes, 4, 3.0)) == [0, 1, 2, 3, 4, 5]


def test_the_reference_keeps_first_appearance_among_equal_shares() -> None:
    # rank-1 votes meet n0, n2, n4, n5 in row order, rank-2 votes then n1, n3; a stable sort by share
    assert list(_shares(cut=3.0, ref=True)) == [0, 1, 2, 4, 5, 3]


@pytest.mark.parametrize(
    ("cut", "kept"),
    [(24.999, [0, 1, 2, 4, 3, 5]), (25.0, [0, 1]), (49.999, [0, 1]), (50.0, [])],
)
def test_a_share_equal_to_the_cut_ratio_is_dropped(cut: float, kept: list[int]) -> None:
    assert list(_shares(cut)) == kept
    assert list(_shares(cut, ref=True)) == sorted(kept, key=[0, 1, 2, 4, 5, 3].index)


def test_a_neuron_in_both_lists_is_left_out_of_each_and_the_limit_counts_listed_rows() -> None:
    pos = {0: 0.5, 1: 0.5, 2: 0.25}
    neg = {1: 0.75, 3: 0.25}
    imp = torch.arange(4, dtype=torch.float64)
    assert [r["neuron"] for r in build_list(pos, neg, imp, top=2)] == [0, 2]
    assert [r["neuron"] for r in build_list(pos, neg, imp, top=2, ref=True)] == [0]  # the reference's limit


def test_full_ranking_breaks_ties_by_tiebreak_then_index() -> None:
    votes = vote_topk(A, negative=False, k=2)
    scores = votes.counts.double() / 4
    D = 8  # two more neurons that never got a vote: they come last, by tie-break then index
    pad = torch.zeros(D, dtype=torch.float64)
    pad[:6] = scores
    tb = torch.zeros(D)
    tb[:6] = TIEBREAK
    tb[7] = 0.1
    result = FinderResult(
        method="hand",
        class_idx=0,
        insufficient=[],
        excessive=[],
        scores=pad,
        insufficient_scores=pad,
        excessive_scores=torch.zeros(D, dtype=torch.float64),
        imp=torch.ones(D, dtype=torch.float64),
        counts={},
        tiebreak=tb,
    )
    assert result.ranking("insufficient") == [0, 1, 2, 4, 3, 5, 7, 6]
    assert result.ranking("both") == [0, 1, 2, 4, 3, 5, 7, 6]
    assert result.ranking("excessive") == [0, 1, 2, 4, 3, 5, 7, 6]  # all zero: tie-break, then index


# -- the counterfactual's step cap -------------------------------------------------------------------------
def test_the_step_cap_stops_before_the_capped_step() -> None:
    """A mistake that flips after s steps: with the cap at s it flips with the same shift; with the cap
    at s − 1 it is reported as never flipped, with the shift of s − 1 steps (not the flipping one)."""
    from neuroinspect.methods.finders.counterfactual import counterfactual_shifts

    g = torch.Generator().manual_seed(3)
    dec = nn.Linear(16, 3)
    with torch.no_grad():
        dec.weight.copy_(torch.randn(3, 16, generator=g) * 0.15)
        dec.bias.zero_()
    feats = torch.relu(torch.randn(12, 16, generator=g))
    free = counterfactual_shifts(dec, feats, 1, max_steps=1000)
    rows = [i for i in range(12) if int(free.steps[i]) >= 3]
    assert free.flipped.all() and rows
    i = rows[0]
    s = int(free.steps[i])
    at = counterfactual_shifts(dec, feats[i : i + 1], 1, max_steps=s)
    assert bool(at.flipped[0]) and int(at.steps[0]) == s
    torch.testing.assert_close(at.shifts[0], free.shifts[i], rtol=1e-5, atol=1e-6)
    before = counterfactual_shifts(dec, feats[i : i + 1], 1, max_steps=s - 1)
    assert not bool(before.flipped[0]) and int(before.steps[0]) == s - 1
    assert (dec(feats[i] + before.shifts[0]).argmax() != 1).item()  # still a mistake
    assert not torch.allclose(before.shifts[0], at.shifts[0])
    assert before.shifts[0].abs().sum() > 0


# -- the feature cache ------------------------------------------------------------------------------------
def test_feature_cache_recomputes_when_checkpoint_split_transform_or_data_change_and_only_then(
    tmp_path: Any,
) -> None:
    from neuroinspect.datasets import load_dataset
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.transforms import eval_transform

    torch.manual_seed(0)
    a = create_model("test_resnet", num_classes=2, image_size=16).eval()
    b = create_model("test_resnet", num_classes=2, image_size=16).eval()
    tf = eval_transform(a.data_config, "benchmark")
    params = {"image_size": 16, "n_train": 4, "n_val": 4, "n_test": 4}

    def split(name: str, **extra: Any) -> Any:
        return load_dataset("spurious-shapes", None, name, tf, **{**params, **extra})

    cache = FeatureCache(tmp_path)
    entries = lambda: len(list((tmp_path / "features").glob("*.pt")))  # noqa: E731

    def get(surface: nn.Module, sha: str, ds: Any, desc: str | None = "eval") -> torch.Tensor:
        return cache.get_or_compute(surface, sha, ds, transform_desc=desc, show_progress=False).features

    val = split("val")
    fa = get(a, "sha-a", val)
    assert entries() == 1
    with torch.no_grad():
        fb_true = b.features(torch.stack([val[i]["image"] for i in range(len(val))]))
    assert not torch.allclose(fa, fb_true)
    # the same checkpoint, split and transform: read back, even through another model object
    assert torch.equal(get(b, "sha-a", split("val")), fa) and entries() == 1
    # another checkpoint: recomputed
    torch.testing.assert_close(get(b, "sha-b", val), fb_true)
    assert entries() == 2
    # another split, other data parameters, another transform: recomputed each time
    get(a, "sha-a", split("test"))
    assert entries() == 3
    get(a, "sha-a", split("val", seed=1))
    assert entries() == 4
    get(a, "sha-a", val, desc="eval-ref")
    assert entries() == 5
    # without a description the transform's own repr is the key: another resize is another entry
    get(a, "sha-a", val, desc=None)
    same_tf = eval_transform(a.data_config, "benchmark")  # a new object, the same transform
    get(a, "sha-a", load_dataset("spurious-shapes", None, "val", same_tf, **params), desc=None)
    assert entries() == 6
    other_tf = eval_transform(create_model("test_resnet", 2, image_size=24).data_config, "benchmark")
    get(a, "sha-a", load_dataset("spurious-shapes", None, "val", other_tf, **params), desc=None)
    assert entries() == 7
    # and nothing of the above is recomputed when asked again
    for sha, ds, desc in (("sha-a", val, "eval"), ("sha-b", val, "eval"), ("sha-a", split("test"), "eval")):
        get(b if sha == "sha-a" else a, sha, ds, desc)
    assert entries() == 7
    assert torch.equal(get(b, "sha-a", val), fa) and torch.equal(get(a, "sha-b", val), get(b, "sha-b", val))


# -- the bootstrap ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [0.5, 0.8, 0.95, 0.99])
def test_bootstrap_interval_has_the_requested_level(level: float) -> None:
    """One stratum of 40 samples, 24 right: a resampled accuracy is Binomial(40, 0.6) / 40, so the
    percentile interval is that law's quantiles (within one sample, the percentiles interpolate)."""
    n, k = 40, 24
    labels = np.zeros(n, dtype=int)
    preds = np.where(np.arange(n) < k, 0, 1)
    m = classification_metrics(preds, labels, num_classes=2, n_boot=20000, ci=level, seed=0)
    lo, hi = m["ci"]["test_acc"]
    assert m["ci_level"] == level
    assert lo == pytest.approx(binom.ppf((1 - level) / 2, n, k / n) / n, abs=1 / n + 1e-9)
    assert hi == pytest.approx(binom.ppf((1 + level) / 2, n, k / n) / n, abs=1 / n + 1e-9)
    # the same level through the mitigation path
    fs = FeatureSet(
        torch.nn.functional.one_hot(torch.as_tensor(preds), 2).float(),
        torch.zeros(n, 2),
        torch.as_tensor(labels),
        None,
        torch.arange(n),
        [str(i) for i in range(n)],
    )
    ident = nn.Linear(2, 2)
    with torch.no_grad():
        ident.weight.copy_(torch.eye(2))
        ident.bias.zero_()
    assert measure(ident, fs, 0, n_boot=20000, seed=0, ci=level)["ci"]["test_acc"] == [lo, hi]


def test_bootstrap_intervals_widen_with_the_level() -> None:
    labels = np.zeros(40, dtype=int)
    preds = np.where(np.arange(40) < 24, 0, 1)
    widths = []
    for level in (0.5, 0.8, 0.95, 0.99):
        lo, hi = classification_metrics(preds, labels, num_classes=2, n_boot=4000, ci=level)["ci"]["test_acc"]
        widths.append(hi - lo)
    assert widths == sorted(widths) and widths[0] < widths[-1] / 2


# -- the editor's early stopping ------------------------------------------------------------------------------
class ScriptedEditor(TrainedEditor):
    """An editor whose layer at epoch e is the script's e-th prediction pattern (no gradient moves it).

    Validation features are one-hot (sample i lights neuron i), so column i of the weight decides
    sample i's prediction and the script fixes every epoch's validation accuracy.
    """

    def __init__(self, script: list[list[int]], **kwargs: Any) -> None:
        self.script = script
        self._epoch = 0
        super().__init__(batch_size=64, schedule="constant", **kwargs)

    def weight(self, epoch: int) -> torch.Tensor:
        preds = self.script[epoch]
        w = torch.zeros(2, len(preds))
        w[torch.as_tensor(preds), torch.arange(len(preds))] = 1.0
        return w

    def objective(
        self, layer: nn.Linear, f: torch.Tensor, y: torch.Tensor, ctx: EditContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            layer.weight.copy_(self.weight(self._epoch))
            layer.bias.zero_()
        self._epoch += 1  # one batch per epoch
        zero = (layer.weight * 0).sum() + (layer.bias * 0).sum()  # Adam with a zero gradient: no step
        return zero, {"ce": zero.detach()}


LABELS = [0, 0, 1, 1]
#: prediction patterns with validation accuracy 0.25, 0.5, 0.75 and 1.0 (worst-class accuracy 0, 0, .5, 1)
ACC = {0.25: [1, 0, 0, 0], 0.5: [1, 1, 1, 1], 0.75: [0, 0, 0, 1], 1.0: [0, 0, 1, 1]}


def _edit(accs: list[float], patience: int) -> Any:
    eye = torch.eye(4)
    fs = FeatureSet(eye, torch.zeros(4, 2), torch.tensor(LABELS), None, torch.arange(4), list("abcd"))
    dec = nn.Linear(4, 2)
    editor = ScriptedEditor([ACC[a] for a in accs], epochs=len(accs), patience=patience)
    return editor, editor.edit(dec, fs, fs, 1, [0], seed=0, show_progress=False)


@pytest.mark.parametrize(
    ("accs", "patience", "selected", "epochs_run"),
    [
        ([0.5, 0.25, 0.25, 1.0], 2, 0, 3),  # two epochs without a better one: stop, never see 1.0
        ([0.5, 0.25, 1.0], 1, 0, 2),
        ([0.5, 0.25, 0.25, 0.25, 1.0], 3, 0, 4),
        ([0.25, 0.5, 0.25, 0.75, 0.25, 0.25, 1.0], 2, 3, 6),  # a new best resets the count
        ([0.5, 0.5, 0.5, 1.0], 2, 0, 3),  # an equal epoch is not a better one
        ([0.5, 0.25, 0.25, 1.0], 3, 3, 4),
        ([0.5, 0.25, 0.25, 0.25, 1.0], 0, 4, 5),  # patience 0: never stop early
    ],
)
def test_early_stopping_counts_epochs_without_a_better_validation_score(
    accs: list[float], patience: int, selected: int, epochs_run: int
) -> None:
    editor, res = _edit(accs, patience)
    assert [round(h["val_acc"], 2) for h in res.history] == accs[:epochs_run]  # the script ran
    assert len(res.history) == epochs_run and res.info["epochs_run"] == epochs_run
    assert res.info["stopped_early"] == (epochs_run < len(accs))
    # (selected: the index of the scripted epoch; results count epochs from 1)
    assert res.selected_epoch == selected + 1 and [h["selected"] for h in res.history].count(True) == 1
    assert torch.equal(res.decision.weight, editor.weight(selected))  # the kept layer is that epoch's
    assert res.val_after["acc"] == accs[selected]
    assert any("stopped early" in n for n in res.notes) == res.info["stopped_early"]


# -- the deletion curve -------------------------------------------------------------------------------------
def test_deletion_removes_the_most_attributed_pixels_first() -> None:
    """The left half of the image already has the model's mean colour and carries all the attribution:
    deleting it changes nothing, so the attribution curve stays at its start for the first half of
    the steps and only then moves; the reverse order (or the random control) moves at once."""
    from neuroinspect.harness.models import create_model
    from neuroinspect.methods.visualizers.base import Visualization
    from neuroinspect.methods.visualizers.faithfulness import compute

    torch.manual_seed(0)
    surface = create_model("test_resnet", num_classes=2, image_size=32).eval()
    mean = torch.tensor(surface.data_config.mean).view(3, 1, 1)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    image[0, :, :, :16] = mean
    attribution = torch.zeros(1, 32, 32)
    attribution[0, :, :16] = 1.0
    attribution[0, :, 16:] = torch.rand(32, 16, generator=torch.Generator().manual_seed(2)) * 0.5

    def curve(maps: torch.Tensor) -> list[float]:
        viz = Visualization(
            method="hand",
            neuron=0,
            class_idx=1,
            images=image,
            activations=[0.0],
            activation_maps=maps,
            settings={"target_kind": "class"},
            extra={"targets": [1]},
        )
        m = compute(viz, surface, deletion_steps=4, seed=0)
        return m["deletion_curves"][0], m

    ordered, m = curve(attribution)
    assert ordered[1] == pytest.approx(ordered[0], abs=1e-6) and ordered[2] == pytest.approx(
        ordered[0], abs=1e-6
    )
    assert abs(ordered[3] - ordered[0]) > 1e-4
    reverse, _ = curve(1.0 - attribution)
    assert abs(reverse[1] - reverse[0]) > 1e-4
    with torch.no_grad():
        p_mean = surface(surface.normalize(mean.expand(1, 3, 32, 32))).softmax(1)[0, 1]
    assert ordered[-1] == pytest.approx(float(p_mean), rel=1e-4)  # everything deleted: the mean image
    assert m["deletion_auc"] == pytest.approx(float(np.trapezoid(ordered, dx=0.25)))


def test_a_selector_reads_the_printed_list_first_then_the_rest_of_its_ranking() -> None:
    ins = torch.tensor([0.0, 3.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    exc = torch.tensor([4.0, 0.0, 0.5, 0.0, 0.0], dtype=torch.float64)
    result = FinderResult(
        method="hand",
        class_idx=0,
        # the printed rows (after the vote cut and the other list's removal) are shorter than D, and
        # their order is the list's, which need not be the score order
        insufficient=[{"neuron": 4, "prec5": 0.5, "imp": 1.0}, {"neuron": 1, "prec5": 0.5, "imp": 1.0}],
        excessive=[{"neuron": 2, "prec5": 0.1, "imp": 1.0}],
        scores=ins + exc,
        insufficient_scores=ins,
        excessive_scores=exc,
        imp=torch.ones(5, dtype=torch.float64),
        counts={},
    )
    assert result.ordered() == [4, 1, 3, 0, 2]  # default: insufficient; then by its scores, then index
    assert result.ordered("insufficient") == [4, 1, 3, 0, 2]
    assert result.ordered("excessive") == [2, 0, 1, 3, 4]
    assert result.ordered("both") == result.ranking("both") == [0, 1, 4, 3, 2]
