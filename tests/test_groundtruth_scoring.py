"""Ground-truth neuron scoring: effects and labels from counterfactual grids, precision@k, recovery records."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

from neuroinspect.datasets.base import InMemoryImageDataset, Sample
from neuroinspect.harness.records import validate_record
from neuroinspect.methods.finders import FINDERS, FinderResult, load_all
from neuroinspect.methods.groundtruth_scoring import (
    NeuronTruth,
    label_neurons,
    neuron_attribute_scores,
    neuron_recovery_record,
    precision_at_k,
    recall_at_k,
    responsible_neurons,
    truth_from_activations,
)
from neuroinspect.runtime import Provenance

load_all()

SIZE = 16
BG_LEVELS = (50, 150, 250)  # channel 0 of the background, one per spurious value
SHAPE_LEVELS = (30, 150)  # channel 1 of the centre patch, one per core value


def fake_grid(dataset: object, indices: np.ndarray) -> np.ndarray:
    """(n, 2 cores, 3 backgrounds, 16, 16, 3): background colour in channel 0, a centre patch in channel 1."""
    n = len(indices)
    grid = np.zeros((n, len(SHAPE_LEVELS), len(BG_LEVELS), SIZE, SIZE, 3), dtype=np.uint8)
    for c, shape in enumerate(SHAPE_LEVELS):
        for s, bg in enumerate(BG_LEVELS):
            img = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
            img[..., 0] = bg
            img[4:12, 4:12, 0] = 0
            img[4:12, 4:12, 1] = shape
            grid[:, c, s] = img
    return grid


class FakeSurface(nn.Module):
    """Four neurons: 0 reads the background only, 1 the shape only, 2 nothing (dead), 3 both equally."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        ring = torch.ones(SIZE, SIZE, dtype=torch.bool)
        ring[4:12, 4:12] = False
        bg = x[:, 0][:, ring].mean(dim=1)
        shape = x[:, 1, 4:12, 4:12].mean(dim=(1, 2))
        both = 0.5 * bg / np.std(np.array(BG_LEVELS) / 255) + 0.5 * shape / np.std(
            np.array(SHAPE_LEVELS) / 255
        )
        return torch.stack([bg, shape, torch.zeros_like(bg), both], dim=1)


def _dataset(n: int = 10) -> InMemoryImageDataset:
    images = np.zeros((n, SIZE, SIZE, 3), dtype=np.uint8)
    samples = [Sample(path=f"fake/{i}", label=i % 2) for i in range(n)]
    return InMemoryImageDataset(images, name="fake", split="val", samples=samples, classes=["a", "b"])


def _truth() -> NeuronTruth:
    return neuron_attribute_scores(
        FakeSurface(),
        _dataset(),
        T.ToTensor(),
        n_samples=6,
        seed=1,
        grid_fn=fake_grid,
        names=(["circle", "square"], ["dark", "mid", "bright"]),
        show_progress=False,
    )


def test_background_neuron_is_spurious_and_shape_neuron_is_core() -> None:
    truth = _truth()
    # population std over the 3 background levels, in ToTensor units (/255)
    bg_std = np.std(np.array(BG_LEVELS) / 255.0)
    shape_std = np.std(np.array(SHAPE_LEVELS) / 255.0)
    assert truth.spurious_effect[0] == pytest.approx(bg_std, rel=1e-6) and truth.core_effect[
        0
    ] == pytest.approx(0.0, abs=1e-9)
    assert truth.core_effect[1] == pytest.approx(shape_std, rel=1e-6) and truth.spurious_effect[
        1
    ] == pytest.approx(0.0, abs=1e-9)
    assert truth.labels == ["spurious", "core", "dead", "mixed"]
    assert truth.spurious_ratio[0] == pytest.approx(1.0) and truth.spurious_ratio[1] == pytest.approx(0.0)
    assert truth.spurious_ratio[3] == pytest.approx(0.5, abs=1e-6)
    assert truth.counts() == {"spurious": 1, "core": 1, "mixed": 1, "dead": 1}
    assert len(truth.indices) == 6 and truth.spurious_names == ["dark", "mid", "bright"]
    assert truth.spurious_means.shape == (3, 4) and truth.core_means.shape == (2, 4)
    assert truth.to_json()["counts"]["dead"] == 1


