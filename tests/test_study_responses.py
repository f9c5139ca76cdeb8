"""The long-format response table and the exclusion rules shared by the study app and the analysis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from neuroinspect.errors import UserError
from neuroinspect.studies.exclusions import ExclusionRules, apply_exclusions
from neuroinspect.studies.responses import REQUIRED, normalize_responses, read_responses


def _rows(pid: str, answers: list[str], correct: list[int], rt: float = 2.0, **extra: object) -> list[dict]:
    t0 = pd.Timestamp("2026-12-01T10:00:00Z")
    out = []
    for i, (a, c) in enumerate(zip(answers, correct, strict=True)):
        shown = t0 + pd.Timedelta(seconds=10 * i)
        out.append(
            {
                "participant": pid,
                "condition": "exemplars" if i % 2 else "none",
                "unit": f"neuron:{i % 3}",
                "trial_id": f"t{i}",
                "trial_kind": "main",
                "block": i // 4,
                "response": a,
                "correct": c,
                "confidence": 4,
                "rt_s": rt,
                "shown_at": shown.isoformat(),
                "answered_at": (shown + pd.Timedelta(seconds=rt)).isoformat(),
                **extra,
            }
        )
    return out


def test_normalize_fills_optional_columns_and_types() -> None:
    df = normalize_responses(pd.DataFrame(_rows("p1", ["A", "B", "A"], [1, 0, 1])))
    assert df["correct"].tolist() == [1.0, 0.0, 1.0]
    assert df["simulated"].isna().all() and "session_completed_at" in df.columns
    assert str(df["shown_at"].dtype).startswith("datetime64")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns=["rt_s"]), "lacks the column(s) rt_s"),
        (lambda d: d.assign(trial_kind="warmup"), "unknown trial_kind 'warmup'"),
        (lambda d: d.assign(correct=2), "'correct' must be 1, 0 or empty"),
        (lambda d: d.assign(rt_s="fast"), "column 'rt_s' must be numeric"),
        (lambda d: d.assign(shown_at="yesterday"), "column 'shown_at' must hold ISO 8601"),
    ],
)
def test_normalize_rejects_bad_tables(change, message: str) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_responses(change(pd.DataFrame(_rows("p1", ["A", "B", "A"], [1, 0, 1]))))


def test_read_responses_roundtrip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    pd.DataFrame(_rows("p1", ["A", "B"], [1, 0])).to_csv(path, index=False)
    df = read_responses(path)
    assert list(df.columns[: len(REQUIRED)]) == list(REQUIRED)
    assert df["participant"].tolist() == ["p1", "p1"]
    with pytest.raises(UserError, match="does not exist"):
        read_responses(tmp_path / "nope.csv")


def test_each_rule_catches_its_participant() -> None:
    good = _rows("good", ["A", "B", "A", "B"], [1, 1, 0, 1])
    constant = _rows("constant", ["A", "A", "A", "A"], [1, 0, 1, 0])
    fast = _rows("fast", ["A", "B", "A", "B"], [1, 0, 1, 1], rt=0.1)
    catch_fail = _rows("catcher", ["A", "B", "A", "B"], [1, 1, 1, 0])
    catch_fail[0]["trial_kind"] = "catch"
    catch_fail[0]["correct"] = 0
    df = normalize_responses(pd.DataFrame(good + constant + fast + catch_fail))
    res = apply_exclusions(df, ExclusionRules())
    assert res.reasons() == {"constant": ["constant"], "fast": ["too_fast"], "catcher": ["catch_accuracy"]}
    assert sorted(res.kept["participant"].unique()) == ["good"]
    # catch accuracy could only be checked for the participant who had catch trials
    assert any("catch_accuracy" in n and "3 participant" in n for n in res.notes)


def test_time_rules_and_completion() -> None:
    a = _rows("a", ["A", "B", "B"], [1, 0, 1], instructions_s=2.0)  # 22 s in total
    b = _rows("b", ["A", "B", "B"], [1, 0, 1], instructions_s=30.0)
    for r in b:
        r["session_started_at"] = "2026-12-01T10:00:00Z"
        r["session_completed_at"] = "2026-12-01T10:05:00Z"
    df = normalize_responses(pd.DataFrame(a + b))
    rules = ExclusionRules.from_mapping(
        {"min_total_time_s": 60, "max_total_time_s": 600, "min_instruction_time_s": 15}
    )
    res = apply_exclusions(df, rules)
    assert res.reasons() == {"a": ["total_time", "instruction_time", "incomplete"]}
    assert "22 s in total" in res.excluded["detail"].iloc[0]
    off = ExclusionRules.from_mapping({"require_complete": False, "min_catch_accuracy": None})
    assert apply_exclusions(df, off).excluded.empty


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_catch_acuracy": 0.5}, "Did you mean 'min_catch_accuracy'"),
        ({"min_catch_accuracy": 1.5}, "fraction in"),
        ({"too_fast_s": "fast"}, "non-negative number"),
        ({"exclude_constant": 1}, "true or false"),
        ({"min_total_time_s": 100, "max_total_time_s": 10}, "swap them"),
    ],
)
def test_rules_validation(values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        ExclusionRules.from_mapping(values)


def test_instruction_time_has_an_upper_bound_too() -> None:
    quick = _rows("quick", ["A", "B", "B"], [1, 0, 1], instructions_s=20.0)
    idle = _rows("idle", ["A", "B", "B"], [1, 0, 1], instructions_s=1900.0)
    df = normalize_responses(pd.DataFrame(quick + idle))
    rules = ExclusionRules.from_mapping({"min_instruction_time_s": 15, "max_instruction_time_s": 1200})
    res = apply_exclusions(df, rules)
    assert res.reasons() == {"idle": ["instruction_time"]}
    assert "1900.0 s on the instructions (> 1200 s)" in res.excluded["detail"].iloc[0]
    assert "over 1200 s on the instructions" in rules.describe()
    with pytest.raises(UserError, match="min_instruction_time_s .* is above max_instruction_time_s"):
        ExclusionRules.from_mapping({"min_instruction_time_s": 60, "max_instruction_time_s": 30})
