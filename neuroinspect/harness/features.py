"""The feature cache: pooled penultimate features of a split, computed once and stored on disk.

The backbone is frozen for finders and editors, so they work on these features instead of
re-running it (the reference recomputes the backbone at every step). A cache entry is keyed by the
checkpoint's hash, the dataset split's fingerprint and the transform, and written atomically.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from neuroinspect.datasets.base import ImageDataset
from neuroinspect.fileio import atomic_torch_save
from neuroinspect.harness.models import ModelSurface
from neuroinspect.runtime import progress


@dataclass
class FeatureSet:
    """Features of one split. ``features`` N×D float32 (pooled, the decision layer's input),
    ``logits`` N×K float32 (from the decision layer at extraction time), ``labels`` N int64,
    ``groups`` N int64 or ``None``, ``indices`` N int64 (dataset indices), ``paths`` N strings."""

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor | None
    indices: torch.Tensor
    paths: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def preds(self) -> torch.Tensor:
        """Predicted classes, N int64."""
        return self.logits.argmax(dim=1)

    def subset(self, mask: torch.Tensor) -> FeatureSet:
        """The rows where the boolean ``mask`` (N) is true."""
        idx = torch.nonzero(mask, as_tuple=False).flatten()
        return FeatureSet(
            features=self.features[idx],
            logits=self.logits[idx],
            labels=self.labels[idx],
            groups=None if self.groups is None else self.groups[idx],
            indices=self.indices[idx],
            paths=[self.paths[i] for i in idx.tolist()],
            meta=dict(self.meta),
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "logits": self.logits,
            "labels": self.labels,
            "groups": self.groups,
            "indices": self.indices,
            "paths": self.paths,
            "meta": self.meta,
        }

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> FeatureSet:
        return cls(**d)


def extract_features(
    surface: ModelSurface,
    dataset: ImageDataset,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    show_progress: bool = True,
) -> FeatureSet:
    """Run the frozen backbone over ``dataset`` (whose transform yields normalized tensors)."""
    # a context, not a @torch.no_grad() decorator: the mutation check (benchmarks/mutation_score.py)
    # leaves decorated functions out
    with torch.no_grad():
        surface = surface.to(device).eval()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        feats, logits, labels, groups, indices = [], [], [], [], []
        for batch in progress(
            loader, desc=f"features {dataset.name}/{dataset.split}", enabled=show_progress, unit="batches"
        ):
            x = batch["image"].to(device)
            f = surface.features(x)
            feats.append(f.float().cpu())
            logits.append(surface.decision(f).float().cpu())
            labels.append(batch["label"])
            groups.append(batch["group"])
            indices.append(batch["index"])
        idx = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
        grp = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.long)
        D, K = surface.num_features, surface.num_classes
        return FeatureSet(
            features=torch.cat(feats) if feats else torch.zeros(0, D),
            logits=torch.cat(logits) if logits else torch.zeros(0, K),
            labels=torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long),
            groups=grp.long() if dataset.group_names is not None else None,
            indices=idx.long(),
            paths=[dataset.samples[i].path for i in idx.tolist()],
            meta={
                "dataset": dataset.name,
                "split": dataset.split,
                "num_groups": dataset.num_groups,
                "classes": dataset.classes,
            },
        )


def default_cache_dir() -> Path:
    """``$NEUROINSPECT_CACHE`` or ``~/.cache/neuroinspect``."""
    env = os.environ.get("NEUROINSPECT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuroinspect"


class FeatureCache:
    """Feature sets on disk under ``root/features/<key>.pt``.

    ``key = sha256(checkpoint sha256, dataset fingerprint, transform description)`` (the description is
    :func:`~neuroinspect.harness.transforms.describe` of the dataset's transform unless given): a new
    checkpoint, a different split or a different transform never reads a stale entry.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    @staticmethod
    def key(checkpoint_sha: str, dataset: ImageDataset, transform_desc: str | None = None) -> str:
        from neuroinspect.harness.transforms import describe

        # describe(), not repr(): a repr may hold a memory address, which would miss the cache in every
        # new process
        desc = transform_desc if transform_desc is not None else describe(dataset.transform)
        h = hashlib.sha256("|".join([checkpoint_sha, dataset.fingerprint(), desc]).encode())
        return h.hexdigest()[:24]

    def path(self, key: str) -> Path:
        return self.root / "features" / f"{key}.pt"

    def get_or_compute(
        self,
        surface: ModelSurface,
        checkpoint_sha: str,
        dataset: ImageDataset,
        batch_size: int = 128,
        device: str | torch.device = "cpu",
        transform_desc: str | None = None,
        show_progress: bool = True,
    ) -> FeatureSet:
        """Cached features of ``dataset`` for this checkpoint, extracting and storing them on a miss."""
        path = self.path(self.key(checkpoint_sha, dataset, transform_desc))
        if path.is_file():
            try:
                cached = FeatureSet.from_payload(torch.load(path, map_location="cpu", weights_only=True))
                cached.meta["cache_key"] = path.stem
                return cached
            except Exception:  # noqa: BLE001 - a damaged entry is recomputed, never trusted
                path.unlink(missing_ok=True)
        fs = extract_features(
            surface, dataset, batch_size=batch_size, device=device, show_progress=show_progress
        )
        fs.meta["cache_key"] = path.stem
        atomic_torch_save(path, fs.to_payload())
        return fs
