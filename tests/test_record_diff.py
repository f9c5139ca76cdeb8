"""`neuroinspect bench compare A B`: two runs measured the same numbers, or where they did not."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from neuroinspect.cli import main
from neuroinspect.harness.record_diff import compare_records


def _record(run_id: str, test_acc: float, wall: float) -> dict[str, Any]:
    block = {
        "test_acc": test_acc,
        "class_acc": 0.5,
        "worst_class_acc": 0.25,
        "worst_group_acc": 0.2,
        "mean_acc_train_weighted": 0.6,
    }
    return {
        "schema_version": 1,
        "run_id": run_id,
        "task": "mitigation",
        "dataset": "spurious-shapes",
        "model": "resnet18",
        "class_idx": 1,
        "method": {"finder": "random", "editor": "fc"},
        "seed": 0,
        "metrics": {
            "before": dict(block),
            "after": dict(block),
            "edit_wall_seconds": wall,
            "faithfulness": {"metric_seconds": wall, "curve": [0.1, 0.2]},
        },
        "config": {},
        "provenance": {
            "versions": {
                "torch": "2",
                "timm": None,
                "open_clip_torch": None,
                "captum": None,
                "torch-lucent": None,
            },
            "git_commit": None,
            "device": "cpu",
            "started_at": "2026-12-01T00:00:00+00:00",
            "wall_seconds": wall,
        },
        "source": "measured",
    }


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_timings_and_provenance_are_not_compared_but_every_metric_is() -> None:
    a = [_record("r1", 0.9, 1.0), _record("r2", 0.8, 2.0)]
    b = copy.deepcopy(a)
    for r in b:  # another executor: other timings, commit and start time
        r["metrics"]["edit_wall_seconds"] *= 3
        r["metrics"]["faithfulness"]["metric_seconds"] += 1
        r["provenance"].update(git_commit="abc", wall_seconds=99.0, started_at="2026-12-02T00:00:00+00:00")
    same = compare_records(a, b)
    assert same.same and same.identical == 2 and not same.differences

    b[1]["metrics"]["after"]["test_acc"] = 0.8 + 1e-9
    b[0]["metrics"]["faithfulness"]["curve"][1] = 0.25  # a number in a list counts too
    diff = compare_records(a, b)
    assert not diff.same and diff.identical == 0 and diff.differing == ["r1", "r2"]
    assert [(d.run_id, d.path, d.a, d.b) for d in diff.differences] == [
        ("r1", "faithfulness.curve[1]", 0.2, 0.25),
        ("r2", "after.test_acc", 0.8, 0.8 + 1e-9),
    ]
    # a tolerance lets the rounding-sized difference through, not the real one
    assert compare_records(a, b, atol=1e-6).differing == ["r1"]

    del b[0]["metrics"]["faithfulness"]["curve"]  # a metric one side lacks is a difference
    b[0]["metrics"]["faithfulness"]["curve"] = None
    assert compare_records(a, b).differing == ["r1", "r2"]


def test_records_only_on_one_side_make_the_runs_differ() -> None:
    a = [_record("r1", 0.9, 1.0), _record("r2", 0.8, 1.0)]
    b = [_record("r2", 0.8, 5.0), _record("r3", 0.7, 1.0)]
    out = compare_records(a, b)
    assert (out.only_a, out.only_b, out.identical) == (["r1"], ["r3"], 1)
    assert not out.same
    text = out.summary("local", "ray")
    assert "1 of 1 shared records have identical metrics" in text
    assert "1 only in local, e.g. r1" in text and "1 only in ray, e.g. r3" in text


def test_bench_compare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = [_record("r1", 0.9, 1.0), _record("r2", 0.8, 2.0)]
    b = copy.deepcopy(a)
    b[0]["metrics"]["edit_wall_seconds"] = 7.0
    (tmp_path / "local").mkdir()
    _write(tmp_path / "local" / "results.jsonl", a)  # a run folder is accepted for its results.jsonl
    pb = _write(tmp_path / "b.jsonl", b)
    assert main(["bench", "compare", str(tmp_path / "local"), str(pb)]) == 0
    assert "2 of 2 shared records have identical metrics" in capsys.readouterr().out

    b[1]["metrics"]["after"]["worst_group_acc"] = 0.4
    _write(pb, b)
    assert main(["bench", "compare", str(tmp_path / "local"), str(pb)]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 shared records have identical metrics" in out
    assert "1 differ; most often in after.worst_group_acc (1 records)" in out
    assert "r2: after.worst_group_acc: 0.2 vs 0.4" in out

    # user errors: one line naming the fix, exit 2
    assert main(["bench", "compare", str(tmp_path / "nope.jsonl"), str(pb)]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl does not exist" in err and "Traceback" not in err
    assert main(["bench", "compare", str(pb), str(pb), "--atol", "-1"]) == 2
    assert "--atol is -1.0; give a difference of 0 or more" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"run_id": "x"}\n')
    assert main(["bench", "compare", str(tmp_path / "bad.jsonl"), str(pb)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
