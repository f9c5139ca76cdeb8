"""``neuroinspect data list | check | make-fixture`` through ``neuroinspect.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuroinspect.cli import main
from neuroinspect.datasets import DATASETS

WB = "waterbird_complete95_forest2water2"


def test_data_list_shows_every_registered_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "kind", "splits", "groups", "summary"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert set(rows) == set(DATASETS.names())
    assert rows["flowers102"] == ["real", "train,val,test", "no"]
    assert rows["food101"] == ["real", "train,val,test", "no"]
    assert rows["waterbirds"] == ["real", "train,val,test", "yes"]
    assert rows["metashift"] == ["real", "train,val,test,shift", "yes"]
    assert main(["data", "list", "--kind", "real"]) == 0
    real = capsys.readouterr().out
    assert {line.split()[0] for line in real.splitlines()[1:]} == {
        n for n in DATASETS.names() if DATASETS.get(n).kind == "real"
    }


def test_make_fixture_then_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["data", "make-fixture", "waterbirds", "--root", str(tmp_path), "--param", "nested=true"]) == 0
    )
    out = capsys.readouterr().out
    assert "wrote a waterbirds fixture" in out and f"data check waterbirds --root {tmp_path}" in out
    assert (tmp_path / WB / WB / "metadata.csv").is_file()
    assert main(["data", "check", "waterbirds", "--root", str(tmp_path), "--verify-images"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK")
    assert f"at {(tmp_path / WB / WB).resolve()}" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert (
        rows["train"][:2] == ["12", "2"] and rows["val"][:2] == ["8", "2"] and rows["test"][:2] == ["8", "2"]
    )
    assert "landbird/water, 1" in " ".join(rows["train"])


def test_check_reports_each_problem_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "make-fixture", "food101", "--root", str(tmp_path), "--param", "num_classes=2"]) == 0
    capsys.readouterr()
    base = tmp_path / "food-101"
    first = json.loads((base / "meta" / "train.json").read_text())["apple_pie"][0]
    victim = base / "images" / f"{first}.jpg"
    victim.unlink()
    assert main(["data", "check", "food101", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"problem: missing image file: {victim.resolve()}" in err
    assert "food101: 1 problem(s)" in err and "make-fixture food101" in err and "Traceback" not in err
    # a parameter that needs a file the user does not have: the fix is named
    assert main(["data", "check", "food101", "--root", str(tmp_path), "--param", "val_source=file"]) == 2
    err = capsys.readouterr().err
    assert "valid.json" in err and "--param val_source=split" in err


def test_check_missing_root_and_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "flowers102", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert f"dataset root {tmp_path / 'nowhere'} does not exist" in err and "make-fixture flowers102" in err
    assert main(["data", "check", "flowers102", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"looked for {tmp_path}/flowers-102/setid.mat and {tmp_path}/setid.mat" in err
    assert main(["data", "check", "flower102", "--root", str(tmp_path)]) == 2
    assert "Did you mean 'flowers102'" in capsys.readouterr().err
    assert main(["data", "check", "flowers102", "--root", str(tmp_path), "--param", "oops"]) == 2
    assert "must look like key=value" in capsys.readouterr().err
    assert main(["data", "check", "flowers102", "--root", str(tmp_path), "--param", "bogus=1"]) == 2
    assert "flowers102 takes no parameters; remove bogus=1" in capsys.readouterr().err
    assert main(["data", "check", "food101", "--root", str(tmp_path), "--param", "val_sed=3"]) == 2
    assert "food101 has no parameter 'val_sed'; accepted: val_source='split'" in capsys.readouterr().err


def test_make_fixture_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flowers-102").mkdir()
    (tmp_path / "flowers-102" / "setid.mat").write_bytes(b"real data")
    assert main(["data", "make-fixture", "flowers102", "--root", str(tmp_path)]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert (tmp_path / "flowers-102" / "setid.mat").read_bytes() == b"real data"


def test_check_metashift_cce_lists_the_shift_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--param", "protocol=cce", "--param", "per_context=12"]
    assert main(["data", "make-fixture", "metashift", "--root", str(tmp_path), *args]) == 0
    capsys.readouterr()
    sizes = ["--param", "n_train=10", "--param", "n_val=4", "--param", "n_test=2"]
    assert (
        main(
            [
                "data",
                "check",
                "metashift",
                "--root",
                str(tmp_path),
                "--param",
                "protocol=cce",
                "--param",
                "scenario=cat(book)",
                *sizes,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["train"][0] == "50" and rows["val"][0] == "20" and rows["test"][0] == "10" and "shift" in rows
    assert "cat(book), 10" in " ".join(rows["train"])
    # the default (Cat-vs-Dog) protocol is absent from this tree: the message says where it looked
    assert main(["data", "check", "metashift", "--root", str(tmp_path)]) == 2
    assert "MetaDatasetCatDog" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["list", "check", "make-fixture"])
def test_every_subcommand_help_has_an_example(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", action, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and f"neuroinspect data {action}" in out
