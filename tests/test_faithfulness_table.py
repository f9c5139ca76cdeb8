"""``benchmarks/faithfulness_table.py --smoke``: a tiny random-init spurious-shapes checkpoint, two fast methods."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from neuroinspect.harness.checkpoint import load_checkpoint
from neuroinspect.harness.records import read_records

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "faithfulness_table.py"
PARAMS = {"image_size": 32, "n_train": 24, "n_val": 8, "n_test": 8}


def _load_script():
    if str(SCRIPT.parent) not in sys.path:  # the scripts import benchmarks/_common.py
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("faithfulness_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_has_one_row_per_method_from_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEUROINSPECT_CACHE", str(tmp_path / "cache"))
    table = _load_script()
    out = tmp_path / "table"
    threads = torch.get_num_threads()
    try:
        # --smoke: its own tiny checkpoint, exemplars and captum_saliency, 2 iterations, a random CLIP
        assert table.main(["--smoke", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    ckpt = out / "smoke-model.pt"
    assert load_checkpoint(ckpt).dataset_params == PARAMS
    printed = capsys.readouterr().out
    md = (out / "faithfulness.md").read_text()
    assert printed.rstrip().splitlines()[-1] == f"methods: 2 rows written to {out / 'faithfulness.md'}"
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split("|")[1].strip() for r in rows] == ["exemplars", "captum_saliency"]
    assert "2 iterations" in md and "synthetic-clip:random" in md

    data = json.loads((out / "faithfulness.json").read_text())
    neurons, labels = data["neurons"], data["truth_labels"]
    assert len(neurons) >= 1 and set(labels) <= {"spurious", "core"}
    # the picked neurons are the strongest of their label in the (cached) ground truth
    w = load_checkpoint(ckpt).surface.decision.weight
    assert data["classes"] == [int(w[:, n].argmax()) for n in neurons]  # each neuron's top class
    for row in data["rows"]:
        records = read_records(out / "records" / f"{row['method']}.jsonl")
        assert row["pairs"] == len(records) == len(neurons)
        concepts = [r["metrics"]["concept_recovery"] for r in records]
        n_spur = sum(c["truth_label"] == "spurious" for c in concepts)
        hits = sum(bool(c["recovered"]) for c in concepts if c["truth_label"] == "spurious")
        assert row["recovery_spurious"] == [hits, n_spur]
        spec = [r["metrics"]["faithfulness_specificity_mean"] for r in records]
        assert row["specificity"] == pytest.approx(sum(spec) / len(spec))
        assert row["clip_score"] is not None and -1.0 <= row["clip_score"] <= 1.0
    rows_by = {r["method"]: r for r in data["rows"]}
    assert rows_by["exemplars"]["deletion_auc"] is None
    assert rows_by["captum_saliency"]["deletion_auc"] is not None  # attribution: deletion vs random


def test_pick_neurons_takes_the_strongest_of_each_label() -> None:
    import numpy as np

    from neuroinspect.methods.groundtruth_scoring import truth_from_activations

    rng = np.random.default_rng(0)
    acts = rng.random((4, 2, 2, 6)) * 0.01
    for n, gain in ((0, 1.0), (1, 3.0), (2, 2.0)):  # spurious neurons of increasing strength 0 < 2 < 1
        acts[:, :, 1, n] += gain
    for n, gain in ((3, 2.0), (4, 5.0)):  # core neurons, 4 the strongest
        acts[:, 1, :, n] += gain
    truth = truth_from_activations(acts)
    assert truth.labels[:5] == ["spurious"] * 3 + ["core"] * 2
    table = _load_script()
    assert table.pick_neurons(truth, 2, 1) == [1, 2, 4]
    assert table.pick_neurons(truth, 5, 5) == [1, 2, 0, 4, 3]
