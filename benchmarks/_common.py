"""Shared by the benchmark scripts: the cached spurious-shapes model and batched feature extraction."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from neuroinspect.datasets import get_dataset
from neuroinspect.harness.checkpoint import load_checkpoint
from neuroinspect.harness.models import ModelSurface, create_model
from neuroinspect.harness.presets import get_preset
from neuroinspect.harness.training import build_datasets, train_classifier
from neuroinspect.runtime import seed_everything

DATASET = "spurious-shapes"


def get_model(
    work: Path, epochs: int, seed: int, device: torch.device, image_size: int
) -> tuple[ModelSurface, Path, str]:
    """The cached checkpoint under ``work`` for these settings, or a freshly trained one.

    The cache tag includes a digest of the benchmark's resolved parameters, so a change of the
    generator's defaults trains a new model instead of loading one made on other data.
    """
    resolved = get_dataset(DATASET).resolve({"image_size": image_size})
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
    train_ds, val_ds = build_datasets(
        DATASET, None, surface.data_config, config, params={"image_size": image_size}
    )
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
        dataset_params={"image_size": image_size},
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
