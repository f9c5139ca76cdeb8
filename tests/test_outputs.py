"""Output locations (neuroinspect.outputs) and the rule that a run's records are never appended twice.

Every command that writes checks its outputs before any work: an unwritable location, a file where a
folder is wanted (or the reverse) and a folder a previous run used end in one line naming the fix,
exit status 2, with nothing created; ``--overwrite`` replaces the previous run (its records too).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuroinspect.cli import main
from neuroinspect.errors import RecordError, UserError
from neuroinspect.harness.records import append_records, read_records, run_key
from neuroinspect.outputs import Outputs

#: A location nobody can write into, root included (the kernel refuses to create files in /proc).
UNWRITABLE = "/proc/neuroinspect-test/out"


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str, alone: bool = True) -> str:
    """The error on stderr: one line with every needle, no traceback (``alone``: nothing else printed)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and "Traceback" not in "\n".join(lines) and (len(lines) == 1 or not alone), lines
    for needle in needles:
        assert needle in lines[-1], lines
    return lines[-1]


# -- the helper ---------------------------------------------------------------------------------------
def test_folder_checks_refuse_files_unwritable_places_and_used_folders(tmp_path: Path) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        Outputs().folder(a_file)
    with pytest.raises(UserError, match=r"because .*f.txt is a file"):
        Outputs().folder(a_file / "sub")
    with pytest.raises(UserError, match="cannot create the folder under /proc"):
        Outputs().folder(UNWRITABLE)
    new = tmp_path / "a" / "b"
    assert Outputs().folder(new) == new and not (tmp_path / "a").exists()  # checked, not created
    used = tmp_path / "used"
    used.mkdir()
    (used / "best.pt").write_text("x")
    with pytest.raises(
        UserError, match=r"already holds a previous run \(1 entry: best.pt\). Pass --overwrite"
    ):
        Outputs().folder(used)
    with pytest.raises(UserError, match="--resume to continue it"):
        Outputs(resume=False).folder(used)
    assert Outputs(overwrite=True).folder(used) == used
    assert Outputs(resume=True).folder(used) == used
    assert Outputs().folder(used, reuse=True) == used
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["best.pt", "f.txt", "used"]  # no probe left


def test_file_checks(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"is a folder; give a file name \(e.g. .*metrics.json\)"):
        Outputs().file(tmp_path, "--json", example="metrics.json")
    existing = tmp_path / "m.json"
    existing.write_text("{}")
    with pytest.raises(UserError, match="already exists. Pass --overwrite"):
        Outputs().file(existing, "--json")
    assert Outputs(overwrite=True).file(existing, "--json") == existing
    assert Outputs().file(existing, "--results", append=True) == existing
    with pytest.raises(UserError, match="cannot create the file under /proc"):
        Outputs().file(UNWRITABLE + "/r.jsonl", "--results")
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"not": "a record"}\n')
    with pytest.raises(RecordError, match=r"r.jsonl:1\).*required field"):
        Outputs().records(bad)