def test_labels_follow_the_documented_thresholds() -> None:
    s = np.array([2.0, 1.0, 1.0, 0.0, 1e-9, 0.9])
    c = np.array([1.0, 2.0, 1.0, 0.0, 0.0, 1.1])
    ratio, labels = label_neurons(s, c)
    assert labels == ["spurious", "core", "mixed", "dead", "dead", "mixed"]  # ratio 2/3 counts as spurious
    assert ratio[3] == 0.0 and ratio[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="n, n_core, n_spurious, D"):
        truth_from_activations(np.zeros((2, 2, 2)))


def test_precision_and_recall_at_k() -> None:
    truth = _truth()  # only neuron 0 is spurious
    assert precision_at_k([3, 0, 1, 2], truth, 1) == 0.0
    assert precision_at_k([3, 0, 1, 2], truth, 2) == 0.5
    assert precision_at_k([3, 0, 1, 2], truth, 2, target="core") == 0.0
    assert precision_at_k([3, 0, 1, 2], truth, 3, target="core") == pytest.approx(1 / 3)
    assert precision_at_k([3, 0, 1, 2], {0, 1}, 3) == pytest.approx(2 / 3)
    assert precision_at_k([3, 0], {0, 1}, 4) == 0.25  # missing entries are misses
    assert precision_at_k(np.array([1, 0]), np.array([True, False, False]), 1) == 0.0
    assert recall_at_k([3, 0, 1], {0, 1}, 2) == 0.5 and recall_at_k([3], set(), 1) is None
    with pytest.raises(ValueError):
        precision_at_k([0], truth, 0)


def _truth_with_spurious(neurons_effect: list[float], labels: list[str]) -> NeuronTruth:
    D = len(labels)
    z = np.zeros(D)
    return NeuronTruth(
        spurious_effect=np.array(neurons_effect),
        core_effect=z,
        spurious_ratio=z,
        labels=labels,
        mean_activation=z,
        spurious_means=np.zeros((2, D)),
        core_means=np.zeros((2, D)),
        core_names=["a", "b"],
        spurious_names=["x", "y"],
        indices=[0],
    )


