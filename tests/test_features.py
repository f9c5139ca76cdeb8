"""The feature cache: what extraction returns, where an entry lives, when it is read back and when it
is recomputed (a damaged or untrusted entry, another checkpoint, data or transform), and one split
through ``pipeline.split_features``.

The model is hand-made (:class:`ChannelMeans`: a feature is an image's mean red, green or blue), so
every answer is known from the images alone; a random test resnet checks the training-mode case.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from neuroinspect.datasets import InMemoryImageDataset, Sample
from neuroinspect.harness import features as F
from neuroinspect.harness.features import FeatureCache, FeatureSet, default_cache_dir, extract_features
from neuroinspect.harness.transforms import describe

N = 5  # images per split: batches of 2 give 3 batches, the last one short


class ChannelMeans(torch.nn.Module):
    """A surface computing in float64: features (D = 3) are each image's mean red, green and blue; the
    decision layer (K = 3) gives class 0 the green, class 1 the blue and class 2 the red mean."""

    num_features, num_classes = 3, 3

    def __init__(self) -> None:
        super().__init__()
        self.decision = torch.nn.Linear(3, 3, dtype=torch.float64)
        with torch.no_grad():
            self.decision.weight.copy_(torch.eye(3).roll(1, dims=1))
            self.decision.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().mean(dim=(2, 3))


@pytest.fixture
def surface() -> Any:
    return ChannelMeans()


def _to_tensor(image: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def _dataset(groups: bool = True, n: int = N, seed: int = 0, split: str = "val", size: int = 4) -> Any:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    samples = [
        Sample(f"toy/{split}/{i:03d}", label=(2 * i + 1) % 3, group=(i % 2) if groups else None)
        for i in range(n)
    ]
    return InMemoryImageDataset(
        images,
        name="toy",
        split=split,
        samples=samples,
        classes=["a", "b", "c"],
        group_names=["g0", "g1"] if groups else None,
        transform=_to_tensor,
        params={"seed": seed, "n": n},
    )


def _truth(ds: Any) -> torch.Tensor:
    """Each image's mean red, green and blue in [0, 1], N×3 float32: ChannelMeans' features."""
    return torch.from_numpy(ds.images.astype(np.float64).mean(axis=(1, 2)) / 255.0).float()


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "features").glob("*"))


# -- extraction -------------------------------------------------------------------------------------------
def test_extraction_returns_each_images_features_logits_and_labels_in_dataset_order(
    surface: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _dataset()
    want = _truth(ds)
    fs = extract_features(surface, ds, batch_size=2, show_progress=False)
    assert len(fs) == N and fs.num_features == 3
    # float32 whatever the model computes in: the cache and every finder read N x D float32
    assert fs.features.dtype == fs.logits.dtype == torch.float32
    torch.testing.assert_close(fs.features, want)
    torch.testing.assert_close(fs.logits, want[:, [1, 2, 0]])  # green, blue, red
    assert fs.preds.tolist() == want[:, [1, 2, 0]].argmax(1).tolist()
    assert fs.labels.tolist() == [1, 0, 2, 1, 0] and fs.labels.dtype == torch.int64
    assert fs.groups is not None and fs.groups.tolist() == [0, 1, 0, 1, 0] and fs.groups.dtype == torch.int64
    assert fs.indices.tolist() == list(range(N)) and fs.indices.dtype == torch.int64
    assert fs.paths == [f"toy/val/{i:03d}" for i in range(N)]
    assert fs.meta == {"dataset": "toy", "split": "val", "num_groups": 2, "classes": ["a", "b", "c"]}
    assert not fs.features.requires_grad and not fs.logits.requires_grad  # no graph kept
    assert capsys.readouterr().err == ""  # show_progress=False: nothing said
    # the batch size changes nothing but the number of batches, which the stage's log line counts
    one = extract_features(surface, ds, batch_size=N)
    torch.testing.assert_close(one.features, want)
    err = capsys.readouterr().err
    assert err.startswith("features toy/val: done in ") and err.endswith("s (1 batches)\n"), err
    extract_features(surface, ds, batch_size=2, show_progress=True)
    assert capsys.readouterr().err.endswith("(3 batches)\n")


def test_a_model_left_in_training_mode_is_evaluated_in_eval_mode() -> None:
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.transforms import eval_transform

    torch.manual_seed(0)
    resnet = create_model("test_resnet", num_classes=3, image_size=16).eval()
    ds = _dataset(size=16)
    ds.transform = eval_transform(resnet.data_config, "benchmark")
    with torch.no_grad():  # batch norm on its running statistics, not on the batch's
        truth = resnet.features(torch.stack([ds[i]["image"] for i in range(len(ds))]))
    resnet.train()
    fs = extract_features(resnet, ds, batch_size=N, show_progress=False)
    torch.testing.assert_close(
        fs.features,
        truth,
    )


def test_a_dataset_without_groups_gives_none_and_an_empty_one_gives_empty_tensors(surface: Any) -> None:
    plain = extract_features(surface, _dataset(groups=False), batch_size=2, show_progress=False)
    assert plain.groups is None and plain.meta["num_groups"] == 0 and len(plain) == N
    empty = extract_features(surface, _dataset(n=0), show_progress=False)
    assert empty.features.shape == (0, 3) and empty.logits.shape == (0, 3)
    assert empty.features.dtype == empty.logits.dtype == torch.float32
    assert empty.labels.shape == empty.indices.shape == (0,) and empty.paths == []
    assert empty.labels.dtype == empty.indices.dtype == torch.int64
    assert empty.groups is not None and empty.groups.shape == (0,) and empty.groups.dtype == torch.int64


def test_subset_keeps_the_masked_rows_of_every_field() -> None:
    fs = FeatureSet(
        features=torch.arange(12.0).reshape(4, 3),
        logits=torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]),
        labels=torch.tensor([1, 0, 0, 1]),
        groups=torch.tensor([3, 2, 1, 0]),
        indices=torch.tensor([10, 11, 12, 13]),
        paths=["p0", "p1", "p2", "p3"],
        meta={"split": "val"},
    )
    sub = fs.subset(torch.tensor([False, True, False, True]))
    assert len(sub) == 2 and len(fs) == 4
    assert sub.features.tolist() == [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]
    assert sub.logits.tolist() == [[1.0, 0.0], [0.0, 3.0]] and sub.preds.tolist() == [0, 1]
    assert sub.labels.tolist() == [0, 1] and sub.indices.tolist() == [11, 13]
    assert sub.groups is not None and sub.groups.tolist() == [2, 0]
    assert sub.paths == ["p1", "p3"]
    # the meta is a copy: marking the subset does not mark the whole split
    assert sub.meta == {"split": "val"}
    sub.meta["cache_key"] = "x"
    assert fs.meta == {"split": "val"}
    no_groups = FeatureSet(fs.features, fs.logits, fs.labels, None, fs.indices, fs.paths)
    assert no_groups.subset(torch.tensor([True, False, False, False])).groups is None
    assert len(fs.subset(torch.zeros(4, dtype=torch.bool))) == 0


# -- where the cache lives and what its key is ------------------------------------------------------------
def test_the_cache_lives_under_neuroinspect_cache_or_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEUROINSPECT_CACHE", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "neuroinspect"
    assert FeatureCache().root == tmp_path / "home" / ".cache" / "neuroinspect"
    monkeypatch.setenv("NEUROINSPECT_CACHE", "~/store")
    assert default_cache_dir() == tmp_path / "home" / "store"  # ~ expanded
    assert FeatureCache().path("k") == tmp_path / "home" / "store" / "features" / "k.pt"
    assert FeatureCache(str(tmp_path / "given")).path("abc") == tmp_path / "given" / "features" / "abc.pt"


def test_the_key_is_stable_across_versions_and_names_checkpoint_data_and_transform() -> None:
    ds = _dataset()
    key = FeatureCache.key("sha-a", ds, "eval")
    # pinned: the first 24 hex digits of sha256("sha-a|fp|eval"). Another rule would make every cache
    # written so far a miss (hours of features on a real dataset), so a change must be deliberate
    fake = SimpleNamespace(fingerprint=lambda: "fp", transform=None)
    assert FeatureCache.key("sha-a", fake, "eval") == "7dc76ab41a96bb8d272dee1d"
    assert FeatureCache.key("sha-a", fake) == FeatureCache.key("sha-a", fake, "none")  # describe(None)
    assert len(key) == 24 and int(key, 16) >= 0
    # without a description the dataset's transform is described
    assert FeatureCache.key("sha-a", ds) == FeatureCache.key("sha-a", ds, describe(ds.transform))
    others = {
        FeatureCache.key("sha-b", ds, "eval"),
        FeatureCache.key("sha-a", _dataset(seed=1), "eval"),
        FeatureCache.key("sha-a", _dataset(split="test"), "eval"),
        FeatureCache.key("sha-a", ds, "eval-ref"),
        FeatureCache.key("sha-a", ds),
    }
    assert key not in others and len(others) == 5


# -- hits, misses and entries not to trust ---------------------------------------------------------------
def test_a_miss_stores_the_features_and_a_hit_reads_them_back_without_the_model(
    surface: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _dataset()
    f = _truth(ds)
    cache = FeatureCache(tmp_path)
    key = FeatureCache.key("sha-a", ds, "eval")
    first = cache.get_or_compute(
        surface, "sha-a", ds, batch_size=2, transform_desc="eval", show_progress=True
    )
    assert _entries(tmp_path) == [f"{key}.pt"]  # one file, at the documented path, no temporary left
    assert first.meta["cache_key"] == key
    torch.testing.assert_close(
        first.features,
        f,
    )
    assert capsys.readouterr().err.endswith("(3 batches)\n")  # extracted, in batches of 2, and said so

    class Broken(torch.nn.Module):  # a hit must not run the model at all
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the model was used on a cache hit ({name})")

    again = cache.get_or_compute(Broken(), "sha-a", ds, transform_desc="eval")  # type: ignore[arg-type]
    assert capsys.readouterr().err == ""
    assert again.meta == {**first.meta, "cache_key": key}
    for name in ("features", "logits", "labels", "groups", "indices"):
        assert torch.equal(getattr(again, name), getattr(first, name)), name
    assert again.paths == first.paths
    # the default is quiet only when asked: a miss with the defaults says its line
    cache.get_or_compute(surface, "sha-b", ds, transform_desc="eval")
    assert "features toy/val: done in" in capsys.readouterr().err


def test_a_damaged_or_untrusted_entry_is_recomputed_and_replaced(surface: Any, tmp_path: Path) -> None:
    ds = _dataset()
    f = _truth(ds)
    cache = FeatureCache(tmp_path)
    path = cache.path(FeatureCache.key("sha-a", ds, "eval"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    fs = cache.get_or_compute(surface, "sha-a", ds, transform_desc="eval", show_progress=False)
    torch.testing.assert_close(
        fs.features,
        f,
    )
    assert fs.meta["cache_key"] == path.stem
    assert torch.equal(FeatureSet.from_payload(torch.load(path, weights_only=True)).features, fs.features)
    # an entry holding an arbitrary Python object is never unpickled (it could run code): recomputed
    payload = fs.to_payload()
    payload["meta"] = {"dataset": SimpleNamespace(x=1)}
    payload["features"] = torch.zeros_like(fs.features)
    torch.save(payload, path)
    again = cache.get_or_compute(surface, "sha-a", ds, transform_desc="eval", show_progress=False)
    torch.testing.assert_close(
        again.features,
        f,
    )
    assert again.meta["dataset"] == "toy"


def test_the_device_and_batch_size_asked_for_reach_the_extraction(
    surface: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    real = F.extract_features

    def spy(*args: Any, **kwargs: Any) -> FeatureSet:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "extract_features", spy)
    device = torch.device("cpu")
    FeatureCache(tmp_path).get_or_compute(
        surface, "sha-a", _dataset(), batch_size=3, device=device, show_progress=False
    )
    assert seen == [{"batch_size": 3, "device": device, "show_progress": False}]
    from neuroinspect.harness.pipeline import split_features

    ds = _dataset(seed=2)
    split_features(
        SimpleNamespace(surface=surface, sha256="s"), ds, ds.transform, FeatureCache(tmp_path), device=device
    )
    assert seen[1] == {"batch_size": 256, "device": device, "show_progress": False}


def test_the_model_and_each_batch_go_to_the_device_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every device is the CPU here, so the moves are recorded rather than seen in where tensors live:
    a GPU user's extraction needs the model and every batch on the GPU asked for."""
    moves: list[tuple[str, tuple[Any, ...]]] = []

    class Recording(ChannelMeans):
        def to(self, *args: Any, **kwargs: Any) -> Any:
            moves.append(("model", args))
            return super().to(*args, **kwargs)

    real_to = torch.Tensor.to

    def tensor_to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.dim() == 4:  # an image batch (the model's own move also moves its parameters)
            moves.append(("batch", args))
        return real_to(self, *args, **kwargs)

    device = torch.device("cpu", 0)
    monkeypatch.setattr(torch.Tensor, "to", tensor_to)
    fs = extract_features(Recording(), _dataset(), batch_size=2, device=device, show_progress=False)
    monkeypatch.undo()
    assert len(fs) == N
    assert moves == [("model", (device,))] + [("batch", (device,))] * 3  # 5 images in batches of 2


