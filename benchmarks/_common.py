"""Shared by the benchmark scripts: the cached spurious-shapes model, batched feature extraction and
the ``--smoke`` mode (every script runs in seconds on tiny settings, so that a broken script is noticed
by the test suite; its figures mean nothing)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from neuroinspect.datasets import get_dataset
from neuroinspect.harness.checkpoint import load_checkpoint
from neuroinspect.harness.models import ModelSurface, create_model
from neuroinspect.harness.presets import get_preset
from neuroinspect.harness.training import build_datasets, train_classifier
from neuroinspect.runtime import seed_everything

DATASET = "spurious-shapes"
#: ``--smoke``: spurious-shapes parameters of a tiny benchmark (the image size comes from each script)
SMOKE_DATA: dict[str, Any] = {"n_train": 40, "n_val": 16, "n_test": 16}


def add_smoke(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run in seconds on tiny settings (a check that the script works; the figures mean nothing)",
    )


def apply_smoke(parser: argparse.ArgumentParser, args: argparse.Namespace, tiny: dict[str, Any]) -> None:
    """With ``--smoke``, every option of ``tiny`` still at its default takes the tiny value (options
    given on the command line win)."""
    if not getattr(args, "smoke", False):
        return
    for key, value in tiny.items():
        if getattr(args, key) == parser.get_default(key):
            setattr(args, key, value)


def get_model(
    work: Path,
    epochs: int,
    seed: int,
    device: torch.device,
    image_size: int,
    params: dict[str, Any] | None = None,
) -> tuple[ModelSurface, Path, str]:
    """The cached checkpoint under ``work`` for these settings, or a freshly trained one.

    ``params``: spurious-shapes parameters besides the image size (e.g. :data:`SMOKE_DATA`). The cache
    tag includes a digest of the benchmark's resolved parameters, so a change of the generator's
    defaults trains a new model instead of loading one made on other data.
    """
    data = {**(params or {}), "image_size": image_size}
    resolved = get_dataset(DATASET).resolve(data)
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:10]
    tag = f"resnet18_{image_size}px_e{epochs}_s{seed}_{digest}"
    ckpt_path = work / tag / "best.pt"
    if ckpt_path.is_file():
        return load_checkpoint(ckpt_path).surface, ckpt_path, "loaded"
    spec = get_dataset(DATASET)
    config = get_preset("default", DATASET).with_overrides(epochs=epochs, image_size=image_size)
    seed_everything(seed)
    surface = create_model(
        "resnet18", num_classes=len(spec.resolve({})["shapes"]), pretrained=False, image_size=image_size
    )
    train_ds, val_ds = build_datasets(DATASET, None, surface.data_config, config, params=data)
    result = train_classifier(
        surface,
        train_ds,
        val_ds,
        config,
        device=device,
        seed=seed,
        out_dir=ckpt_path.parent,
        show_progress=True,
        dataset_name=DATASET,
        dataset_params=data,
    )
    return (
        result.surface,
        ckpt_path,
        f"trained ({epochs} epochs, best val acc {result.best_metrics.get('val_acc', float('nan')):.3f})",
    )


@torch.no_grad()
def batched_features(
    surface: ModelSurface, x: torch.Tensor, device: torch.device, batch_size: int = 128
) -> torch.Tensor:
    """Pooled features (N×D) of normalized images ``x`` (N×3×H×W), frozen backbone, no gradients."""
    out = [
        surface.features(x[i : i + batch_size].to(device)).float() for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(out)
