"""Checkpoints: a state dict plus the metadata needed to rebuild and use the model, never a pickled module.

Saved with :func:`save_checkpoint` (atomically) and read with :func:`load_checkpoint`, which refuses
files that are not neuroinspect checkpoints or that do not match what the caller expects.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroinspect.errors import CheckpointError
from neuroinspect.fileio import atomic_torch_save
from neuroinspect.harness.models import DataConfig, ModelSpec, ModelSurface, create_model

FORMAT = "neuroinspect-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model plus what it was trained on."""

    surface: ModelSurface
    classes: list[str]
    dataset: str
    dataset_params: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    surface: ModelSurface,
    classes: list[str],
    dataset: str,
    dataset_params: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``surface``'s weights and metadata to ``path`` atomically; returns the path."""
    if len(classes) != surface.num_classes:
        raise ValueError(f"{len(classes)} class names for a model with {surface.num_classes} outputs")
    state = {k: v.detach().cpu() for k, v in surface.model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": surface.spec.arch,
        "num_classes": surface.num_classes,
        "num_features": surface.num_features,
        "image_size": surface.spec.image_size,
        "model_kwargs": surface.spec.kwargs,
        "data_config": surface.data_config.as_dict(),
        "classes": list(classes),
        "dataset": dataset,
        "dataset_params": dict(dataset_params or {}),
        "train_config": dict(train_config or {}),
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
        "state_dict": state,
    }
    return atomic_torch_save(path, payload)


#: in a checkpoint path, replaced by the seed: one model file per seed (``runs/models/seed-{seed}/best.pt``)
SEED_FIELD = "{seed}"


def checkpoint_for_seed(path: str | Path, seed: int) -> str:
    """``path`` with :data:`SEED_FIELD` replaced by ``seed`` (unchanged when it has none)."""
    return str(path).replace(SEED_FIELD, str(seed))


#: digests already computed in this process, by (path, inode, size, modification and change times)
_SHA256_SEEN: dict[tuple[str, int, int, int, int], str] = {}
#: a file is remembered only once its last change is this old (nanoseconds): file-system timestamps are
#: coarse (a few ms), so a file rewritten in the same tick could otherwise keep the times it had
_SETTLED_NS = 2_000_000_000


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The file's SHA-256 (hex).

    Remembered per process while the file's inode, size, modification and change times stay the same
    (a sweep hashes each checkpoint for every node that loads it): a file replaced (a new inode, as our
    atomic writes do), rewritten in place, or touched is hashed again. A file changed in the last two
    seconds is not remembered."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if (digest := _SHA256_SEEN.get(key)) is not None:
        return digest
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
        if len(_SHA256_SEEN) >= 1024:
            _SHA256_SEEN.clear()
        _SHA256_SEEN[key] = digest
    return digest


_SAFETENSORS = (
    "{path} is a safetensors weight file, not a neuroinspect checkpoint; pass it to "
    "`neuroinspect train --pretrained PATH` to start from those weights."
)


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def diagnose_unreadable(path: Path, err: BaseException) -> str:
    """What is wrong with a file that ``torch.load`` could not read, and what to do: empty, truncated
    (an incomplete archive), a pickled module, a safetensors weight file, or not a torch file at all."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
    again = "Copy it again, or re-create it with `neuroinspect train`."
    if size == 0:
        return f"{path} is empty (0 bytes): its write or copy was interrupted. {again}"
    if head.startswith(b"PK\x03\x04") and "Weights only load failed" not in str(err):
        return (
            f"{path} is truncated or damaged: a torch archive of {size:,} bytes that cannot be read "
            f"({str(err).splitlines()[0][:80]}). {again}"
        )
    pickled = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if "Weights only load failed" in str(err) and (head.startswith(b"PK\x03\x04") or pickled):
        return (
            f"{path} is not a neuroinspect checkpoint: it holds pickled Python objects (e.g. a whole nn.Module). "
            "Pickled modules are not loaded (unsafe and bound to one library version); re-save the state dict "
            "with `neuroinspect train` or neuroinspect.harness.checkpoint.save_checkpoint."
        )
    if _is_safetensors(path):
        return _SAFETENSORS.format(path=path)
    return (
        f"{path} is not a checkpoint: its {size:,} bytes are not a torch file (the wrong file, or damaged). "
        "Pass a best.pt written by `neuroinspect train`."
    )


def load_checkpoint(
    path: str | Path,
    expect_dataset: str | None = None,
    expect_num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model (in eval mode).

    Raises :class:`CheckpointError` with the fix when the file is missing, is not a neuroinspect
    checkpoint (e.g. a pickled ``nn.Module``), or does not match ``expect_dataset`` / ``expect_num_classes``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inside = [p.name for p in (path / "best.pt", path / "last.pt", path / "edited.pt") if p.is_file()]
        hint = (
            f" (e.g. {path / inside[0]})"
            if inside
            else f" (`neuroinspect train --out {path}` writes best.pt)"
        )
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint; pass the checkpoint file inside it{hint}."
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist. Train one with `neuroinspect train ... --out DIR`."
        )
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before failing
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for foreign files
        raise CheckpointError(diagnose_unreadable(path, err)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if _is_safetensors(path):
            raise CheckpointError(_SAFETENSORS.format(path=path))
        raise CheckpointError(
            f"{path} is not a neuroinspect checkpoint (no '{FORMAT}' header). Re-save it with "
            "neuroinspect.harness.checkpoint.save_checkpoint."
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer neuroinspect (format {payload['format_version']}); upgrade neuroinspect."
        )
    if expect_dataset is not None and payload["dataset"] != expect_dataset:
        raise CheckpointError(
            f"{path} was trained on {payload['dataset']!r}, not {expect_dataset!r}. Pass the matching --dataset or checkpoint."
        )
    if expect_num_classes is not None and payload["num_classes"] != expect_num_classes:
        raise CheckpointError(
            f"{path} has {payload['num_classes']} classes but the dataset has {expect_num_classes}. "
            "Use a checkpoint trained on this dataset."
        )
    spec = ModelSpec(
        payload["arch"],
        int(payload["num_classes"]),
        payload.get("image_size"),
        dict(payload.get("model_kwargs") or {}),
    )
    surface = create_model(
        spec.arch, spec.num_classes, pretrained=False, image_size=spec.image_size, **spec.kwargs
    )
    try:
        surface.model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in {path} do not fit a {spec.arch} with {spec.num_classes} classes: "
            f"{str(err).splitlines()[0][:300]}. The checkpoint is damaged or was edited by hand."
        ) from None
    surface.data_config = DataConfig.from_dict(payload["data_config"])
    surface.eval()
    return Checkpoint(
        surface=surface,
        classes=list(payload["classes"]),
        dataset=payload["dataset"],
        dataset_params=dict(payload.get("dataset_params") or {}),
        train_config=dict(payload.get("train_config") or {}),
        metrics=dict(payload.get("metrics") or {}),
        path=path,
        sha256=file_sha256(path),
        extra=dict(payload.get("extra") or {}),
    )
