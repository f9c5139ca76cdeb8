"""`neuroinspect methods list`: every registered entry with its summary, grouped by family."""

from __future__ import annotations

import pytest

import neuroinspect.methods.visualizers as visualizers_pkg
from neuroinspect.cli import main
from neuroinspect.commands import methods as methods_cmd
from neuroinspect.registry import Registry


def _section(out: str, family: str) -> str:
    start = out.index(f"{family} (")
    end = out.find("\n\n", start)
    return out[start : end if end != -1 else None]


def test_lists_every_registered_visualizer_and_all_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "list"]) == 0
    out = capsys.readouterr().out
    for family in ("finders", "visualizers", "editors", "datasets"):
        assert f"{family} (" in out
    visualizers_pkg.load_all()
    reg = visualizers_pkg.VISUALIZERS
    section = _section(out, "visualizers")
    assert section.startswith(f"visualizers ({len(reg)})")
    for name in reg.names():
        line = next(ln for ln in section.splitlines() if ln.strip().startswith(name + " "))
        assert reg.summary(name) in line
    if not len(reg):
        assert "(none registered)" in section


def test_kind_filter_and_an_entry_with_its_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake: Registry[type] = Registry("visualizer")

    @fake.register("zz_probe")
    class Probe:
        """Probe visualizer: first docstring line is the summary.

        Not this line.
        """

        kind = "natural"

    fake.register("aa_plain", summary="given summary")(type("Plain", (), {}))
    monkeypatch.setattr(visualizers_pkg, "VISUALIZERS", fake)
    assert main(["methods", "list", "--kind", "visualizers"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "visualizers (2)",
        "  aa_plain  given summary",
        "  zz_probe  [natural] Probe visualizer: first docstring line is the summary.",
    ]


def test_family_without_a_package_shows_none_registered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    families = dict(methods_cmd.FAMILIES, explainers=("neuroinspect.methods.no_such_family", "EXPLAINERS"))
    monkeypatch.setattr(methods_cmd, "FAMILIES", families)
    fam = methods_cmd.collect("explainers")
    assert fam.entries == [] and fam.errors == []
    assert methods_cmd.format_family(fam) == "explainers (0)\n  (none registered)"


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["methods", "list", "--kind", "losses"])
    assert exc.value.code == 2
    assert "invalid choice: 'losses'" in capsys.readouterr().err