def test_guard_removes_only_the_empty_folders_it_would_have_created(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    outputs = Outputs(overwrite=True)
    outputs.folder(kept)
    out = outputs.folder(tmp_path / "new" / "run")
    with pytest.raises(KeyboardInterrupt), outputs.guard():
        (out / "cache" / "empty").mkdir(parents=True)  # the run made folders, then was interrupted
        raise KeyboardInterrupt
    assert not (tmp_path / "new").exists() and kept.is_dir()
    outputs = Outputs()
    out = outputs.folder(tmp_path / "new2")
    with pytest.raises(UserError), outputs.guard():
        out.mkdir()
        (out / "model.pt").write_text("partial results are kept")
        raise UserError("late failure")
    assert (out / "model.pt").is_file()


def _record(seed: int = 0, **config: object) -> dict:
    from neuroinspect.harness.records import make_record
    from neuroinspect.runtime import Provenance

    return make_record(
        "evaluation",
        "spurious-shapes",
        "resnet18@32px",
        {"model": "resnet18"},
        seed,
        {
            "test_acc": 0.5,
            "class_acc": None,
            "worst_class_acc": 0.4,
            "worst_group_acc": None,
            "mean_acc_train_weighted": None,
        },
        {"n_boot": 10, **config},
        Provenance().as_dict(),
    )


def test_a_run_already_recorded_is_refused_or_replaced_never_duplicated(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    first = _record(checkpoint="/a/best.pt")
    append_records(path, [first])
    # the same run from a checkpoint at another path is the same run
    again = _record(checkpoint="/elsewhere/best.pt")
    assert run_key(again) == run_key(first)
    with pytest.raises(
        RecordError,
        match=r"results.jsonl:1 already holds this run \(evaluation model=resnet18 on "
        r"spurious-shapes / resnet18@32px, seed 0\).*Pass --overwrite",
    ):
        append_records(path, [again])
    append_records(path, [_record(seed=1), _record(n_boot=20)])  # another seed, other settings: new runs
    append_records(path, [again], replace=True)
    records = read_records(path)
    assert len(records) == 3 and records[-1]["run_id"] == again["run_id"]
    assert first["run_id"] not in {r["run_id"] for r in records}


# -- every command that writes: an unwritable output fails before any work --------------------------
TINY_CONFIG = """[experiment]
name = "tiny"
dataset = "spurious-shapes"
dataset_params = {{ n_train = {n_train}, n_val = 8, n_test = 8 }}
image_size = 32
train = {{ epochs = 1 }}
editors = ["neuroinspect"]
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG.format(n_train=24))
    return path


@pytest.fixture
def late_failing_config(tmp_path: Path) -> Path:
    """A config that passes every check before the work and fails in it (a bad dataset parameter)."""
    path = tmp_path / "late.toml"
    path.write_text(TINY_CONFIG.format(n_train='"many"'))
    return path


def _commands(ckpt: Path, config: Path, tmp: Path) -> dict[str, list[str]]:
    c = str(ckpt)
    records = tmp / "records.jsonl"
    append_records(records, [_record()])
    shapes = ["--dataset", "spurious-shapes"]
    return {
        "train": ["train", *shapes, "--epochs", "1", "--out", UNWRITABLE],
        "evaluate --out": ["evaluate", "--ckpt", c, "--out", UNWRITABLE + "/r.jsonl"],
        "evaluate --json": ["evaluate", "--ckpt", c, "--json", UNWRITABLE + "/m.json"],
        "debug": ["debug", *shapes, "--ckpt", c, "--class-idx", "1", "--out", UNWRITABLE],
        "visualize": [
            "visualize",
            "--method",
            "exemplars",
            "--ckpt",
            c,
            "--neurons",
            "1",
            "--out",
            UNWRITABLE,
        ],
        "edit": ["edit", *shapes, "--ckpt", c, "--class-idx", "1", "--neurons", "1", "--out", UNWRITABLE],
        "edit --results": [
            "edit",
            *shapes,
            "--ckpt",
            c,
            "--class-idx",
            "1",
            "--neurons",
            "1",
            "--out",
            str(tmp / "e"),
            "--results",
            UNWRITABLE + "/r.jsonl",
        ],
        "demo": ["demo", "--config", str(config), "--out", UNWRITABLE],
        "bench run": ["bench", "run", str(config), "--out", UNWRITABLE],
        "leaderboard build": ["leaderboard", "build", str(records), "--out", UNWRITABLE],
        "data make-fixture": ["data", "make-fixture", "waterbirds", "--root", UNWRITABLE],
        "clip train": ["clip", "train", "--dataset", "spurious-shapes", "--out", UNWRITABLE + "/clip.pt"],
    }


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "evaluate --out",
        "evaluate --json",
        "debug",
        "visualize",
        "edit",
        "edit --results",
        "demo",
        "bench run",
        "leaderboard build",
        "data make-fixture",
        "clip train",
    ],
)
def test_every_command_refuses_an_unwritable_output_before_any_work(
    command: str,
    tiny_shapes_ckpt: Path,
    tiny_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _commands(tiny_shapes_ckpt, tiny_config, tmp_path)[command]
    capsys.readouterr()
    assert main([*argv, "--no-progress"] if command.split()[0] in ("train", "demo", "edit") else argv) == 2
    one_line_error(capsys, "/proc", "cannot create", "Choose a writable location")
    assert not (tmp_path / "e").exists()


# -- a used output folder: refused, and --overwrite replaces the previous run ------------------------
def test_train_refuses_a_used_folder_and_overwrite_or_resume_get_past_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_text("a previous run")
    base = ["train", "--dataset", "spurious-shapes", "--epochs", "1", "--out", str(out), "--no-progress"]
    assert main(base) == 2
    one_line_error(capsys, "already holds a previous run", "--overwrite", "--resume")
    assert main([*base, "--resume"]) == 2
    one_line_error(capsys, "nothing to resume", "no last.pt")
    # --overwrite gets past the output check (this run then stops at its bad dataset parameter)
    assert main([*base, "--overwrite", "--param", "n_train=many"]) == 2
    one_line_error(capsys, "n_train='many'")
    assert (out / "best.pt").read_text() == "a previous run"


def test_visualize_twice_into_one_folder_is_refused_and_overwrite_replaces_the_records(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vis"
    argv = [
        "visualize",
        "--method",
        "exemplars",
        "--ckpt",
        str(tiny_shapes_ckpt),
        "--neurons",
        "3",
        "--dataset",
        "spurious-shapes",
        "--no-faithfulness",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    first = read_records(out / "results.jsonl")
    assert main(argv) == 2
    one_line_error(capsys, f"--out {out / 'exemplars'} already holds a previous run", "--overwrite")
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    again = read_records(out / "results.jsonl")
    assert (
        len(again) == len(first) == 1 and again[0]["run_id"] != first[0]["run_id"]
    )  # replaced, not appended
    assert again[0]["model"] == "resnet18@32px"  # the same name in every command's records (bench, edit)


def test_edit_refuses_a_used_folder_and_a_run_already_in_a_shared_results_file(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "all.jsonl"
    base = [
        "edit",
        "--dataset",
        "spurious-shapes",
        "--ckpt",
        str(tiny_shapes_ckpt),
        "--class-idx",
        "1",
        "--editor",
        "fc",
        "--epochs",
        "1",
        "--n-boot",
        "0",
        "--results",
        str(results),
        "--no-progress",
    ]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    one_line_error(capsys, "already holds a previous run", "--overwrite")
    # the same run into a new folder: refused before its checkpoint is written, the record not doubled
    assert main([*base, "--out", str(tmp_path / "b")]) == 2
    one_line_error(
        capsys, "already holds this run", "editor=fc", "--overwrite", alone=False
    )  # after the work
    assert not (tmp_path / "b").exists() and len(read_records(results)) == 1
    assert main([*base, "--out", str(tmp_path / "a"), "--overwrite"]) == 0
    capsys.readouterr()
    (rec,) = read_records(results)
    assert json.loads((tmp_path / "a" / "edit.json").read_text())["record_run_id"] == rec["run_id"]
    assert rec["model"] == "resnet18@32px"


def test_evaluate_json_and_records_are_not_overwritten_without_overwrite(
    tiny_shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics, results = tmp_path / "m.json", tmp_path / "r.jsonl"
    metrics.write_text("{}")
    base = ["evaluate", "--ckpt", str(tiny_shapes_ckpt), "--n-boot", "0", "--no-progress"]
    assert main([*base, "--json", str(metrics)]) == 2
    one_line_error(capsys, "m.json already exists", "--overwrite")
    assert main([*base, "--json", str(metrics), "--out", str(results), "--overwrite"]) == 0
    capsys.readouterr()
    assert "test_acc" in json.loads(metrics.read_text())
    assert main([*base, "--out", str(results)]) == 2
    one_line_error(capsys, "already holds this run")
    assert main([*base, "--out", str(results), "--overwrite"]) == 0
    (rec,) = read_records(results)
    assert rec["model"] == "resnet18@32px"


def test_debug_demo_bench_clip_refuse_used_outputs_and_overwrite_gets_past_the_check(
    tiny_shapes_ckpt: Path, late_failing_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "report.md").write_text("a previous run")
    clip = tmp_path / "clip.pt"
    clip.write_text("a previous CLIP")
    cases = {
        "debug": (
            [
                "debug",
                "--dataset",
                "spurious-shapes",
                "--ckpt",
                str(tiny_shapes_ckpt),
                "--class-idx",
                "1",
                "--finder",
                "nope",
                "--out",
                str(used),
            ],
            "unknown finder",
        ),
        "demo": (["demo", "--config", str(late_failing_config), "--out", str(used)], "n_train='many'"),
        "bench": (["bench", "run", str(late_failing_config), "--out", str(used)], "n_train='many'"),
        "clip": (
            ["clip", "train", "--dataset", "spurious-shapes", "--param", "n_train=many", "--out", str(clip)],
            "n_train='many'",
        ),
    }
    for name, (argv, later_error) in cases.items():
        if name != "debug":  # debug checks its finder name before its output folder
            assert main(argv) == 2, name
            one_line_error(capsys, "already", "--overwrite")
        assert main([*argv, "--overwrite"]) == 2, name
        one_line_error(capsys, later_error, alone=False)  # past the output check, stopped later
    assert (used / "report.md").read_text() == "a previous run" and clip.read_text() == "a previous CLIP"


def test_an_early_failure_leaves_no_empty_folder(
    late_failing_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep" / "demo"
    assert main(["demo", "--config", str(late_failing_config), "--out", str(out), "--no-progress"]) == 2
    one_line_error(capsys, "n_train='many'", alone=False)
    assert main(["demo", "--out", str(out), "--device", "cuda:7"]) == 2
    capsys.readouterr()
    assert not (tmp_path / "deep").exists()


def test_root_naming_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "metadata.csv"
    a_file.write_text("x")
    for name in ("waterbirds", "flowers102"):
        assert main(["data", "check", name, "--root", str(a_file)]) == 2
        err = capsys.readouterr().err
        assert f"--root {a_file} is a file; pass the folder" in err and "does not exist" not in err
