"""Concept recovery through ``neuroinspect visualize`` on a tiny spurious-shapes checkpoint, and its caches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPES as PARAMS

from neuroinspect.cli import main
from neuroinspect.datasets import get_dataset
from neuroinspect.harness.checkpoint import load_checkpoint
from neuroinspect.harness.records import read_records
from neuroinspect.harness.transforms import eval_transform, transform_kind
from neuroinspect.methods import concept_recovery as cr
from neuroinspect.methods.groundtruth_scoring import neuron_attribute_scores, truth_from_activations
from neuroinspect.methods.visualizers.base import Visualization
from neuroinspect.methods.visualizers.faithfulness import concept_recovery, train_attribute_classifiers

FAST = ["--truth-samples", "4", "--attr-set", "epochs=2", "--no-progress"]


@pytest.fixture(scope="module")
def ckpt(tiny_shapes_ckpt: Path) -> Path:
    return tiny_shapes_ckpt


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NEUROINSPECT_CACHE", str(root))
    return root


def _saved_images(folder: Path) -> tuple[torch.Tensor, list[str] | None]:
    """The images a visualization saved (n×3×H×W in [0, 1]) and their roles (top / bottom exemplars)."""
    from PIL import Image

    meta = json.loads((folder / "meta.json").read_text())
    arrays = [np.asarray(Image.open(folder / name).convert("RGB")) for name in meta["files"]["images"]]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return images, meta.get("extra", {}).get("role")


def _exemplars(ckpt: Path, out: Path, *extra: str, dataset: str = "spurious-shapes") -> list[str]:
    return [
        "visualize", "--method", "exemplars", "--ckpt", str(ckpt), "--neurons", "3", "5", "--class-idx", "0",
        "--dataset", dataset, "--images-per-pair", "2", "--out", str(out), *FAST, *extra,
    ]  # fmt: skip


def test_concept_recovery_lands_in_records_and_sidecars_and_is_cached(
    ckpt: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vis"
    assert main(_exemplars(ckpt, out)) == 0
    printed = capsys.readouterr().out
    assert "concept recovery: ground truth on spurious-shapes/val (4 samples)" in printed
    assert "attribute classifiers (cnn, trained)" in printed and "recovered" in printed.splitlines()[1]

    # the ground truth the command used = the truth measured directly with the eval transform and seed
    c = load_checkpoint(ckpt)
    transform = eval_transform(
        c.surface.data_config, transform_kind("spurious-shapes"), dataset="spurious-shapes"
    )
    val = get_dataset("spurious-shapes").load(None, "val", transform, **PARAMS)
    truth = neuron_attribute_scores(c.surface, val, transform, 4, 0, show_progress=False)

    records = read_records(out / "results.jsonl")
    assert [r["neuron"] for r in records] == [3, 5]
    for r in records:
        n = r["neuron"]
        concept = r["metrics"]["concept_recovery"]
        label = truth.labels[n]
        assert concept["truth_label"] == label
        assert concept["spurious_ratio"] == pytest.approx(float(truth.spurious_ratio[n]))
        if label in ("spurious", "core"):
            names = truth.spurious_names if label == "spurious" else truth.core_names
            assert concept["truth_value"] == names[cr.preferred_value(truth, n, label)]
            assert concept["recovered"] == (label in concept["shown_attributes"])
            assert isinstance(concept["value_match"], bool)
        else:
            assert concept["recovered"] is None
        # The verdict is the one concept_recovery (its rule is checked by hand in test_faithfulness.py)
        # gives the images the command showed, judged by the classifiers it trained and cached.
        images, roles = _saved_images(out / "exemplars" / str(n) / "0")
        again = concept_recovery(
            Visualization("exemplars", n, 0, images, [0.0] * len(images), extra={"role": roles}),
            cr.load_classifiers(next((cache / "attribute_classifiers").glob("*.pt"))),
            label,
            cr.preferred_value(truth, n, label),
        )
        for key in ("shown", "shown_attributes", "recovered", "value_match"):
            assert concept[key] == again[key], key
        assert concept["agreement_core"] == pytest.approx(again["agreement_core"], abs=1e-6)
        acc = concept["classifier_accuracy"]
        assert set(acc) == {"core", "spurious"} and all(0.0 <= v <= 1.0 for v in acc.values())
        assert concept["reliable"] == (min(acc.values()) >= cr.RELIABLE_ACCURACY)
        assert concept["classifier"]["cached"] is False
        assert r["metrics"]["concept_recovered"] == concept["recovered"]
        assert r["metrics"]["concept_value_match"] == concept["value_match"]
        assert "faithfulness_specificity_mean" in r["metrics"]  # faithfulness is still there
        cfg = r["config"]["concept_recovery"]
        assert cfg["classifiers"]["epochs"] == 2 and cfg["truth"]["n_samples"] == 4
        meta = json.loads((out / "exemplars" / str(n) / "0" / "meta.json").read_text())
        assert meta["metrics"]["concept_recovery"] == concept  # the sidecar says the same
    html = (out / "exemplars" / "contact_sheet.html").read_text()
    assert "concept: truth " in html

    # a second run reads both caches back: nothing is retrained or re-measured, the verdicts are the same
    (clf_file,) = (cache / "attribute_classifiers").glob("*.pt")
    (truth_file,) = (cache / "neuron_truth").glob("*.json")
    stamps = (clf_file.stat().st_mtime_ns, truth_file.stat().st_mtime_ns)
    assert main(_exemplars(ckpt, tmp_path / "again")) == 0
    assert "attribute classifiers (cnn, cached)" in capsys.readouterr().out
    assert (clf_file.stat().st_mtime_ns, truth_file.stat().st_mtime_ns) == stamps
    second = read_records(tmp_path / "again" / "results.jsonl")
    assert [r["metrics"]["concept_recovery"]["classifier"]["cached"] for r in second] == [True, True]
    for a, b in zip(records, second, strict=True):
        ca, cb = a["metrics"]["concept_recovery"], b["metrics"]["concept_recovery"]
        assert (ca["truth_label"], ca["truth_value"], ca["shown"], ca["classifier_accuracy"]) == (
            cb["truth_label"],
            cb["truth_value"],
            cb["shown"],
            cb["classifier_accuracy"],
        )
        assert ca["agreement_spurious"] == pytest.approx(cb["agreement_spurious"], abs=1e-6)


def test_classifier_cache_key_holds_seed_settings_and_data() -> None:
    spec = get_dataset("spurious-shapes")
    train = spec.load(None, "train", None, **PARAMS)
    val = spec.load(None, "val", None, **PARAMS)
    settings = cr.classifier_settings({"epochs": 2})
    key = cr.classifier_cache_key(train, val, settings, 0)
    assert key == cr.classifier_cache_key(spec.load(None, "train", None, **PARAMS), val, settings, 0)
    assert key != cr.classifier_cache_key(train, val, settings, 1)
    assert key != cr.classifier_cache_key(train, val, cr.classifier_settings({"epochs": 3}), 0)
    other = spec.load(None, "train", None, **{**PARAMS, "seed": 1})
    assert key != cr.classifier_cache_key(other, val, settings, 0)


def test_no_concept_recovery_flag_skips_it(ckpt: Path, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "off"
    assert main(_exemplars(ckpt, out, "--no-concept-recovery")) == 0
    (r, _) = read_records(out / "results.jsonl")
    assert "concept_recovery" not in r["metrics"] and "concept_recovered" not in r["metrics"]
    assert "faithfulness_specificity_mean" in r["metrics"]
    assert (
        "concept_recovery"
        not in json.loads((out / "exemplars" / "3" / "0" / "meta.json").read_text())["metrics"]
    )
    assert not (cache / "attribute_classifiers").exists()


def test_absent_on_a_dataset_without_ground_truth(ckpt: Path, tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "wb"
    assert main(["data", "make-fixture", "waterbirds", "--root", str(root)]) == 0
    out = tmp_path / "real"
    argv = _exemplars(ckpt, out, "--root", str(root), dataset="waterbirds")
    assert main(argv) == 0
    records = read_records(out / "results.jsonl")
    assert records and all("concept_recovery" not in r["metrics"] for r in records)
    assert all(r["metrics"]["faithfulness_activation_percentile_mean"] is not None for r in records)
    assert not (cache / "attribute_classifiers").exists() and not (cache / "neuron_truth").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attr-set", "bogus=1"], "no setting 'bogus'"),
        (["--attr-set", "epochs=many"], "epochs='many' must be a int"),
        (["--truth-samples", "0"], "--truth-samples must be at least 1"),
    ],
)
def test_bad_concept_options_exit_2(
    ckpt: Path,
    tmp_path: Path,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "bad"
    assert main([*_exemplars(ckpt, out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (out / "results.jsonl").exists()


# -- the cache's round trips -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["cnn", "logreg"])
def test_saved_classifiers_predict_the_same(tmp_path: Path, method: str) -> None:
    spec = get_dataset("spurious-shapes")
    train = spec.load(None, "train", None, **PARAMS)
    val = spec.load(None, "val", None, **PARAMS)
    clf = train_attribute_classifiers(
        train, heldout=val, method=method, image_size=16, epochs=2, max_train=6, seed=0, show_progress=False
    )
    back = cr.load_classifiers(cr.save_classifiers(tmp_path / "c.pt", clf))
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for key, p in clf.predict_proba(x).items():
        assert torch.allclose(back.predict_proba(x)[key], p, atol=1e-6)
    assert back.accuracy == clf.accuracy and back.core_names == clf.core_names


def test_truth_json_round_trip_and_preferred_value() -> None:
    rng = np.random.default_rng(0)
    acts = rng.random((3, 2, 2, 5))
    acts[:, :, 1, 0] += 5.0  # neuron 0: fires on spurious value 1
    acts[:, 0, :, 1] += 5.0  # neuron 1: fires on core value 0
    truth = truth_from_activations(acts, ["triangle", "square"], ["water", "land"])
    back = cr.truth_from_json(json.loads(json.dumps(cr.truth_to_json(truth))))
    assert back.labels == truth.labels and np.array_equal(back.spurious_means, truth.spurious_means)
    assert np.array_equal(back.spurious_effect, truth.spurious_effect) and back.indices == truth.indices
    assert truth.labels[:2] == ["spurious", "core"]
    assert cr.preferred_value(truth, 0, "spurious") == 1 and cr.preferred_value(truth, 1, "core") == 0
    assert cr.preferred_value(truth, 0, "mixed") is None


def test_benchmarks_are_recognised() -> None:
    assert cr.is_benchmark("spurious-shapes") and cr.is_benchmark("colored-digits")
    assert not cr.is_benchmark("waterbirds") and not cr.is_benchmark(None) and not cr.is_benchmark("nope")
