"""``benchmarks/study_coverage.py --smoke``: the coverage / power benchmark runs end to end and
reports figures that are shares in [0, 1] (the 100-repetition figures are in the README)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study_coverage.py"


def test_smoke_run_writes_coverage_and_power(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("study_coverage", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "coverage.json"
    assert module.main(["--smoke", "--no-progress", "--out", str(out)]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("coverage: glmm ") and "detection measured" in last
    data = json.loads(out.read_text())
    effect, null = data["effect"], data["null"]
    assert effect["reps"] == 3 and effect["true_difference"] == pytest.approx(0.15)
    for key in ("glmm_coverage", "paired_coverage", "paired_detection", "predicted_power", "oracle_power"):
        assert 0.0 <= effect[key] <= 1.0, key
    # the oracle power of this design, from the true model, sits between the extremes
    assert 0.5 < effect["oracle_power"] < 0.95
    assert null["true_difference"] == pytest.approx(0.0) and null["predicted_power"] is None