def test_responsible_neurons_use_the_margin_weight_and_the_spurious_effect() -> None:
    truth = _truth_with_spurious(
        [1.0, 1.0, 1.0, 1.0, 0.5], ["spurious", "spurious", "core", "spurious", "spurious"]
    )
    W = torch.tensor(
        [
            [-1.0, 2.0, 5.0, 0.0, 0.0],  # class 0 (debugged)
            [1.0, 0.0, 0.0, 0.0, 0.1],  # class 1 (the wrong prediction)
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    dec = nn.Linear(5, 3)
    with torch.no_grad():
        dec.weight.copy_(W)
    out = responsible_neurons(truth, dec, 0, wrong_classes=[1, 1])
    # d = W[0] − W[1] = (−2, 2, 5, 0, −0.1); impact |d|·s = (2, 2, 5, 0, 0.05); neuron 2 is core, 3 has no weight
    assert out["neurons"] == [0, 1]  # 4's impact 0.05 < 0.1 × 2
    assert out["directions"] == {0: "excessive", 1: "insufficient"}
    assert responsible_neurons(truth, dec, 0, [1], direction="excessive")["neurons"] == [0]
    assert responsible_neurons(truth, dec, 0, [1], min_impact=0.01)["neurons"] == [0, 1, 4]
    # uniform over the other classes when the wrong classes are unknown: d = W[0] − (W[1] + W[2]) / 2
    np.testing.assert_allclose(
        responsible_neurons(truth, dec, 0)["margin_weight"], [-1.5, 2.0, 5.0, 0.0, -0.05]
    )


def test_neuron_recovery_record_is_valid_and_scores_the_ranking() -> None:
    truth = _truth_with_spurious(
        [1.0, 1.0, 1.0, 1.0, 0.5, 0.0], ["spurious", "spurious", "core", "spurious", "spurious", "dead"]
    )
    dec = nn.Linear(6, 2)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[-1.0, 2.0, 5.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.1, 0.0]]))
    scores = torch.tensor([0.9, 0.1, 0.8, 0.0, 0.0, 0.0], dtype=torch.float64)
    result = FinderResult(
        method="contribution",
        class_idx=0,
        insufficient=[],
        excessive=[],
        scores=scores,
        insufficient_scores=scores,
        excessive_scores=torch.zeros(6, dtype=torch.float64),
        imp=torch.ones(6, dtype=torch.float64),
        counts={"mistakes": 2},
        samples=[{"stored_pred": 1}, {"stored_pred": 1}],
    )
    with Provenance() as prov:
        pass
    rec = neuron_recovery_record(
        result, truth, dec, dataset="fake", model="none", seed=3, provenance=prov.as_dict(), ks=(1, 2, 5)
    )
    validate_record(rec)
    assert (
        rec["task"] == "neuron_recovery"
        and rec["class_idx"] == 0
        and rec["method"] == {"finder": "contribution"}
    )
    # ranking 0, 2, 1, 3, 4, 5; relevant {0, 1}
    assert rec["metrics"]["precision_at_k"] == {"1": 1.0, "2": 0.5, "5": 0.4}
    assert rec["metrics"]["recall_at_k"]["2"] == 0.5 and rec["metrics"]["recall_at_k"]["5"] == 1.0
    assert rec["metrics"]["chance_precision"] == pytest.approx(2 / 6)
    assert rec["metrics"]["spurious_precision_at_k"]["2"] == 0.5
    assert rec["config"]["truth"]["min_impact"] == 0.1


def test_on_the_spurious_shapes_benchmark_with_a_real_model() -> None:
    from neuroinspect.datasets import load_dataset
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.transforms import eval_transform

    torch.manual_seed(0)
    ds = load_dataset("spurious-shapes", None, "val", None, n_val=16, image_size=32)
    surface = create_model("resnet18", 2, image_size=32)
    truth = neuron_attribute_scores(
        surface,
        ds,
        eval_transform(surface.data_config, "benchmark"),
        n_samples=3,
        seed=0,
        show_progress=False,
    )
    assert truth.num_features == 512 and len(truth.labels) == 512
    assert sum(truth.counts().values()) == 512
    assert truth.core_names == ["triangle", "square"] and truth.spurious_names == ["water", "land"]
    assert np.all(truth.spurious_effect >= 0) and np.all(truth.core_effect >= 0)
    assert np.all((truth.spurious_ratio >= 0) & (truth.spurious_ratio <= 1))
    assert not math.isnan(float(truth.spurious_effect.sum()))
    # feeding the finder's ranking through the record path works on a real model too
    feats = torch.relu(torch.randn(8, 512))
    from neuroinspect.harness.features import FeatureSet

    fs = FeatureSet(
        feats,
        surface.decision(feats).detach() * 0 + torch.tensor([1.0, 0.0]),
        torch.ones(8, dtype=torch.long),
        None,
        torch.arange(8),
        [str(i) for i in range(8)],
        {"split": "val"},
    )
    res = FINDERS.get("random")().find(surface.decision, fs, 1, seed=0)
    with Provenance() as prov:
        pass
    rec = neuron_recovery_record(
        res,
        truth,
        surface.decision,
        dataset="spurious-shapes",
        model="resnet18",
        seed=0,
        provenance=prov.as_dict(),
    )
    assert set(rec["metrics"]["precision_at_k"]) == {"5", "10", "20"}
