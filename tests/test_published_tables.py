"""The published tables in leaderboards/ are exactly what the documented command builds from the
committed records: rebuilding them must give the same bytes."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest

from neuroinspect.cli import main

ROOT = Path(__file__).resolve().parents[1]
LEADERBOARDS = ROOT / "leaderboards"


def documented_command() -> list[str]:
    """The build command of leaderboards/README.md (the one line that builds ``--out leaderboards/``)."""
    text = (LEADERBOARDS / "README.md").read_text(encoding="utf-8")
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip().startswith("neuroinspect leaderboard build")
        and re.search(r"--out leaderboards/?$", line.strip())
    ]
    assert len(lines) == 1, (
        f"leaderboards/README.md must give one command that writes to leaderboards/: {lines}"
    )
    return shlex.split(lines[0])[1:]


def test_published_tables_match_their_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEUROINSPECT_REPORTED", raising=False)
    monkeypatch.chdir(ROOT)
    argv: list[str] = []
    for arg in documented_command():
        argv += sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else [arg]  # the shell's glob
    out = argv.index("--out") + 1
    assert Path(argv[out]).resolve() == LEADERBOARDS
    argv[out] = str(tmp_path)
    assert any(a.startswith("leaderboards/measured/") for a in argv)
    assert main([*argv, "--quiet"]) == 0
    built = sorted(p.name for p in tmp_path.iterdir())
    assert built == ["leaderboard.csv", "leaderboard.html", "leaderboard.md", "leaderboard.tex"]
    for name in built:
        committed = LEADERBOARDS / name
        assert committed.is_file(), f"{committed} is missing: run the command in leaderboards/README.md"
        fresh = (tmp_path / name).read_text(encoding="utf-8")
        assert fresh == committed.read_text(encoding="utf-8"), (
            f"{committed.relative_to(ROOT)} differs from what its records build: run the command in "
            "leaderboards/README.md and commit the tables"
        )
    # nothing in a table depends on where or when it was built
    for name in built:
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert str(tmp_path) not in text and str(ROOT) not in text
