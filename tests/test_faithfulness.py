"""Faithfulness metrics on hand-made cases, and concept recovery on the bundled spurious-shapes benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroinspect.errors import UserError
from neuroinspect.harness.models import create_model
from neuroinspect.methods.visualizers.base import Visualization
from neuroinspect.methods.visualizers.faithfulness import (
    AttributeClassifiers,
    compute,
    concept_recovery,
    neuron_rank,
    pairwise_cosine_diversity,
    pairwise_pixel_diversity,
    percentile_of,
    specificity_score,
    train_attribute_classifiers,
)


@pytest.fixture(scope="module")
def surface():
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=3, image_size=32).eval()


def _viz(images: torch.Tensor, neuron: int, class_idx: int | None = None, **kw) -> Visualization:
    return Visualization(
        method="test",
        neuron=neuron,
        class_idx=class_idx,
        images=images,
        activations=[0.0] * len(images),
        **kw,
    )


# -- building blocks -------------------------------------------------------------------------------
def test_percentile_counts_ties_half():
    ref = torch.arange(100.0)
    pct = percentile_of(ref, torch.tensor([49.5, -1.0, 1000.0, 50.0]))
    assert pct.tolist() == pytest.approx([50.0, 0.0, 100.0, 50.5])
    with pytest.raises(ValueError):
        percentile_of(torch.zeros(0), torch.tensor([1.0]))


def test_rank_and_specificity():
    pooled = torch.tensor([[1.0, 5.0, 3.0], [2.0, 2.0, 0.0], [0.0, 0.0, -1.0]])
    rank = neuron_rank(pooled, [2, 0, 2])
    assert rank.tolist() == [2, 1, 3]  # a tie counts in the target's favour
    assert specificity_score(rank, 3).tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert specificity_score(torch.tensor([1]), 1).tolist() == [1.0]


def test_diversity_on_hand_made_features_and_images():
    assert pairwise_cosine_diversity(torch.tensor([[1.0, 0.0], [2.0, 0.0]])) == pytest.approx(0.0)
    assert pairwise_cosine_diversity(torch.tensor([[1.0, 0.0], [0.0, 3.0]])) == pytest.approx(1.0)
    assert pairwise_cosine_diversity(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])) == pytest.approx(
        4.0 / 3.0
    )
    assert pairwise_cosine_diversity(torch.ones(1, 4)) is None
    imgs = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4), torch.zeros(3, 4, 4)])
    assert pairwise_pixel_diversity(imgs) == pytest.approx(2.0 / 3.0)  # pairs: 1, 0, 1
    assert pairwise_pixel_diversity(imgs[:1]) is None


# -- compute() on a real (tiny) model --------------------------------------------------------------
def test_compute_on_a_hand_made_visualization(surface):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=g)
    images = torch.cat([img, img, torch.rand(1, 3, 32, 32, generator=g)])
    with torch.no_grad():
        pooled = surface.features(surface.normalize(images))
        probs = surface(surface.normalize(images)).softmax(dim=1)
    neuron = int(pooled[0].argmax())  # the most active neuron on image 0: rank 1 there
    a = float(pooled[0, neuron])
    reference = torch.tensor([a - 1.0, a - 1.0, a - 1.0, a + 1.0])
    viz = _viz(images, neuron, class_idx=2, wall_seconds=1.5, extra={"role": ["top", "top", "bottom"]})
    m = compute(viz, surface, reference_activations=reference)
    assert m["activation_percentiles"][:2] == pytest.approx([75.0, 75.0])
    assert m["activation_percentile_mean"] == pytest.approx(75.0)  # the "bottom" image is not in the summary
    assert m["ranks"][:2] == [1, 1] and m["specificity_mean"] == pytest.approx(1.0)
    expected_rank = 1 + int((pooled[2] > pooled[2, neuron]).sum())
    assert m["ranks"][2] == expected_rank
    assert m["class_probs"] == pytest.approx(probs[:, 2].tolist(), rel=1e-5)
    assert m["class_prob_mean"] == pytest.approx(float(probs[:2, 2].mean()), rel=1e-5)
    assert m["diversity_feature"] == pytest.approx(0.0, abs=1e-6)  # the two scored images are identical
    assert m["diversity_pixel"] == pytest.approx(0.0)
    assert m["wall_seconds"] == 1.5 and m["n_scored"] == 2 and m["clip_scores"] is None
    unconditioned = compute(_viz(images[:1], neuron), surface)
    assert unconditioned["class_prob_mean"] is None and unconditioned["activation_percentiles"] is None
    with pytest.raises(UserError, match="out of range"):
        compute(_viz(images[:1], 10_000), surface)


class _FakeClip:
    """encode_image: the mean colour of each image; encode_text: fixed embeddings (known cosines)."""

    def encode_image(self, images01):
        return images01.mean(dim=(2, 3))

    def encode_text(self, texts):
        table = {"red": [1.0, 0.0, 0.0], "grey": [1.0, 1.0, 1.0]}
        return torch.tensor([table[t] for t in texts])


def test_clip_score_is_the_cosine_to_the_class_text(surface):
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    grey = torch.full((1, 3, 32, 32), 0.5)
    viz = _viz(torch.cat([red, grey]), 0, class_idx=0)
    m = compute(viz, surface, clip=_FakeClip(), class_text="red")
    assert m["clip_scores"] == pytest.approx([1.0, 1.0 / np.sqrt(3.0)], rel=1e-5)
    m = compute(viz, surface, clip=_FakeClip(), class_text=["red", "grey"])  # templates are averaged
    mean_text = torch.nn.functional.normalize(
        torch.tensor([1.0, 0.0, 0.0]) + torch.tensor([1.0, 1.0, 1.0]) / np.sqrt(3), dim=0
    )
    assert m["clip_scores"][0] == pytest.approx(float(mean_text[0]), rel=1e-5)


def test_deletion_metric_for_attribution_maps(surface):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 32, generator=g)
    maps = torch.rand(2, 32, 32, generator=g)
    viz = _viz(
        images,
        4,
        class_idx=1,
        activation_maps=maps,
        settings={"target_kind": "class"},
        extra={"targets": [1, 1]},
    )
    m = compute(viz, surface, deletion_steps=4)
    assert len(m["deletion_curves"]) == 2 and len(m["deletion_curves"][0]) == 5
    with torch.no_grad():
        p0 = surface(surface.normalize(images)).softmax(dim=1)[:, 1]
    assert [c[0] for c in m["deletion_curves"]] == pytest.approx(
        p0.tolist(), rel=1e-5
    )  # step 0 = intact image
    with torch.no_grad():  # everything deleted = the model's mean colour
        p_end = surface(torch.zeros(1, 3, 32, 32)).softmax(dim=1)[0, 1]
    assert m["deletion_curves"][0][-1] == pytest.approx(float(p_end), rel=1e-4)
    assert 0.0 <= m["deletion_auc"] <= 1.0 and 0.0 <= m["deletion_auc_random"] <= 1.0
    assert "deletion_auc" not in compute(_viz(images, 4, class_idx=1, activation_maps=maps), surface)


# -- concept recovery ------------------------------------------------------------------------------
class _FixedClassifiers(AttributeClassifiers):
    def __init__(self, core: torch.Tensor, spurious: torch.Tensor) -> None:
        super().__init__(
            method="fixed",
            core_names=["triangle", "square"],
            spurious_names=["water", "land"],
            image_size=32,
            accuracy={"core": {"accuracy": 0.9}, "spurious": {"accuracy": 1.0}},
            settings={},
        )
        self._probs = {"core": core, "spurious": spurious}

    def predict_proba(self, images01):
        return {k: v[: images01.shape[0]] for k, v in self._probs.items()}


def test_concept_recovery_decides_by_agreement_of_the_images():
    images = torch.zeros(3, 3, 32, 32)
    # Every image shows water; the shapes disagree (one triangle, two squares, each confidently).
    fixed = _FixedClassifiers(
        core=torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.9, 0.1]]),
        spurious=torch.tensor([[0.9, 0.1], [0.95, 0.05], [0.85, 0.15]]),
    )
    viz = _viz(images, 7)
    r = concept_recovery(viz, fixed, "spurious", truth_value="water")
    assert r["shown"] == "spurious" and r["recovered"] is True and r["value_match"] is True
    assert r["agreement_spurious"] == pytest.approx((0.9 - 0.5) / 0.5)
    assert r["agreement_core"] == pytest.approx((float(torch.tensor([0.95, 0.05, 0.9]).mean()) - 0.5) / 0.5)
    assert concept_recovery(viz, fixed, "core")["recovered"] is False
    assert concept_recovery(viz, fixed, "spurious", truth_value=1)["value_match"] is False
    assert concept_recovery(viz, fixed, "dead")["recovered"] is None
    # images that share a shape and a background show both; images that agree on nothing show neither
    both = _FixedClassifiers(
        core=torch.tensor([[0.97, 0.03], [0.96, 0.04], [0.98, 0.02]]),
        spurious=torch.tensor([[0.96, 0.04], [0.97, 0.03], [0.99, 0.01]]),
    )
    r = concept_recovery(viz, both, "spurious", truth_value="water")
    assert r["shown"] == "both" and r["shown_attributes"] == ["core", "spurious"] and r["recovered"] is True
    assert concept_recovery(viz, both, "core")["recovered"] is True
    vague = _FixedClassifiers(
        core=torch.tensor([[0.6, 0.4], [0.45, 0.55], [0.55, 0.45]]),
        spurious=torch.tensor([[0.55, 0.45], [0.5, 0.5], [0.4, 0.6]]),
    )
    r = concept_recovery(viz, vague, "spurious")
    assert r["shown"] == "neither" and r["recovered"] is False
    with pytest.raises(UserError, match="truth_label"):
        concept_recovery(viz, fixed, "background")


@pytest.fixture(scope="module")
def shapes_splits():
    from neuroinspect.datasets import load_dataset

    train = load_dataset("spurious-shapes", None, "train", n_train=160, image_size=32)
    val = load_dataset("spurious-shapes", None, "val", n_val=80, image_size=32)
    return train, val


def test_attribute_classifiers_read_the_background(shapes_splits):
    train, val = shapes_splits
    # 64 of the 160 training images (x 4 counterfactual renders each): the same accuracy (1.0 on the
    # val split) as all 160 (measured), in a fifth of the time
    clf = train_attribute_classifiers(
        train, heldout=val, method="logreg", image_size=16, max_train=64, seed=0, show_progress=False
    )
    assert clf.accuracy["heldout"] == "spurious-shapes/val" and clf.accuracy["n_heldout"] == len(val)
    assert clf.accuracy["spurious"]["accuracy"] >= 0.95 and clf.accuracy["spurious"]["worst_group"] >= 0.9
    assert set(clf.accuracy["core"]["groups"]) == {"0,0", "0,1", "1,0", "1,1"}
    # Exemplar-like case: val images that all sit on water → the spurious attribute is what they show.
    water = np.nonzero(val.spurious == 0)[0][:6]
    images = torch.from_numpy(val.images[water]).permute(0, 3, 1, 2).float() / 255
    r = concept_recovery(_viz(images, 0), clf, "spurious", truth_value="water")
    assert r["shown"] == "spurious" and r["recovered"] and r["value_match"]
    again = train_attribute_classifiers(
        train, heldout=val, method="logreg", image_size=16, max_train=64, seed=0, show_progress=False
    )
    assert again.accuracy == clf.accuracy


@pytest.mark.slow
def test_attribute_classifiers_reach_high_accuracy_on_spurious_shapes():
    from neuroinspect.datasets import load_dataset

    train = load_dataset("spurious-shapes", None, "train")
    val = load_dataset("spurious-shapes", None, "val")
    clf = train_attribute_classifiers(train, heldout=val, seed=0, show_progress=False)
    assert clf.accuracy["spurious"]["accuracy"] >= 0.97
    assert clf.accuracy["core"]["accuracy"] >= 0.9 and clf.accuracy["core"]["worst_group"] >= 0.8
    square = np.nonzero(val.core == 1)[0][:6]
    images = torch.from_numpy(val.images[square]).permute(0, 3, 1, 2).float() / 255
    r = concept_recovery(_viz(images, 0), clf, "core", truth_value="square")
    # Mixed backgrounds, one shape: the core attribute is the one the images agree on.
    assert r["recovered"] and r["value_match"]
