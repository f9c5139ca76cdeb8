"""The model surface: backbone ▸ pool ▸ decision split of timm CNNs and ViTs."""

from __future__ import annotations

import pytest
import torch

from neuroinspect.errors import UserError
from neuroinspect.harness.models import IMAGENET_MEAN, IMAGENET_STD, DataConfig, create_model


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=3, image_size=32).eval()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return create_model("vit_tiny_patch16_224", num_classes=4, image_size=32).eval()


@pytest.mark.parametrize(("name", "classes", "width", "grid"), [("resnet", 3, 512, 1), ("vit", 4, 192, 2)])
def test_split_matches_timm_forward(request, name, classes, width, grid):
    surface = request.getfixturevalue(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = surface.model(x)
        feats = surface.forward_features(x)
        pooled = surface.pool(feats)
        logits = surface.decision(pooled)
        maps = surface.spatial_maps(feats)
    assert torch.allclose(surface(x), ref, atol=1e-5)
    assert torch.allclose(logits, ref, atol=1e-5)
    assert pooled.shape == (2, width)
    assert surface.num_features == surface.decision.in_features == width
    assert surface.num_classes == classes and ref.shape == (2, classes)
    # One spatial map per neuron: B×D×h×w, the channel index is the decision layer's input index.
    assert maps.shape == (2, width, grid, grid)


def test_resnet_pool_is_the_spatial_mean_of_the_maps(resnet):
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feats = resnet.forward_features(x)
        maps = resnet.spatial_maps(feats)
        pooled = resnet.pool(feats)
    assert maps.shape == (3, 512, 2, 2)
    assert torch.allclose(maps.mean(dim=(2, 3)), pooled, atol=1e-6)


def test_vit_maps_are_patch_tokens_without_cls(vit):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = vit.forward_features(x)
        maps = vit.spatial_maps(tokens)
    assert tokens.shape == (1, 1 + 4, 192)
    # Token 1 (first patch, top-left) is map position (0, 0); token 4 is (1, 1).
    assert torch.equal(maps[0, :, 0, 0], tokens[0, 1])
    assert torch.equal(maps[0, :, 1, 1], tokens[0, 4])


def test_data_config_follows_image_size(resnet, vit):
    assert resnet.data_config.input_size == (3, 32, 32)
    assert vit.data_config.input_size == (3, 32, 32)
    assert vit.data_config.mean == (0.5, 0.5, 0.5)
    assert DataConfig.from_dict(resnet.data_config.as_dict()) == resnet.data_config


def test_normalize_uses_the_model_mean_and_std(resnet):
    x = torch.rand(2, 3, 8, 8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(resnet.normalize(x), (x - mean) / std)


def test_freeze_stops_gradients():
    surface = create_model("resnet18", num_classes=2, image_size=32)
    surface.train()
    surface.freeze()
    assert not surface.training
    assert all(not p.requires_grad for p in surface.parameters())


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(UserError, match="timm has no model called 'resnet1800'"):
        create_model("resnet1800", num_classes=2)


def test_model_without_linear_head_is_refused():
    with pytest.raises(UserError, match="not nn.Linear"):
        create_model("resnet18", num_classes=0)


def test_pretrained_offline_fails_with_a_clear_message():
    # conftest sets HF_HUB_OFFLINE=1 and the weights are not cached: one UserError naming the fix.
    with pytest.raises(
        UserError, match=r"could not load pretrained weights for 'resnet18'.*--pretrained PATH"
    ):
        create_model("resnet18", num_classes=2, pretrained=True)


def test_missing_pretrained_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        create_model("resnet18", num_classes=2, pretrained=str(tmp_path / "nope.safetensors"))


def test_pretrained_weight_file_is_loaded(tmp_path):
    # A local timm weight file (what a user passes with --pretrained PATH) is loaded offline.
    donor = create_model("resnet18", num_classes=2, image_size=32)
    path = tmp_path / "r18.pth"
    torch.save(donor.model.state_dict(), path)
    loaded = create_model("resnet18", num_classes=2, pretrained=str(path), image_size=32)
    for (k, a), b in zip(donor.model.state_dict().items(), loaded.model.state_dict().values(), strict=True):
        if k.startswith("fc."):
            continue  # timm re-initialises the classifier when loading pretrained weights
        assert torch.equal(a, b), k
