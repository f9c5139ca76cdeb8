"""``neuroinspect study analyze``: files written, numbers in them, and the errors a user can cause.

The ``study`` command group registers ``analyze`` through ``add_arguments``/``run``; these tests
build the parser the same way."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from neuroinspect.commands import study_analyze
from neuroinspect.errors import UserError
from neuroinspect.harness.records import read_records
from neuroinspect.studies.analysis.simulate import model_from_accuracies, simulate_study
from neuroinspect.studies.exclusions import ExclusionRules, apply_exclusions
from neuroinspect.studies.responses import read_responses

FAST = ["--boot", "200", "--power-sims", "40", "--no-progress"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="neuroinspect study analyze")
    study_analyze.add_arguments(parser)
    return study_analyze.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def study_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 3-condition 2AFC study: 24 attentive participants and 2 inattentive ones."""
    model = model_from_accuracies({"none": 0.62, "exemplars": 0.85, "clip_illusion": 0.7}, 0.4, 0.3)
    path = tmp_path_factory.mktemp("study") / "responses.csv"
    simulate_study(model, 24, 16, 10, seed=11, n_inattentive=2).to_csv(path, index=False)
    return path


def test_analyze_a_response_csv(study_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "analysis"
    assert run(["--responses", str(study_csv), "--out", str(out), "--dataset", "spurious-shapes", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "exemplars beat none" in printed and f"wrote {out / 'report.md'}" in printed

    # records: one per condition, validated on read, numbers equal to a direct computation
    records = read_records(out / "results.jsonl")
    assert [r["method"]["condition"] for r in records] == ["none", "clip_illusion", "exemplars"]
    df = read_responses(study_csv)
    kept = apply_exclusions(df, ExclusionRules()).kept
    main = kept[kept["trial_kind"] == "main"]
    for rec in records:
        m = rec["metrics"]
        trials = main[main["condition"] == rec["method"]["condition"]]
        assert m["accuracy"] == pytest.approx(trials["correct"].mean())
        assert m["n_trials"] == len(trials) and m["n_participants"] == trials["participant"].nunique()
        assert m["participants"] == "simulated" and m["chance"] == 0.5 and m["ci_method"] == "wilson"
        assert m["ci_low"] < m["accuracy"] < m["ci_high"] and m["n_excluded"] >= 2
        assert rec["dataset"] == "spurious-shapes" and rec["model"] == "none" and rec["class_idx"] is None
        assert rec["config"]["exclusion_rules_source"] == "defaults"
        assert "sim024" not in json.dumps(rec)  # no participant ids in records
    assert records[0]["method"]["visualizer"] == "none" and "odds_ratio_vs_reference" in records[2]["metrics"]

    # report: simulated warning, exclusions listed with their rule, the tests named, figures linked
    report = (out / "report.md").read_text()
    assert "SIMULATED participants" in report and "by the default rules" in report
    assert "| sim024 | too_fast |" in report and "| sim025 | constant |" in report
    assert "Holm" in report and "Mixed-effects logistic regression" in report
    for name in ("accuracy", "calibration", "rt", "power"):
        assert f"(figures/{name}.png)" in report
        with Image.open(out / "figures" / f"{name}.png") as img:
            assert img.format == "PNG" and img.width > 600 and img.height > 400
    data = json.loads((out / "analysis.json").read_text())
    assert data["glmm"]["reference"] == "none" and len(data["glmm"]["contrasts"]) == 3
    assert data["power"][0]["n_required"] and data["provenance"]["versions"]["gpboost"]


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "r.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_bad_input_gives_one_clear_error(study_csv: Path, tmp_path: Path) -> None:
    df = pd.read_csv(study_csv)
    cases = [
        (["--responses", str(_write(tmp_path, df.drop(columns=["rt_s"])))], "lacks the column\\(s\\) rt_s"),
        (["--responses", str(study_csv), "--task", "quiz"], "unknown --task 'quiz'"),
        (["--responses", str(study_csv), "--task", "labelling"], "'task' column says '2afc'"),
        (["--responses", str(tmp_path / "missing.csv")], "does not exist"),
        ([], "name a study spec"),
        (["--responses", str(study_csv), "--participants", "robots"], "human or simulated"),
        (["--responses", str(study_csv), "--participants", "human"], "contradicts"),
        (
            ["--responses", str(_write(tmp_path, df[df["condition"] == "none"], "one.csv"))],
            "one condition \\(none\\); comparisons need two. Pass --no-compare",
        ),
        (
            [
                "--responses",
                str(_write(tmp_path, df[df["participant"].isin(["sim024", "sim025"])], "bad.csv")),
            ],
            "every participant was excluded",
        ),
    ]
    for i, (argv, message) in enumerate(cases):
        with pytest.raises(UserError, match=message) as err:
            run([*argv, "--out", str(tmp_path / f"out{i}"), *FAST])
        assert err.value.exit_code == 2


def test_output_folder_is_checked_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    # the input does not even exist: the folder is refused first
    with pytest.raises(UserError, match="taken exists and is not empty"):
        run(["--responses", str(tmp_path / "nowhere.csv"), "--out", str(out)])
    assert (out / "keep.txt").read_text() == "mine"


def test_one_condition_against_chance_only(study_csv: Path, tmp_path: Path) -> None:
    df = pd.read_csv(study_csv)
    one = _write(tmp_path, df[df["condition"] == "exemplars"], "one.csv")
    assert run(["--responses", str(one), "--out", str(tmp_path / "o"), "--no-compare", *FAST]) == 0
    [rec] = read_records(tmp_path / "o" / "results.jsonl")
    assert rec["method"] == {"condition": "exemplars", "visualizer": "exemplars"}
    assert rec["metrics"]["p_value"] < 0.05  # 85% on 2AFC is far above chance
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Comparisons between conditions" not in report and "Power for a follow-up" not in report
    # the folder is now taken: refused without --overwrite; with it, the records are replaced
    with pytest.raises(UserError, match="exists and is not empty.*--overwrite"):
        run(["--responses", str(one), "--out", str(tmp_path / "o"), "--no-compare", *FAST])
    assert (
        run(["--responses", str(one), "--out", str(tmp_path / "o"), "--no-compare", "--overwrite", *FAST])
        == 0
    )
    assert len(read_records(tmp_path / "o" / "results.jsonl")) == 1


def test_analyze_through_a_spec(study_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SPEC path: design, rules, dataset and model from the spec, responses from its database
    (``neuroinspect.studies.spec.load_spec`` and ``neuroinspect.studies.export.responses_frame``,
    the study app's interface, stood in for here)."""
    spec_path = tmp_path / "study.toml"
    spec_path.write_text('title = "shapes study"\n')
    rules = ExclusionRules(min_catch_accuracy=None, too_fast_s=None, exclude_constant=False)
    spec = types.SimpleNamespace(
        title="shapes study",
        task="2afc",
        n_options=2,
        exclusions=rules,
        conditions=["exemplars", "clip_illusion", "none"],
        dataset="spurious-shapes",
        model="resnet18@64px",
        seed=5,
        database_url="sqlite:///unused.db",
        path=spec_path,
        out=tmp_path / "study-out",
    )
    calls: list[object] = []
    spec_mod = types.ModuleType("neuroinspect.studies.spec")
    spec_mod.load_spec = lambda path, **kw: calls.append(path) or spec  # type: ignore[attr-defined]
    export_mod = types.ModuleType("neuroinspect.studies.export")
    export_mod.responses_frame = lambda s: read_responses(study_csv)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "neuroinspect.studies.spec", spec_mod)
    monkeypatch.setitem(sys.modules, "neuroinspect.studies.export", export_mod)

    with pytest.raises(UserError, match="--task comes from the spec"):
        run([str(spec_path), "--task", "2afc"])
    assert run([str(spec_path), "--no-glmm", *FAST]) == 0
    assert calls and set(calls) == {spec_path}
    out = tmp_path / "study-out" / "analysis"  # the default: in the study's out folder
    records = read_records(out / "results.jsonl")
    assert [r["method"]["condition"] for r in records] == ["none", "exemplars", "clip_illusion"]
    for rec in records:
        assert (rec["dataset"], rec["model"], rec["seed"]) == ("spurious-shapes", "resnet18@64px", 5)
        assert rec["config"]["spec_path"] == str(spec_path) and rec["config"]["study_title"] == "shapes study"
        assert rec["metrics"]["n_participants"] == 26  # these rules exclude nobody
    report = (out / "report.md").read_text()
    assert "# Study analysis: shapes study" in report and "by the rules of the spec" in report


def test_analyze_a_spec_on_the_database_that_simulate_filled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No stand-ins: a (synthetic-image) study, its SQLite database filled by `study simulate`, then
    `study analyze SPEC` reads it under the spec's exclusion rules."""
    from _study import fake_study

    from neuroinspect.cli import main
    from neuroinspect.studies.exclusions import apply_exclusions
    from neuroinspect.studies.export import responses_frame
    from neuroinspect.studies.storage import close_stores

    spec, _ = fake_study(tmp_path, "2afc", extra='[simulation]\nembedding = "pixels"')
    try:
        argv = ["study", "simulate", str(spec.path), "--participants", "10", "--no-progress"]
        assert main([*argv, "--observer", "model=6,random=2,careless=2", "--concurrency", "2"]) == 0
        assert main(["study", "analyze", str(spec.path), "--no-glmm", *FAST]) == 0
        df = responses_frame(spec)
    finally:
        close_stores()
    assert "10 participants" in capsys.readouterr().err
    kept = apply_exclusions(df, spec.exclusions)
    careless = set(df[df["rt_s"] < 0.3]["participant"])
    assert len(careless) == 2 and careless <= set(kept.reasons())  # the spec's rules caught them
    by_spec = read_records(spec.out / "analysis" / "results.jsonl")
    assert [r["method"]["condition"] for r in by_spec] == ["none", "exemplars", "lucent"]
    main_kept = kept.kept[kept.kept["trial_kind"] == "main"]
    for rec in by_spec:
        rows = main_kept[main_kept["condition"] == rec["method"]["condition"]]
        assert rec["metrics"]["n_participants"] == rows["participant"].nunique()
        assert rec["metrics"]["n_trials"] == len(rows)
        assert rec["metrics"]["accuracy"] == pytest.approx(rows["correct"].mean())
        assert rec["config"]["spec_path"] == str(spec.path)
