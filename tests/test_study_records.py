"""``study`` result records: strict validation of their metrics, and the published human-study rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from neuroinspect.errors import RecordError
from neuroinspect.harness.records import make_record, validate_record
from neuroinspect.leaderboards.reported import load_reported

PROV = {
    "versions": {"torch": None, "timm": None, "open_clip_torch": None, "captum": None, "torch-lucent": None},
    "git_commit": None,
    "device": "cpu",
    "started_at": "2026-12-01T00:00:00+00:00",
    "wall_seconds": 1.0,
}


def measured(**metrics: Any) -> dict[str, Any]:
    base = {
        "task_type": "2afc",
        "accuracy": 0.8,
        "ci_low": 0.77,
        "ci_high": 0.83,
        "ci_method": "wilson",
        "participant_mean": 0.8,
        "participant_2sem": 0.04,
        "boot_low": 0.76,
        "boot_high": 0.84,
        "n_participants": 50,
        "n_trials": 600,
        "n_excluded": 3,
        "chance": 0.5,
        "p_value": 1e-20,
        "participants": "simulated",
    }
    base.update(metrics)
    return make_record(
        "study",
        "spurious-shapes",
        "resnet18@64px",
        {"condition": "natural", "visualizer": "exemplars"},
        0,
        base,
        {"task": "2afc"},
        PROV,
    )


def rating(**metrics: Any) -> dict[str, Any]:
    base = {
        "task_type": "rating",
        "accuracy": None,
        "ci_low": None,
        "ci_high": None,
        "ci_method": None,
        "participant_mean": None,
        "participant_2sem": None,
        "boot_low": None,
        "boot_high": None,
        "n_participants": 20,
        "n_trials": 200,
        "n_excluded": 0,
        "chance": None,
        "p_value": None,
        "participants": "human",
        "mean_rating": 4.2,
        "rating_ci_low": 3.9,
        "rating_ci_high": 4.5,
        "rating_2sem": 0.3,
    }
    base.update(metrics)
    return make_record(
        "study", "spurious-shapes", "none", {"condition": "none", "visualizer": "none"}, 0, base, {}, PROV
    )


def test_valid_study_records() -> None:
    assert measured()["metrics"]["accuracy"] == 0.8
    assert rating()["metrics"]["mean_rating"] == 4.2


def _mutated(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    rec = copy.deepcopy(record)
    *parents, last = path.split(".")
    target = rec
    for p in parents:
        target = target[p]
    if value is _DROP:
        del target[last]
    else:
        target[last] = value
    return rec


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("class_idx", 3, "'class_idx' must be null for a study record"),
        ("method", {"visualizer": "exemplars"}, "'method.condition' is missing"),
        ("method", {"condition": "natural"}, "'method.visualizer' is missing"),
        ("metrics.ci_method", _DROP, "'metrics.ci_method' is missing"),
        ("metrics.participants", _DROP, "'metrics.participants' is missing"),
        ("metrics.task_type", "quiz", "'metrics.task_type' is 'quiz'"),
        ("metrics.participants", "robots", "'metrics.participants' is 'robots'"),
        ("metrics.accuracy", 1.2, "'metrics.accuracy' must be a number in \\[0, 1\\]"),
        ("metrics.accuracy", None, "'metrics.accuracy' is null"),
        ("metrics.chance", 1.0, "'metrics.chance' must be strictly between 0 and 1"),
        ("metrics.chance", None, "'metrics.chance' is null"),
        ("metrics.ci_method", "eyeballed", "'metrics.ci_method' is 'eyeballed'"),
        ("metrics.ci_low", 0.85, "'metrics.ci_low/ci_high' has its lower end 0.85 above"),
        ("metrics.ci_high", 0.79, "does not contain its estimate 0.8"),
        ("metrics.boot_low", 0.81, "'metrics.boot_low/boot_high' .* does not contain its estimate"),
        ("metrics.boot_high", None, "'metrics.boot_high' is null"),
        ("metrics.participant_2sem", -0.1, "'metrics.participant_2sem' must be at least 0"),
        ("metrics.n_participants", 0, "'metrics.n_participants' must be an integer >= 1"),
        ("metrics.n_trials", 2.5, "'metrics.n_trials' must be an integer >= 1"),
        ("metrics.n_excluded", -1, "'metrics.n_excluded' must be an integer >= 0"),
        ("metrics.p_value", None, "'metrics.p_value' is null"),
        ("metrics.p_value", 2.0, "'metrics.p_value' must be a number in \\[0, 1\\]"),
    ],
)
def test_measured_study_record_rejections(path: str, value: Any, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        validate_record(_mutated(measured(), path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("metrics.accuracy", 0.7, "'metrics.accuracy' must be null for a rating study"),
        ("metrics.chance", 0.5, "'metrics.chance' must be null for a rating study"),
        ("metrics.mean_rating", _DROP, "'metrics.mean_rating' is missing"),
        ("metrics.rating_2sem", _DROP, "'metrics.rating_2sem' is missing"),
        ("metrics.mean_rating", "high", "'metrics.mean_rating' must be a number"),
        ("metrics.rating_ci_low", 4.3, "does not contain its estimate 4.2"),
        ("metrics.rating_2sem", -0.2, "'metrics.rating_2sem' must be at least 0"),
    ],
)
def test_rating_study_record_rejections(path: str, value: Any, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        validate_record(_mutated(rating(), path, value))


def test_reported_study_records_may_leave_out_what_papers_do_not_give() -> None:
    rec = {
        **measured(),
        "source": "reported",
        "citation": "a paper",
        "metrics": {"task_type": "2afc", "accuracy": 0.92, "chance": 0.5, "participants": "human"},
    }
    assert validate_record(rec)["metrics"]["accuracy"] == 0.92
    for key in ("accuracy", "chance", "participants"):
        bad = copy.deepcopy(rec)
        del bad["metrics"][key]
        with pytest.raises(RecordError, match=f"'metrics.{key}' is missing"):
            validate_record(bad)


def test_published_human_study_rows() -> None:
    """Borowski et al. ICLR'21 (natural 92 ± 2%, synthetic 82 ± 4%) and Zimmermann et al.
    NeurIPS'21 (67 ± 4% vs 60 ± 3%) ship as reported rows with citations."""
    rows = {r.record["run_id"]: r.record for r in load_reported() if r.record["task"] == "study"}
    expected = {
        "reported-borowski21-natural": ("natural", 0.92, 0.02, "ICLR 2021"),
        "reported-borowski21-synthetic": ("synthetic", 0.82, 0.04, "ICLR 2021"),
        "reported-zimmermann21-synthetic": ("synthetic", 0.67, 0.04, "NeurIPS 2021"),
        "reported-zimmermann21-none": ("none", 0.60, 0.03, "NeurIPS 2021"),
    }
    assert set(expected) <= set(rows)
    for run_id, (cond, acc, sem2, venue) in expected.items():
        rec = rows[run_id]
        m = rec["metrics"]
        assert rec["method"]["condition"] == cond and venue in rec["citation"]
        assert (m["accuracy"], m["participant_mean"], m["participant_2sem"]) == (acc, acc, sem2)
        assert (m["ci_low"], m["ci_high"], m["ci_method"]) == (
            round(acc - sem2, 4),
            round(acc + sem2, 4),
            "2sem",
        )
        assert m["chance"] == 0.5 and m["participants"] == "human" and m["task_type"] == "2afc"