# -- one split through the pipeline's step ----------------------------------------------------------------
def test_split_features_keys_by_the_checkpoints_hash_the_data_and_the_transform(
    surface: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroinspect.harness.pipeline import split_features

    ds = _dataset()
    f = _truth(ds)
    cache = FeatureCache(tmp_path)
    ckpt = SimpleNamespace(surface=surface, sha256="sha-a")
    fs = split_features(ckpt, ds, ds.transform, cache, batch_size=2, show_progress=True)
    torch.testing.assert_close(
        fs.features,
        f,
    )
    assert capsys.readouterr().err.endswith("(3 batches)\n")
    # the same entry as any other reader of this checkpoint, split and transform (a sweep's node)
    key = FeatureCache.key("sha-a", ds, describe(ds.transform))
    assert fs.meta["cache_key"] == key and _entries(tmp_path) == [f"{key}.pt"]
    assert torch.equal(split_features(ckpt, ds, ds.transform, cache).features, fs.features)
    assert _entries(tmp_path) == [f"{key}.pt"] and capsys.readouterr().err == ""  # a quiet hit
    # another checkpoint, or the same one through another transform: other entries
    split_features(SimpleNamespace(surface=surface, sha256="sha-b"), ds, ds.transform, cache)
    assert len(_entries(tmp_path)) == 2 and capsys.readouterr().err == ""  # a miss, quiet by default
    split_features(ckpt, ds, None, cache)
    assert FeatureCache.key("sha-a", ds, "none") + ".pt" in _entries(tmp_path)
    # a checkpoint without a recorded hash (never saved) keys by the empty hash, not a crash
    unsaved = split_features(SimpleNamespace(surface=surface, sha256=None), ds, ds.transform, cache)
    assert unsaved.meta["cache_key"] == FeatureCache.key("", ds, describe(ds.transform))
