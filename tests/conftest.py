"""Test-wide settings: offline hub, no progress bars, a private feature cache, seeded and single-threaded torch."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("NEUROINSPECT_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import neuroinspect  # noqa: E402,F401  (torchvision fix before anything imports torchvision)

# Under pytest-xdist each worker gets one thread, so workers do not fight over the cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROINSPECT_CACHE", str(tmp_path_factory.getbasetemp() / "ni-cache"))
    torch.manual_seed(0)


#: dataset parameters of the tiny spurious-shapes checkpoint shared by the command-line tests
TINY_SHAPES = {"image_size": 32, "n_train": 24, "n_val": 8, "n_test": 8}


@pytest.fixture(scope="session")
def tiny_shapes_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init resnet18 checkpoint (32 px, 2 classes) for spurious-shapes with :data:`TINY_SHAPES`.

    Shared by several test modules: treat it as read-only.
    """
    from neuroinspect.harness.checkpoint import save_checkpoint
    from neuroinspect.harness.models import create_model

    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=2, image_size=32)
    path = tmp_path_factory.mktemp("tiny-shapes") / "r18.pt"
    save_checkpoint(path, surface, ["triangle", "square"], "spurious-shapes", TINY_SHAPES)
    return path


@pytest.fixture(scope="session")
def tiny_shapes_vit_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ``vit_tiny_patch16_224`` at 32 px (a 2×2 patch grid) for spurious-shapes with
    :data:`TINY_SHAPES`; read-only."""
    from neuroinspect.harness.checkpoint import save_checkpoint
    from neuroinspect.harness.models import create_model

    torch.manual_seed(0)
    surface = create_model("vit_tiny_patch16_224", num_classes=2, image_size=32)
    path = tmp_path_factory.mktemp("tiny-shapes-vit") / "vit.pt"
    save_checkpoint(path, surface, ["triangle", "square"], "spurious-shapes", TINY_SHAPES)
    return path
