"""CLIP-Illusion (spec §4): parameterization numbers, augmentations, objectives, masks, the optimization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuroinspect.clip.synthetic import random_clip, tiny_clip_config
from neuroinspect.errors import UserError
from neuroinspect.harness.models import create_model
from neuroinspect.methods.visualizers import VISUALIZERS, load_all
from neuroinspect.methods.visualizers.clip_illusion import (
    ClipIllusion,
    LayerTap,
    top_classes_for_neuron,
    top_neurons_for_class,
)
from neuroinspect.methods.visualizers.masks import activation_masks, threshold_mask, upsample_maps, zscore
from neuroinspect.methods.visualizers.objectives import (
    Objective,
    ObjectiveInputs,
    class_logit,
    clip_similarity,
    illusion_objective,
    neuron_activation,
)
from neuroinspect.methods.visualizers.params import (
    Augmentation,
    FourierImage,
    PixelImage,
    color_matrix,
    fourier_scale,
    make_param,
)


# -- §4.1 parameterization ----------------------------------------------------------------------------
def test_fourier_scale_grid_matches_spec_numbers() -> None:
    s = fourier_scale(224, 224)
    assert s.shape == (224, 112)  # the Nyquist column of rfftfreq is dropped
    assert s[0, 0].item() == pytest.approx(224 * math.sqrt(0.5), rel=1e-5)  # 158.39: floor 1/(S·d)
    small = fourier_scale(8, 8)
    assert small.shape == (8, 4)
    assert small[0, 0].item() == pytest.approx(5.656854, rel=1e-5)  # 8·√0.5
    assert small[0, 1].item() == pytest.approx(5.656854, rel=1e-5)  # φ = 0.0743 < floor 0.1768
    assert small[4, 0].item() == pytest.approx(1.681793, rel=1e-5)  # fy = -1/√2: (1/2)^-0.75
    assert small[4, 3].item() == pytest.approx(1.203393, rel=1e-5)  # f² = 0.78125: 0.78125^-0.75


def test_color_matrix_normalized_by_max_column_norm() -> None:
    c = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    assert c.norm(dim=0).max().item() == pytest.approx(0.4620, abs=5e-5)
    m = color_matrix()
    assert torch.allclose(m, c / 0.46198, atol=1e-4)
    assert m.norm(dim=0).max().item() == pytest.approx(1.0, abs=1e-6)


def test_fourier_image_equals_numpy_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    p = FourierImage(2, 8, generator=gen, sd=0.5)
    assert p.spectrum.shape == (2, 3, 8, 4, 2)
    # the reference draws B×3×S×S and reads it as real/imaginary pairs: same numbers
    ref_init = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.5
    assert torch.equal(ref_init.view(2, 3, 8, 4, 2), p.spectrum.detach())
    out = p().detach().numpy()
    x = p.spectrum.detach().numpy()
    spec = (x[..., 0] + 1j * x[..., 1]) * fourier_scale(8, 8).numpy()
    full = np.concatenate([spec, np.zeros((2, 3, 8, 1))], axis=-1)  # the missing Nyquist column is zero
    u = np.fft.irfft2(full, s=(8, 8), norm="ortho")
    rgb = np.einsum("ij,bjhw->bihw", color_matrix().numpy(), u)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-rgb)), rtol=1e-5, atol=1e-6)
    assert out.min() > 0 and out.max() < 1


def test_parameterizations_render_in_unit_interval_and_take_gradients() -> None:
    for kind in ("fourier", "pixel"):
        p = make_param(kind, 3, 16, generator=torch.Generator().manual_seed(0), sd=0.1)
        x = p()
        assert x.shape == (3, 3, 16, 16) and float(x.detach().min()) > 0 and float(x.detach().max()) < 1
        x.sum().backward()
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in p.parameters())
    assert isinstance(make_param("pixel", 1, 4), PixelImage)
    with pytest.raises(ValueError, match="unknown image parameterization"):
        make_param("wavelet", 1, 4)


def test_noise_schedule_fixes_the_wraparound_and_keeps_it_under_ref() -> None:
    fixed = Augmentation(16, iters=10)
    ref = Augmentation(16, iters=10, ref_noise=True)
    # σ_p · r_t / T with r_t = T - 2 - t
    assert fixed.noise_factor(0) == pytest.approx(0.2 * 8 / 10)
    assert ref.noise_factor(0) == pytest.approx(0.2 * 8 / 10)
    assert fixed.noise_factor(8) == 0.0 and ref.noise_factor(8) == 0.0
    assert fixed.noise_factor(9) == 0.0  # default: no noise on the final step
    assert ref.noise_factor(9) == pytest.approx(0.2 * 9 / 10)  # reference: wraps to T-1 (bug 23)


def test_augmentation_keeps_size_is_seeded_and_differentiable() -> None:
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    a1 = Augmentation(24, 5, generator=torch.Generator().manual_seed(1))
    a2 = Augmentation(24, 5, generator=torch.Generator().manual_seed(1))
    y1, y2 = a1(x, 0), a2(x, 0)
    assert y1.shape == x.shape and torch.equal(y1, y2)
    y1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # one affine + resize draw per batch; the noise is a constant per image and channel
    a3 = Augmentation(24, 5, noise_std=0.0, generator=torch.Generator().manual_seed(1))
    flat = torch.full((1, 3, 24, 24), 0.5)
    z = a3(torch.cat([flat, flat]), 0)
    assert torch.equal(z[0], z[1])


# -- §4.4 masks ----------------------------------------------------------------------------------------
def test_masks_on_a_hand_made_map() -> None:
    maps = upsample_maps(torch.tensor([[[0.0, 1.0], [2.0, 3.0]]]), 3)  # align_corners=True
    assert torch.allclose(maps[0], torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]))
    z = zscore(maps)
    std = math.sqrt(7.5 / 8)  # unbiased
    assert z[0, 2, 2].item() == pytest.approx(1.5 / std, rel=1e-5)
    mask = threshold_mask(maps, tau=0.5, reduction=0.3)
    expected = torch.tensor([[0.3, 0.3, 0.3], [0.3, 0.3, 1.0], [1.0, 1.0, 1.0]])  # z ≥ 0.5 ⇔ value ≥ 2
    assert torch.allclose(mask[0], expected)
    # signed values: negative & hot → 0, exactly zero → reduction
    signed = torch.tensor([[[-4.0, 0.0], [0.0, 0.0]]])
    assert torch.allclose(
        threshold_mask(signed, tau=-2.0, reduction=0.5)[0], torch.tensor([[0.0, 0.5], [0.5, 0.5]])
    )
    assert torch.allclose(threshold_mask(signed, tau=0.5, reduction=0.5)[0], torch.full((2, 2), 0.5))
    # the unthresholded default is binary: mask(τ=0.25, reduction=0)
    binary = threshold_mask(maps, tau=0.25, reduction=0.0)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    # a constant map has z = 0 everywhere (no division by zero)
    assert torch.equal(threshold_mask(torch.ones(1, 4, 4), 0.25, 0.2), torch.full((1, 4, 4), 0.2))
    spatial = torch.zeros(2, 5, 2, 2)
    spatial[1, 3] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    m, k = activation_masks(spatial, [0, 3], 3, tau=0.5, reduction=0.3)
    assert m.shape == (2, 3, 3) and torch.allclose(k[1], expected)


# -- §4.2 objectives ----------------------------------------------------------------------------------
def _inputs(b: int, groups: list[int] | None = None) -> ObjectiveInputs:
    g = torch.Generator().manual_seed(b)
    emb = torch.nn.functional.normalize(torch.randn(b, 6, generator=g), dim=1)
    text = 0.8 * torch.nn.functional.normalize(torch.randn(b, 6, generator=g), dim=1)
    return ObjectiveInputs(
        activations=torch.rand(b, 4, generator=g) * 3,
        logits=torch.randn(b, 3, generator=g),
        neurons=torch.randint(0, 4, (b,), generator=g),
        classes=torch.randint(0, 3, (b,), generator=g),
        groups=torch.tensor(groups if groups is not None else [0] * b),
        image_emb=emb,
        text_emb=text,
    )


def test_ref_and_per_sample_objectives_agree_at_batch_one_and_differ_above() -> None:
    gamma, eps = 0.5, 0.05
    one = _inputs(1)
    a = one.activations[0, one.neurons[0]] + gamma * one.logits[0, one.classes[0]]
    s = (one.image_emb[0] * one.text_emb[0]).sum()
    intended = -(s + eps) * a
    per = illusion_objective(gamma, eps, coupled=False)
    ref = illusion_objective(gamma, eps, coupled=True)
    assert per.loss(one).item() == pytest.approx(intended.item(), rel=1e-6)
    assert ref.loss(one).item() == pytest.approx(intended.item(), rel=1e-6)

    many = _inputs(5)
    idx = torch.arange(5)
    a = many.activations[idx, many.neurons] + gamma * many.logits[idx, many.classes]
    s = (many.image_emb * many.text_emb).sum(1)
    per_sample = -((s + eps) * a).mean()
    coupled = -(s.mean() + eps) * a.mean()  # the reference's B×B broadcast: mean_ij (S_j + ε) A_i
    broadcast = -((s + eps).view(1, -1) * a.view(-1, 1)).mean()
    assert coupled.item() == pytest.approx(broadcast.item(), rel=1e-6)
    assert per.loss(many).item() == pytest.approx(per_sample.item(), rel=1e-5)
    assert ref.loss(many).item() == pytest.approx(coupled.item(), rel=1e-5)
    assert abs(per_sample.item() - coupled.item()) > 1e-4

    # two groups (pairs): each keeps its own mean, the losses add
    two = _inputs(4, groups=[0, 0, 1, 1])
    idx = torch.arange(4)
    a = two.activations[idx, two.neurons] + gamma * two.logits[idx, two.classes]
    s = (two.image_emb * two.text_emb).sum(1)
    want = sum(-(s[sl].mean() + eps) * a[sl].mean() for sl in (slice(0, 2), slice(2, 4)))
    assert ref.loss(two).item() == pytest.approx(float(want), rel=1e-5)


def test_objectives_compose_like_lucent() -> None:
    inp = _inputs(3)
    inp.classes[1] = -1  # one unconditioned sample
    a, z = neuron_activation(), class_logit()
    combo = a - 0.1 * z
    assert isinstance(combo, Objective)
    idx = torch.arange(3)
    zc = inp.logits[idx, inp.classes.clamp_min(0)] * (inp.classes >= 0)
    assert torch.allclose(combo(inp), inp.activations[idx, inp.neurons] - 0.1 * zc)
    assert torch.allclose((2 * a / 4 + 1)(inp), 0.5 * inp.activations[idx, inp.neurons] + 1)
    assert combo.requires == frozenset() and (clip_similarity(0.05) * a).requires == {"clip"}
    assert clip_similarity(0.05)(inp)[1].item() == 1.0  # neutral factor without a class text
    assert "class_logit" not in illusion_objective(class_gamma=0.0).name
    assert "clip" not in illusion_objective(use_clip=False).requires


# -- the optimization ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r18() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=3, image_size=64)


@pytest.fixture(scope="module")
def tiny_clip():  # noqa: ANN201
    cfg = tiny_clip_config(
        image_size=32, embed_dim=64, vision_width=64, vision_layers=1, text_width=64, text_layers=1
    )
    return random_clip(seed=0, config=cfg)


def _active_neurons(surface: torch.nn.Module, k: int) -> list[int]:
    with torch.no_grad():
        f = surface.eval().features(surface.normalize(torch.full((1, 3, 64, 64), 0.5)))[0]
    return f.topk(k).indices.tolist()


def test_clip_illusion_raises_activation_and_leaves_no_grads(r18, tiny_clip) -> None:  # noqa: ANN001
    load_all()
    assert VISUALIZERS.get("clip_illusion") is ClipIllusion
    neurons = _active_neurons(r18, 2)
    r18.train()
    flags = [p.requires_grad for p in r18.parameters()]
    vis = ClipIllusion(clip=tiny_clip, iters=8, lr=0.1, images_per_pair=2, domain_eps=1.0, class_gamma=0.5)
    out = vis.visualize(r18, neurons, [0, 2], class_names=["cat", "dog", "car"], seed=0, show_progress=False)
    assert [(v.neuron, v.class_idx) for v in out] == [(neurons[0], 0), (neurons[1], 2)]
    for v in out:
        assert v.images.shape == (2, 3, 64, 64)  # the model's input size
        assert v.activation_maps.shape == (2, 64, 64) and v.masks.shape == (2, 64, 64)
        assert len(v.activations) == 2 and len(v.class_probs) == 2 and len(v.extra["clip_scores"]) == 2
        assert len(v.extra["loss_curve"]) == 8
        assert np.mean(v.activations) > np.mean(v.extra["initial_activations"])  # the target rises
        assert v.wall_seconds > 0 and v.settings["pairs_in_batch"] == 2 and v.settings["batch"] == 4
    # frozen for the run, restored after, no gradients left anywhere
    assert all(p.grad is None for p in r18.parameters())
    assert all(p.grad is None for p in tiny_clip.model.parameters())
    assert [p.requires_grad for p in r18.parameters()] == flags and r18.training
    r18.eval()


def test_ablations_are_configurations(r18) -> None:  # noqa: ANN001
    class NoClip:
        spec = "must-not-be-used"

        def encode_image(self, x):  # noqa: ANN001, ANN202
            raise AssertionError("CLIP used in the use_clip=False ablation")

    vis = ClipIllusion(
        clip=None, use_clip=False, param="pixel", class_gamma=0.0, iters=2, images_per_pair=1, max_batch=1
    )
    vis._clip = NoClip()  # type: ignore[assignment]
    out = vis.visualize(r18, [1, 2], 0, class_names=["a", "b", "c"], show_progress=False)
    assert out[0].extra["objective"] == "activation" and "clip_scores" not in out[0].extra
    assert out[0].settings["param"] == "pixel"
    assert [v.neuron for v in out] == [1, 2] and all(
        v.settings["pairs_in_batch"] == 1 for v in out
    )  # max_batch splits


def test_unconditioned_pairs_drop_the_clip_term(r18, tiny_clip) -> None:  # noqa: ANN001
    # no class, no class text: the CLIP term cannot apply, the activation alone is maximized
    vis = ClipIllusion(clip=tiny_clip, iters=4, lr=0.1, images_per_pair=1)
    out = vis.visualize(r18, _active_neurons(r18, 2), None, show_progress=False)
    assert [v.class_idx for v in out] == [None, None]
    assert out[0].settings["objective"] == out[0].extra["objective"]
    assert "clip" not in out[0].extra["objective"] and "clip_scores" not in out[0].extra
    assert np.mean(out[0].activations) > np.mean(out[0].extra["initial_activations"])


def test_section_4_3_assignments() -> None:
    class Surface:  # only the decision layer is read
        decision = torch.nn.Linear(4, 3)
        num_features, num_classes = 4, 3

    with torch.no_grad():
        Surface.decision.weight.copy_(
            torch.tensor([[0.0, 1.0, 0.0, 0.2], [0.0, -1.0, 3.0, 0.1], [0.0, 0.5, 0.0, 0.3]])
        )
        Surface.decision.bias.zero_()
    assert top_classes_for_neuron(Surface(), 1, k=2) == [0, 2]  # decision(30 · e_1)
    assert top_neurons_for_class(Surface(), 1, k=2) == [2, 3]  # top entries of W[1]


def test_hooks_removed_and_state_restored_on_exception(r18, tiny_clip, monkeypatch) -> None:  # noqa: ANN001
    layer = r18.model.layer3
    boom = Objective(lambda i: (_ for _ in ()).throw(RuntimeError("boom")), "boom")
    monkeypatch.setattr(ClipIllusion, "objective", lambda self, with_clip=None: boom)
    vis = ClipIllusion(clip=tiny_clip, iters=2, images_per_pair=1, layer="layer3")
    with pytest.raises(RuntimeError, match="boom"):
        vis.visualize(r18, [3], 1, class_names=["a", "b", "c"], show_progress=False)
    assert len(layer._forward_hooks) == 0
    assert all(p.requires_grad for p in r18.parameters())
    with LayerTap(layer) as tap:
        r18(torch.zeros(1, 3, 64, 64))
        assert tap.output is not None and tap.output.shape[1] == 256
    assert len(layer._forward_hooks) == 0


def test_coupled_ref_mode_and_probe_layer_run(r18, tiny_clip) -> None:  # noqa: ANN001
    vis = ClipIllusion(
        clip=tiny_clip,
        iters=1,
        images_per_pair=2,
        ref=True,
        layer="layer3",
        thresholding=True,
        tau=0.0,
        reduction=0.5,
    )
    (v,) = vis.visualize(r18, [200], 1, class_names=["a", "b", "c"], show_progress=False)
    assert v.settings["ref"] and v.extra["objective"].startswith("(mean[")
    assert v.extra["thresholded"] and v.extra["raw_images"].shape == (2, 3, 64, 64)
    assert torch.allclose(v.images, v.extra["raw_images"] * v.masks.unsqueeze(1))
    assert set(v.masks.unique().tolist()) <= {0.5, 1.0}


def test_bad_inputs_are_user_errors(r18, tiny_clip) -> None:  # noqa: ANN001
    vis = ClipIllusion(clip=tiny_clip, iters=1, images_per_pair=1)
    with pytest.raises(UserError, match="neuron index 512 is out of range"):
        vis.visualize(r18, [512], 0, class_names=["a", "b", "c"], show_progress=False)
    with pytest.raises(UserError, match="class index 3 is out of range"):
        vis.visualize(r18, [1], 3, class_names=["a", "b", "c"], show_progress=False)
    with pytest.raises(UserError, match="class strings"):
        vis.visualize(r18, [1], 0, show_progress=False)
    with pytest.raises(UserError, match="no layer"):
        ClipIllusion(clip=tiny_clip, layer="layer9").visualize(r18, [1], 0, class_names=["a", "b", "c"])
    with pytest.raises(UserError, match="parameterization"):
        ClipIllusion(param="wavelet")


def test_vit_path_runs_with_token_maps(tiny_clip) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    vit = create_model("vit_tiny_patch16_224", num_classes=2, image_size=32)
    vis = ClipIllusion(clip=tiny_clip, iters=1, images_per_pair=1, thresholding=True)
    (v,) = vis.visualize(vit, [5], 1, class_names=["a", "b"], show_progress=False)
    assert v.images.shape == (1, 3, 32, 32) and v.activation_maps.shape == (1, 32, 32)
    assert not v.extra["thresholded"]  # the reference does not mask ViT images
    assert all(p.grad is None for p in vit.parameters())
