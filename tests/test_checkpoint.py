"""Checkpoints: state dict + metadata, round trip, and the refusals users rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuroinspect.errors import CheckpointError
from neuroinspect.harness.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from neuroinspect.harness.models import create_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=3, image_size=32).eval()
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(
        path,
        surface,
        ["a", "b", "c"],
        "toy",
        dataset_params={"n_train": 10},
        train_config={"lr": 0.01},
        metrics={"val_acc": 0.5},
        extra={"train_group_counts": [1, 2]},
    )
    return surface, path


def test_round_trip_gives_identical_logits_and_metadata(saved):
    surface, path = saved
    ckpt = load_checkpoint(path, expect_dataset="toy", expect_num_classes=3)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ckpt.surface(x), surface(x))
    assert not ckpt.surface.training
    assert ckpt.classes == ["a", "b", "c"]
    assert ckpt.dataset == "toy"
    assert ckpt.dataset_params == {"n_train": 10}
    assert ckpt.train_config == {"lr": 0.01}
    assert ckpt.metrics == {"val_acc": 0.5}
    assert ckpt.extra == {"train_group_counts": [1, 2]}
    assert ckpt.sha256 == file_sha256(path) and len(ckpt.sha256) == 64
    assert ckpt.surface.data_config == surface.data_config


def test_vit_round_trip_keeps_the_image_size(tmp_path):
    torch.manual_seed(1)
    surface = create_model("vit_tiny_patch16_224", num_classes=2, image_size=32).eval()
    path = save_checkpoint(tmp_path / "vit.pt", surface, ["x", "y"], "toy")
    ckpt = load_checkpoint(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.surface(x), surface(x))
    assert ckpt.surface.spec.image_size == 32


def test_pickled_module_is_rejected(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(4, 2), path)  # the reference's format: a pickled nn.Module
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)


def test_foreign_state_dict_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="no 'neuroinspect-checkpoint' header"):
        load_checkpoint(path)


def test_class_count_mismatch(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="has 3 classes but the dataset has 5"):
        load_checkpoint(path, expect_num_classes=5)


def test_dataset_mismatch(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="trained on 'toy', not 'waterbirds'"):
        load_checkpoint(path, expect_dataset="waterbirds")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_damaged_weights_are_reported(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("fc.weight")
    bad = tmp_path / "damaged.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="do not fit a resnet18 with 3 classes"):
        load_checkpoint(bad)


def test_class_names_must_match_outputs(saved, tmp_path):
    surface, _ = saved
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        save_checkpoint(tmp_path / "x.pt", surface, ["a", "b"], "toy")


def test_save_is_atomic_and_leaves_no_temp_files(saved):
    _, path = saved
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]


def test_a_damaged_file_or_a_folder_is_diagnosed_for_what_it_is(saved, tmp_path):
    """Truncated, empty, random bytes, a folder, safetensors: each named, with the fix (not "pickled")."""
    _, path = saved
    data = path.read_bytes()
    cases = {
        "truncated.pt": (data[: len(data) // 3], "is truncated or damaged: a torch archive"),
        "empty.pt": (b"", r"is empty \(0 bytes\): its write or copy was interrupted"),
        "random.pt": (bytes(range(7, 256)) * 20, "are not a torch file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint; .*\(e.g. .*best.pt\)"):
        load_checkpoint(path.parent)
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="safetensors weight file.*--pretrained PATH"):
        load_checkpoint(tmp_path / "w.safetensors")


def test_file_sha256_is_remembered_only_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest is kept per process (a sweep hashes one checkpoint for every node that loads it), so
    a stale one would give a changed checkpoint the old one's feature cache and run ids."""
    import hashlib
    import os
    import time

    from neuroinspect.harness import checkpoint

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 64)
    assert file_sha256(path) == sha(b"a" * 64)
    path.write_bytes(b"b" * 64)  # at once, same size: a file this fresh is not remembered
    assert file_sha256(path) == sha(b"b" * 64)

    monkeypatch.setattr(checkpoint, "_SETTLED_NS", 0)  # from here on every digest is remembered
    assert file_sha256(path) == sha(b"b" * 64)
    first = path.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    path.write_bytes(b"c" * 64)  # rewritten in place, and its modification time put back
    os.utime(path, ns=(first.st_atime_ns, first.st_mtime_ns))
    assert file_sha256(path) == sha(b"c" * 64)  # (its change time moved)
    time.sleep(0.05)
    other = tmp_path / "n.bin"
    other.write_bytes(b"d" * 64)
    os.replace(other, path)  # replaced, as our atomic writes do: a new inode
    assert file_sha256(path) == sha(b"d" * 64)
