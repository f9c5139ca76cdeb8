"""Start-up: quick commands do not import torch (benchmarks/startup.py measures the seconds)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.long
def test_startup_benchmark_smoke_and_quick_commands_do_not_import_torch(tmp_path: Path) -> None:
    env = {**os.environ, "NEUROINSPECT_CACHE": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    for label in ("neuroinspect --help", "neuroinspect data list", "neuroinspect methods list"):
        line = next(ln for ln in lines if ln.startswith(label))
        assert line.split()[-1] == "no" or line.endswith("no (over)"), out.stdout  # torch not imported
    # the catalog the listings read is what the registries hold
    from neuroinspect.commands.methods import _collect_live

    files = sorted((tmp_path / "catalog").glob("*.json"))
    assert {f.name.split("-")[0] for f in files} == {
        "finders",
        "selectors",
        "visualizers",
        "editors",
        "datasets",
    }
    for f in files:  # (tests register extra entries in this process: the catalog is a subset)
        live = _collect_live(f.name.split("-")[0])
        cached = json.loads(f.read_text())
        entries = {e[0]: e for e in live.entries}
        assert [tuple(e) for e in cached["entries"]] == [entries[e[0]] for e in cached["entries"]]
        assert all(cached["details"][k] == live.details[k] for k in cached["details"])
        assert len(cached["entries"]) >= 4


def test_the_variant_names_in_edit_help_are_the_editor_variants() -> None:
    from neuroinspect.commands.edit import VARIANT_NAMES
    from neuroinspect.methods.editors.neuroinspect_editor import VARIANTS

    assert list(VARIANT_NAMES) == list(VARIANTS)


@pytest.mark.parametrize("argv", [["--help"], ["data", "list"]])
def test_the_parser_builds_only_the_command_asked_for(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    from neuroinspect.cli import main

    # in this process first: a listing's catalog is then on disk, and the child does not build it
    with contextlib.suppress(SystemExit):
        main(argv)
    capsys.readouterr()
    code = (
        "import sys; from neuroinspect.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('neuroinspect.commands.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT)
    loaded = out.stdout.strip().splitlines()[-1]
    assert "neuroinspect.commands.debug" not in loaded and "neuroinspect.commands.edit" not in loaded
