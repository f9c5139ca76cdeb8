"""Classification metrics: hand-computed values and the bootstrap intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from neuroinspect.harness.metrics import accuracy_block, classification_metrics, group_counts

# 10 samples: class 0 has 3/4 right, class 1 has 4/6 right.
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
PREDS = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
# groups: g0 = {0,1} 2/2, g1 = {2,3} 1/2, g2 = {4,5,6} 3/3, g3 = {7,8,9} 1/3.
GROUPS = [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]
TRAIN_COUNTS = [60, 10, 10, 20]


def test_hand_computed_values():
    m = classification_metrics(
        PREDS, LABELS, groups=GROUPS, class_idx=1, train_group_counts=TRAIN_COUNTS, n_boot=0
    )
    assert m["n"] == 10 and m["num_classes"] == 2
    assert m["test_acc"] == pytest.approx(0.7)
    assert m["per_class_acc"] == pytest.approx([0.75, 4 / 6])
    assert m["per_class_n"] == [4, 6]
    assert m["class_acc"] == pytest.approx(4 / 6)
    assert m["worst_class_acc"] == pytest.approx(4 / 6) and m["worst_class"] == 1
    assert m["macro_acc"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert m["group_acc"] == pytest.approx([1.0, 0.5, 1.0, 1 / 3])
    assert m["group_n"] == [2, 2, 3, 3]
    assert m["worst_group_acc"] == pytest.approx(1 / 3) and m["worst_group"] == 3
    # 0.6·1 + 0.1·0.5 + 0.1·1 + 0.2·(1/3)
    assert m["mean_acc_train_weighted"] == pytest.approx(0.6 + 0.05 + 0.1 + 0.2 / 3)
    assert m["train_group_weights"] == pytest.approx([0.6, 0.1, 0.1, 0.2])
    assert m["ci"] == {} and m["notes"] == []
    json.dumps(m)  # JSON-ready, no numpy scalars


def test_without_groups_the_group_metrics_are_null():
    m = classification_metrics(PREDS, LABELS, n_boot=50)
    for key in ("group_acc", "worst_group_acc", "mean_acc_train_weighted", "class_acc"):
        assert m[key] is None
    assert set(m["ci"]) == {"test_acc", "worst_class_acc", "macro_acc"}
    assert m["bootstrap"] == "stratified by class"


def test_logits_torch_and_numpy_inputs_agree():
    logits = torch.zeros(10, 2)
    logits[torch.arange(10), torch.tensor(PREDS)] = 1.0
    a = classification_metrics(logits, torch.tensor(LABELS), n_boot=0)
    b = classification_metrics(np.array(PREDS), np.array(LABELS), n_boot=0)
    assert a == b


def test_empty_class_and_group_are_skipped_not_nan():
    m = classification_metrics(
        PREDS,
        LABELS,
        groups=GROUPS,
        num_classes=3,
        num_groups=5,
        class_idx=2,
        train_group_counts=[6, 1, 1, 2, 5],
        n_boot=100,
    )
    assert m["per_class_acc"][2] is None and m["per_class_n"][2] == 0
    assert m["worst_class_acc"] == pytest.approx(4 / 6)
    assert m["macro_acc"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert m["class_acc"] is None and "class_acc" not in m["ci"]
    assert m["group_acc"][4] is None
    assert m["worst_group_acc"] == pytest.approx(1 / 3)
    # Weights renormalised over the four present groups: 6, 1, 1, 2 of 10.
    assert m["mean_acc_train_weighted"] == pytest.approx(0.6 + 0.05 + 0.1 + 0.2 / 3)
    notes = " ".join(m["notes"])
    assert "no samples" in notes and "class 2" in notes and "group(s) 4" in notes and "renormalised" in notes
    for lo, hi in m["ci"].values():
        assert math.isfinite(lo) and math.isfinite(hi)


def test_samples_without_group_are_left_out_of_group_metrics():
    groups = [0, 0, 1, 1, -1, -1, -1, 1, 1, 1]
    m = classification_metrics(PREDS, LABELS, groups=groups, n_boot=0)
    assert m["group_n"] == [2, 5]
    assert m["test_acc"] == pytest.approx(0.7)
    assert "3 samples without a group" in m["notes"][0]


def test_interval_contains_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=400)
    groups = labels * 2 + rng.integers(0, 2, size=400)
    preds = np.where(rng.random(400) < 0.8, labels, (labels + 1) % 4)
    small = classification_metrics(
        preds, labels, groups=groups, class_idx=2, train_group_counts=[1] * 8, n_boot=500
    )
    big = classification_metrics(
        np.tile(preds, 16),
        np.tile(labels, 16),
        groups=np.tile(groups, 16),
        class_idx=2,
        train_group_counts=[1] * 8,
        n_boot=500,
    )
    assert small["test_acc"] == pytest.approx(big["test_acc"])
    assert set(small["ci"]) == {
        "test_acc",
        "class_acc",
        "worst_class_acc",
        "worst_group_acc",
        "mean_acc_train_weighted",
        "macro_acc",
    }
    for key in ("test_acc", "class_acc", "macro_acc", "mean_acc_train_weighted"):
        lo, hi = small["ci"][key]
        assert lo <= small[key] <= hi, key
        blo, bhi = big["ci"][key]
        assert blo <= big[key] <= bhi, key
        # Width scales like 1/sqrt(n): 16× the data, about a quarter of the width.
        assert (bhi - blo) < 0.4 * (hi - lo), key
    lo, hi = small["ci"]["test_acc"]
    assert 0.03 < hi - lo < 0.12  # ~ 2·1.96·sqrt(0.8·0.2/400) = 0.078


def test_bootstrap_is_seeded():
    a = classification_metrics(PREDS, LABELS, groups=GROUPS, n_boot=200, seed=3)
    b = classification_metrics(PREDS, LABELS, groups=GROUPS, n_boot=200, seed=3)
    assert a["ci"] == b["ci"]


def test_binomial_draws_match_index_resampling():
    # The per-stratum binomial draw has the same distribution as resampling indices within strata:
    # compare with a plain index bootstrap of the same stratified design.
    rng = np.random.default_rng(1)
    n = 3000
    labels = rng.integers(0, 3, size=n)
    preds = np.where(rng.random(n) < np.array([0.9, 0.7, 0.5])[labels], labels, (labels + 1) % 3)
    m = classification_metrics(preds, labels, n_boot=4000, seed=0)
    correct = preds == labels
    boots = np.empty((4000, 3))
    boot_rng = np.random.default_rng(7)
    strata = [np.flatnonzero(labels == k) for k in range(3)]
    for r in range(4000):
        per = [correct[boot_rng.choice(s, size=s.size)].mean() for s in strata]
        boots[r] = per
    naive_worst = np.percentile(boots.min(axis=1), [2.5, 97.5])
    assert m["ci"]["worst_class_acc"] == pytest.approx(naive_worst.tolist(), abs=0.006)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="class_idx 5 is out of range"):
        classification_metrics(PREDS, LABELS, class_idx=5)
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [])
    with pytest.raises(ValueError, match="train_group_counts has 2 entries for 4 groups"):
        classification_metrics(PREDS, LABELS, groups=GROUPS, train_group_counts=[1, 1])


def test_group_counts_and_accuracy_block():
    assert group_counts([0, 2, 2, -1], num_groups=4) == [1, 0, 2, 0]
    m = classification_metrics(
        PREDS, LABELS, groups=GROUPS, class_idx=0, train_group_counts=TRAIN_COUNTS, n_boot=20
    )
    block = accuracy_block(m)
    assert block["class_acc"] == pytest.approx(0.75)
    assert set(block) >= {
        "test_acc",
        "class_acc",
        "worst_class_acc",
        "worst_group_acc",
        "mean_acc_train_weighted",
    }


def test_per_group_and_per_class_intervals_are_wilson_and_informative_at_the_extremes() -> None:
    from neuroinspect.harness.metrics import wilson_interval

    labels = np.array([0] * 40 + [1] * 60)
    groups = np.array([0] * 40 + [1] * 30 + [2] * 30)
    preds = labels.copy()
    preds[70:] = 0  # group 2 (class 1): every image wrong; groups 0 and 1 all right
    m = classification_metrics(preds, labels, groups=groups, num_groups=3, n_boot=200, seed=0)
    lo, hi = m["group_ci"][2]
    assert lo == 0.0 and 0.10 < hi < 0.13  # 0 of 30: not the empty interval a bootstrap gives
    assert m["group_ci"][0][1] == pytest.approx(1.0) and m["group_ci"][0][0] > 0.9
    assert m["per_class_ci"][1] == pytest.approx(wilson_interval(30, 60))
    assert wilson_interval(0, 100) == pytest.approx([0.0, 0.0370], abs=1e-4)  # the textbook value
    assert wilson_interval(45, 100) == pytest.approx([0.3561, 0.5476], abs=1e-4)
    assert "stratified by (group, class) cell" in m["bootstrap"]
