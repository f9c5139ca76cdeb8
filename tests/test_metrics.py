"""Classification metrics: hand-computed values and the bootstrap intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from neuroinspect.harness.metrics import SCALAR_KEYS, accuracy_block, classification_metrics, group_counts

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


# -- edges, messages and the bootstrap's definition ---------------------------------------------------
# (each closes a gap found by the mutation score, benchmarks/mutation_score.py)

#: every key of the result, documented in classification_metrics' docstring
RESULT_KEYS = {
    "n",
    "num_classes",
    "test_acc",
    "per_class_acc",
    "per_class_n",
    "class_idx",
    "class_acc",
    "worst_class_acc",
    "worst_class",
    "macro_acc",
    "group_acc",
    "group_n",
    "worst_group_acc",
    "worst_group",
    "mean_acc_train_weighted",
    "train_group_weights",
    "ci",
    "ci_level",
    "per_class_ci",
    "group_ci",
    "per_cell_interval",
    "n_boot",
    "bootstrap",
    "notes",
}


def test_every_documented_key_is_present_with_or_without_groups():
    plain = classification_metrics(PREDS, LABELS, class_idx=0, n_boot=0)
    grouped = classification_metrics(PREDS, LABELS, groups=GROUPS, n_boot=0)
    assert set(plain) == set(grouped) == RESULT_KEYS
    assert plain["class_idx"] == 0 and grouped["class_idx"] is None
    for key in ("group_acc", "group_n", "worst_group_acc", "worst_group", "train_group_weights", "group_ci"):
        assert plain[key] is None, key
    assert grouped["worst_group"] == 3 and grouped["train_group_weights"] is None
    assert grouped["notes"] == ["no training group counts given: mean_acc_train_weighted is null"]
    assert grouped["bootstrap"] == "stratified by (group, class) cell"


def test_counts_are_integers_in_the_json():
    m = classification_metrics(PREDS, LABELS, groups=GROUPS, n_boot=0)
    assert json.dumps(m["per_class_n"]) == "[4, 6]" and json.dumps(m["group_n"]) == "[2, 2, 3, 3]"
    assert json.dumps(group_counts([0, 2, 2, -1])) == "[1, 0, 2]"  # size from the largest id
    assert group_counts([]) == [] and group_counts([-1, -1]) == []
    with pytest.raises(ValueError, match="^groups is None$"):
        group_counts(None)


def test_a_class_or_group_with_a_single_sample_counts():
    # class 2 and group 4 have one sample each, both wrong: they are the worst class and group
    labels, preds, groups = LABELS + [2], PREDS + [0], GROUPS + [4]
    m = classification_metrics(preds, labels, groups=groups, class_idx=2, n_boot=0)
    assert m["per_class_acc"][2] == 0.0 and m["class_acc"] == 0.0
    assert m["worst_class_acc"] == 0.0 and m["worst_class"] == 2
    assert m["macro_acc"] == pytest.approx((0.75 + 4 / 6 + 0) / 3)
    assert m["group_acc"][4] == 0.0 and m["worst_group_acc"] == 0.0 and m["worst_group"] == 4


def test_one_group_for_everything_and_no_group_at_all():
    one = classification_metrics(PREDS, LABELS, groups=[0] * 10, n_boot=0)
    assert one["group_acc"] == [pytest.approx(0.7)] and one["worst_group_acc"] == pytest.approx(0.7)
    none = classification_metrics(PREDS, LABELS, groups=[-1] * 10, n_boot=20)
    assert none["group_acc"] is None and none["bootstrap"] == "stratified by class"
    assert none["test_acc"] == pytest.approx(0.7)


def test_a_tensor_that_requires_grad_is_accepted():
    logits = torch.zeros(10, 2, requires_grad=True)
    with torch.no_grad():
        logits[torch.arange(10), torch.tensor(PREDS)] = 1.0
    assert classification_metrics(logits, torch.tensor(LABELS), n_boot=0)["test_acc"] == pytest.approx(0.7)


def test_error_messages_name_the_bad_input():
    cases = [
        ((None, LABELS), {}, "preds is None"),
        ((PREDS, None), {}, "labels is None"),
        (([], []), {}, "no samples to score: the split is empty"),
        (([0, 1], [0, -1]), {}, "labels must be non-negative class ids"),
        ((PREDS, LABELS), {"num_classes": 1}, "label 1 is out of range for 1 classes"),
        ((PREDS, LABELS), {"class_idx": 2}, r"class_idx 2 is out of range for 2 classes \(0..1\)"),
        ((PREDS, LABELS), {"ci": 0.0}, r"ci must be in \(0, 1\), got 0.0"),
        ((PREDS, LABELS), {"ci": 1.0}, r"ci must be in \(0, 1\), got 1.0"),
        ((PREDS, LABELS), {"ci": 1.5}, r"ci must be in \(0, 1\), got 1.5"),
        ((PREDS, LABELS), {"groups": [0, 1, 2]}, r"groups \(3\) and labels \(10\) differ in length"),
        ((PREDS, LABELS), {"groups": GROUPS, "num_groups": 3}, "group 3 is out of range for 3 groups"),
    ]
    bad_weights = ([1, -1, 1, 1], [0, 0, 0, 0])  # a negative count (with a positive sum); no weight at all
    for weights in bad_weights:
        cases.append(
            (
                (PREDS, LABELS),
                {"groups": GROUPS, "train_group_counts": weights},
                "train_group_counts must be non-negative with a positive sum",
            )
        )
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=f"^{message}$"):
            classification_metrics(*args, **kwargs)


def test_training_weights_may_be_proportions_and_zero_for_some_groups():
    counts = classification_metrics(PREDS, LABELS, groups=GROUPS, train_group_counts=TRAIN_COUNTS, n_boot=0)
    shares = classification_metrics(
        PREDS, LABELS, groups=GROUPS, train_group_counts=[0.6, 0.1, 0.1, 0.2], n_boot=0
    )
    assert shares["mean_acc_train_weighted"] == pytest.approx(counts["mean_acc_train_weighted"])
    # a group absent from training weighs nothing: only group 0 (accuracy 1) counts
    zero = classification_metrics(PREDS, LABELS, groups=GROUPS, train_group_counts=[5, 0, 0, 0], n_boot=0)
    assert zero["mean_acc_train_weighted"] == pytest.approx(1.0) and zero["notes"] == []


def test_renormalisation_is_noted_only_when_an_empty_group_had_training_weight():
    def notes(weights: list[float]) -> list[str]:
        return classification_metrics(
            PREDS, LABELS, groups=GROUPS, num_groups=5, train_group_counts=weights, n_boot=0
        )["notes"]

    empty = "group(s) 4 have no samples and are left out of the group metrics"
    renorm = "training weights were renormalised over the groups present in this split"
    assert notes([6, 1, 1, 2, 0]) == [empty]
    assert notes([0.3, 0.05, 0.05, 0.1, 0.5]) == [empty, renorm]
    # only the empty group was trained on: no weighted accuracy, rather than 0/0
    m = classification_metrics(
        PREDS, LABELS, groups=GROUPS, num_groups=5, train_group_counts=[0, 0, 0, 0, 3], n_boot=0
    )
    assert m["mean_acc_train_weighted"] is None and "mean_acc_train_weighted" not in m["ci"]


def test_notes_list_at_most_ten_empty_classes():
    def note(num_classes: int) -> str:
        return classification_metrics(PREDS, LABELS, num_classes=num_classes, n_boot=0)["notes"][0]

    head = "have no samples and are left out of worst-class and macro accuracy:"
    assert note(12) == f"10 class(es) {head} 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"
    assert note(13) == f"11 class(es) {head} 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ..."


def test_default_bootstrap_is_1000_resamples_with_seed_0():
    default = classification_metrics(PREDS * 20, LABELS * 20, groups=GROUPS * 20)
    explicit = classification_metrics(PREDS * 20, LABELS * 20, groups=GROUPS * 20, n_boot=1000, seed=0)
    assert default["n_boot"] == 1000 and default["ci_level"] == 0.95
    assert default["ci"] == explicit["ci"]


def test_the_seed_decides_the_resamples():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=3000)
    preds = np.where(rng.random(3000) < 0.8, labels, (labels + 1) % 3)
    a, b, c = (classification_metrics(preds, labels, n_boot=200, seed=s)["ci"] for s in (3, 3, 4))
    assert a == b and a != c


def test_the_interval_is_the_equal_tailed_percentile_interval():
    # With two resamples a ≤ b, the q-th percentile is a + q·(b − a) (linear interpolation): the 95%
    # interval gives a and b, which fix every other level's interval.
    def interval(level: float, n_boot: int = 2) -> list[float]:
        return classification_metrics(PREDS * 3, LABELS * 3, n_boot=n_boot, ci=level, seed=1)["ci"][
            "test_acc"
        ]

    lo, hi = interval(0.95)
    d = (hi - lo) / 0.95
    a = lo - 0.025 * d
    assert d > 0
    for level in (0.5, 0.8):
        tail = (1 - level) / 2
        assert interval(level) == pytest.approx([a + tail * d, a + (1 - tail) * d], abs=1e-12)
    # one resample is still an interval (of width 0), not a missing one
    one = interval(0.95, n_boot=1)
    assert one[0] == one[1]


def test_accuracy_block_keeps_the_intervals_of_the_record_keys():
    m = classification_metrics(PREDS, LABELS, groups=GROUPS, train_group_counts=TRAIN_COUNTS, n_boot=30)
    block = accuracy_block(m)
    assert set(block) == {*SCALAR_KEYS, "ci"}
    assert block["ci"] == m["ci"] and set(block["ci"]) == set(SCALAR_KEYS) - {"class_acc"}
    extra = dict(m, ci={**m["ci"], "per_class_acc": [0.0, 1.0]})  # not a record key: left out
    assert accuracy_block(extra)["ci"] == m["ci"]
    assert "ci" not in accuracy_block(classification_metrics(PREDS, LABELS, n_boot=0))


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


def test_wilson_intervals_honour_the_level_and_cover_single_sample_cells():
    from neuroinspect.harness.metrics import wilson_interval

    # class 2 and group 4: one sample each (wrong); still an interval, not a missing one
    labels, preds, groups = LABELS + [2], PREDS + [0], GROUPS + [4]
    for level in (0.8, 0.95):
        m = classification_metrics(preds, labels, groups=groups, ci=level, n_boot=0)
        assert m["per_class_ci"] == [
            pytest.approx(wilson_interval(3, 4, level)),
            pytest.approx(wilson_interval(4, 6, level)),
            pytest.approx(wilson_interval(0, 1, level)),
        ]
        assert m["group_ci"][4] == pytest.approx(wilson_interval(0, 1, level))
        assert m["group_ci"][3] == pytest.approx(wilson_interval(1, 3, level))
    narrow, wide = (wilson_interval(3, 4, level) for level in (0.8, 0.95))
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    assert m["per_cell_interval"] == "Wilson score interval of each class's or group's own accuracy"


def test_wilson_interval_stays_within_0_and_1():
    # at 0 or n successes the formula's ends are 0 and 1 up to rounding, which can leave [0, 1]
    # (e.g. 10 of 10 at 80%: 1.0000000000000002); a record's fraction must not
    from neuroinspect.harness.metrics import wilson_interval

    for level in (0.8, 0.95, 0.99):
        for n in range(1, 60):
            lo, hi = wilson_interval(n, n, level)
            assert 0.0 < lo < hi <= 1.0 and hi == pytest.approx(1.0), (n, level)
            lo, hi = wilson_interval(0, n, level)
            assert 0.0 <= lo < hi < 1.0 and lo == pytest.approx(0.0, abs=1e-12), (n, level)


def test_every_empty_group_is_named():
    m = classification_metrics(PREDS, LABELS, groups=GROUPS, num_groups=6, n_boot=0)
    assert m["notes"][0] == "group(s) 4, 5 have no samples and are left out of the group metrics"
    assert m["group_ci"][4] is None and m["group_ci"][5] is None
