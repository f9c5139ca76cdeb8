"""The command-line contract of DESIGN.md: subcommands, help, exit codes, and the import-time fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neuroinspect.cli import COMMANDS, build_parser, main

DESIGN_COMMANDS = {
    "demo",
    "data",
    "train",
    "evaluate",
    "debug",
    "visualize",
    "edit",
    "bench",
    "leaderboard",
    "study",
    "methods",
    "clip",
}


def test_help_lists_every_subcommand_of_the_design(capsys: pytest.CaptureFixture[str]) -> None:
    """Every command of the design that exists is listed; one whose module is not there yet is not
    advertised (it answers with a clear error, see below)."""
    from importlib.util import find_spec

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in DESIGN_COMMANDS:
        exists = find_spec(f"neuroinspect.commands.{name}") is not None
        assert (f"    {name}" in out) == exists, name
    assert "not available" not in out
    assert {n for n, _ in COMMANDS} == DESIGN_COMMANDS


@pytest.mark.parametrize("name", sorted(DESIGN_COMMANDS))
def test_every_implemented_subcommand_has_help_with_an_example(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([name, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "Example" in text or "example" in text, f"`neuroinspect {name} --help` shows no example"
    assert "not available" not in text


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: neuroinspect" in capsys.readouterr().out


def test_unavailable_command_is_a_clear_user_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import neuroinspect.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, ("nosuchcommand", "a command without a module")])
    assert main(["nosuchcommand"]) == 2
    err = capsys.readouterr().err
    assert "not available in this version" in err and "Traceback" not in err


def test_user_error_from_a_command_exits_2_without_traceback(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--ckpt", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


@pytest.mark.long
def test_console_script_imports_the_whole_stack_on_cpu_torch() -> None:
    """`import neuroinspect` makes torchvision, timm, open_clip and lucent importable (platform notes)."""
    code = (
        "import sys, neuroinspect; assert 'torch' not in sys.modules, 'import neuroinspect imported torch'; "
        "import torchvision, timm, open_clip, captum.attr; import lucent.optvis.render; "
        "from torchvision import transforms; import torch; "
        "print(transforms.Resize(8)(torch.zeros(3, 16, 16)).shape)"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch.Size([3, 8, 8])" in out.stdout


def test_torchvision_fix_is_idempotent_and_keeps_the_ops_defined() -> None:
    import torch

    from neuroinspect._compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    ensure_torchvision_ops()
    assert hasattr(torch.ops.torchvision, "nms")


def _all_parsers(parser, path=()):  # noqa: ANN001, ANN202
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_help_texts_show_each_default_once_and_one_examples_heading() -> None:
    import re

    for path, p in _all_parsers(build_parser()):
        if not path:
            continue
        text = p.format_help()
        where = "neuroinspect " + " ".join(path)
        assert "(default: None)" not in text and "(default: [])" not in text, where
        for block in re.split(r"\n  (?=-)", text):  # one option's help
            assert block.count("(default") <= 1, (where, block)
        assert "Example:" not in text and "examples:" not in text, where
        if len(path) == 2 or path[0] in ("demo", "train", "evaluate", "debug", "visualize", "edit"):
            assert "Examples:" in text, where
            assert p.description, f"{where} has no description"
