"""The load and fault script (benchmarks/study_load.py) in its smoke mode: counts only, no timing asserts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.long
def test_study_load_smoke(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    spec = importlib.util.spec_from_file_location("study_load", ROOT / "benchmarks" / "study_load.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from _services import postgres_bindir, services_required

    pg = None
    if postgres_bindir() or services_required():
        pg = request.getfixturevalue("pg_server")  # this process's cluster (fails when required and absent)
    backends = "sqlite,postgresql" if pg is not None else "sqlite"
    out = tmp_path / "load.json"
    assert mod.main(["--smoke", "--backends", backends, "--out", str(out)], pg=pg) == 0
    res = json.loads(out.read_text())
    assert set(res["backends"]) == set(backends.split(","))
    for name, r in res["backends"].items():
        a, f = r["load"], r["fault"]
        n, per = a["participants"], a["trials_per_participant"]
        assert (
            a["answers_given"] == a["answers_recorded_by_the_server"] == a["rows_in_database"] == n * per
        ), name
        assert a["resubmissions"] == n * per and a["resubmissions_recorded"] == 0 and a["duplicate_rows"] == 0
        assert a["complete"] == n and a["record_ms_p95"] > 0
        b = r["paced"]
        assert b["pause_s"] > 0 and b["answers_given"] == b["rows_in_database"] == n * per
        assert b["duplicate_rows"] == 0 and b["complete"] == n
        assert 0 < f["rows_when_killed"] < f["expected_rows"]
        assert f["acknowledged_but_lost"] == 0 and f["acknowledged_before_kill"] <= f["rows_when_killed"]
        assert f["resumed"] == f["participants_with_token_before_kill"] > 0
        assert f["completed_after_restart"] + f["refused_without_token"] == f["participants"]
        assert f["final_duplicate_rows"] == 0 and f["final_complete"] == f["completed_after_restart"]
        assert f["final_rows"] == f["expected_rows"] - f["refused_without_token"] * per
