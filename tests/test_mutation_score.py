"""``benchmarks/mutation_score.py``: the score and the survivors it reports from mutmut's results.

A real mutmut run takes about 15 CPU seconds even on the five mutants of the ``--smoke`` target
(mutmut starts pytest, maps the tests to functions, then forks once per mutant), so one test runs it
and the others build a mutmut result the way a run leaves it (the mutated module written by mutmut's own
generator, the verdicts in mutmut's own ``.meta`` file, chosen by hand) and check what the script
computes from it: the score ``killed / (mutants − equivalent)``, a timeout as a kill, the reviewed
equivalent list matched on the changed lines, stale and contradicted entries, the report and JSON.
The ``--smoke`` run itself is the test at the end.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("bench_mutation_score", BENCHMARKS / "mutation_score.py")
assert _spec is not None and _spec.loader is not None
ms = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ms  # its dataclasses look their module up there
_spec.loader.exec_module(ms)

#: a module with an equivalent mutant: ``x <= lo`` returns ``lo`` at ``x == lo``, as ``min(x, hi)`` does
SOURCE = '''def clip(x, lo, hi):
    """x limited to [lo, hi] (lo <= hi)."""
    if x < lo:
        return lo
    return min(x, hi)


def double(x):
    return 2 * x
'''


@pytest.fixture
def stored_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """A work folder as mutmut leaves it after a run on ``pkg/tiny.py``; returns it and the mutants'
    names by their changed line (``after``)."""
    from mutmut import configuration
    from mutmut.mutation.data import MutantLineSpans, SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tiny.py").write_text(SOURCE)
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nsource_paths = ["pkg"]\n')
    monkeypatch.chdir(tmp_path)
    configuration.reset_config()
    try:
        mutated = mutate_file_contents("pkg/tiny.py", SOURCE, None, None)
    finally:
        configuration.reset_config()
    (tmp_path / "mutants" / "pkg").mkdir(parents=True)
    (tmp_path / "mutants" / "pkg" / "tiny.py").write_text(mutated.code)
    MutantLineSpans(path="pkg/tiny.py", span_by_function_name=mutated.line_span_by_function_name).save()
    names = [get_mutant_name(Path("pkg/tiny.py"), n) for n in mutated.mutant_names]
    by_after = {}
    for name in names:
        by_after[ms.changed_lines(get_diff_for_mutant(name, path="pkg/tiny.py"))[1]] = name
    meta = SourceFileMutationData(path="pkg/tiny.py")
    meta.exit_code_by_key = dict.fromkeys(names, 1)  # killed (pytest failed)
    meta.exit_code_by_key[by_after["if x <= lo:"]] = 0  # survived
    meta.exit_code_by_key[by_after["return 3 * x"]] = 0  # survived
    meta.exit_code_by_key[by_after["return min(x, )"]] = 33  # no test reached it
    meta.exit_code_by_key[by_after["return 2 / x"]] = 36  # timeout: a kill
    meta.durations_by_key = {}
    meta.estimated_time_of_tests_by_mutant = {}
    meta.save()
    monkeypatch.chdir(Path(__file__).parent)
    return tmp_path, by_after


def _equivalents(path: Path, entries: str) -> list:
    path.write_text(entries)
    return ms.load_equivalents(path)


EQUIV = """
[[mutant]]
file = "pkg/tiny.py"
function = "clip"
before = "if x < lo:"
after = "if x <= lo:"
reason = "at x == lo both branches return lo (min(lo, hi) = lo since lo <= hi)"
"""


def test_score_is_killed_over_mutants_less_equivalent(stored_run, tmp_path: Path) -> None:
    workdir, by_after = stored_run
    (module,) = ms.read_results(workdir, ["pkg/tiny.py"])
    n = len(by_after)
    assert module.total == n == 7  # mutmut's own mutants of SOURCE, all read back
    assert module.count("survived") == 2 and module.count("no tests") == 1 and module.count("timeout") == 1
    assert module.killed == n - 3  # a timeout counts as killed, "no tests" does not
    assert module.score == pytest.approx((n - 3) / n)  # nothing listed yet

    stale, contradicted = ms.apply_equivalents([module], _equivalents(tmp_path / "eq.toml", EQUIV))
    assert stale == [] and contradicted == []
    assert module.equivalent == 1
    assert module.score == pytest.approx((n - 3) / (n - 1))
    # what is left to review: the other survivor and the unreached mutant, with their changed lines
    left = {(m.function, m.before, m.after, m.status) for m in module.survivors()}
    assert left == {
        ("double", "return 2 * x", "return 3 * x", "survived"),
        (
            "clip",
            "return min(x, hi)",
            "return min(x, )",
            "no tests",
        ),
    }


def test_equivalent_entries_that_match_nothing_or_were_killed_are_reported(
    stored_run, tmp_path: Path
) -> None:
    workdir, _ = stored_run
    (module,) = ms.read_results(workdir, ["pkg/tiny.py"])
    entries = _equivalents(
        tmp_path / "eq.toml",
        EQUIV.replace("if x <= lo:", "if x > lo:")  # the code changed since the review: matches nothing
        + EQUIV.replace("if x < lo:", "return min(x, hi)").replace("if x <= lo:", "return min(x, None)")
        + EQUIV.replace('"pkg/tiny.py"', '"pkg/other.py"'),  # another module: not this run's business
    )
    stale, contradicted = ms.apply_equivalents([module], entries)
    assert [e.after for e in stale] == ["if x > lo:"]
    # min(x, None) raises, so the tests killed it: a listed mutant that was killed is not equivalent
    assert [m.after for m in contradicted] == ["return min(x, None)"]
    assert module.equivalent == 0  # a killed mutant is never subtracted


def test_report_and_json(stored_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir, by_after = stored_run
    modules = ms.read_results(workdir, ["pkg/tiny.py"])
    ms.apply_equivalents(modules, _equivalents(tmp_path / "eq.toml", EQUIV))
    n = len(by_after)
    ms.print_report(modules, show_survivors=True)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"mutation score: {n - 3}/{n - 1} = {100 * (n - 3) / (n - 1):.1f}% (1 modules)"
    assert "-   return 2 * x" in out and "+   return 3 * x" in out  # each survivor's diff
    assert "+   if x <= lo:" not in out  # the equivalent one is not listed for review
    data = ms.summary(modules)
    (row,) = data["modules"]
    assert (row["mutants"], row["killed"], row["equivalent"], row["no_tests"]) == (n, n - 3, 1, 1)
    assert {s["after"] for s in row["survivors"]} == {"return 3 * x", "return min(x, )"}
    json.dumps(data)  # writable as the --json file


def test_equivalent_list_needs_every_field_and_a_reason(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="lacks reason"):
        _equivalents(
            tmp_path / "a.toml", '[[mutant]]\nfile = "f"\nfunction = "g"\nbefore = "a"\nafter = "b"\n'
        )
    with pytest.raises(SystemExit, match="empty reason"):
        _equivalents(tmp_path / "b.toml", EQUIV.replace('reason = "at', 'reason = " "\n#'))


def test_the_line_above_tells_apart_mutants_that_change_the_same_line(tmp_path: Path) -> None:
    diff = "--- a\n+++ b\n@@ -1,4 +1,4 @@\n     for n in xs:\n         if n < 0:\n-            continue\n+            break\n"
    assert ms.changed_lines(diff) == ("continue", "break") and ms.context_line(diff) == "if n < 0:"
    module = ms.ModuleScore("pkg/tiny.py")
    for name, context, status in (("m_1", "if n < 0:", "killed"), ("m_2", "if n > 9:", "survived")):
        module.mutants.append(ms.Mutant(name, "pkg/tiny.py", status, "f", "continue", "break", context))
    entry = (
        EQUIV.replace('"clip"', '"f"')
        .replace('"if x < lo:"', '"continue"')
        .replace('"if x <= lo:"', '"break"')
    )
    stale, contradicted = ms.apply_equivalents(
        [module], _equivalents(tmp_path / "eq.toml", entry + 'context = "if n > 9:"\n')
    )
    assert stale == [] and contradicted == [] and module.equivalent == 1
    assert [m.name for m in module.mutants if m.reason] == ["m_2"]
    # without a context the first mutant with those lines takes the entry: here the killed one
    module.mutants[1].reason = None
    _, contradicted = ms.apply_equivalents([module], _equivalents(tmp_path / "eq2.toml", entry))
    assert [m.name for m in contradicted] == ["m_1"]


def test_the_committed_equivalent_list_is_well_formed() -> None:
    entries = ms.load_equivalents()
    keys = [(e.file, e.function, e.before, e.after, e.context) for e in entries]
    assert len(keys) == len(set(keys))  # one reason per mutant
    for e in entries:
        assert (BENCHMARKS.parent / e.file).exists(), e.file
        assert e.before != e.after


def test_mutant_names_map_to_functions_and_methods() -> None:
    assert ms.function_of("neuroinspect.harness.metrics.x_group_counts__mutmut_12") == "group_counts"
    assert ms.function_of("neuroinspect.harness.features.xǁFeatureCacheǁkey__mutmut_3") == "FeatureCache.key"


def test_every_target_names_existing_files_tests_and_functions() -> None:
    import ast
    import fnmatch

    root = BENCHMARKS.parent
    assert set(ms.MEASURED) <= set(ms.ALL_TARGETS)
    for name, target in {**ms.ALL_TARGETS, "smoke": ms.SMOKE}.items():
        files = ms.expand(target.files)
        assert files, name
        for test in (*target.tests, *target.deselect):
            assert (root / test.split("::")[0]).exists(), (name, test)
        # each glob of a narrowed target names a function that exists, so a rename is noticed here
        # rather than as a silently smaller score
        defined = set()
        for file in files:
            module = file.removesuffix(".py").replace("/", ".")
            for node in ast.walk(ast.parse((root / file).read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef):
                            defined.add(f"{module}.xǁ{node.name}ǁ{item.name}__mutmut_1")
                elif isinstance(node, ast.FunctionDef):
                    defined.add(f"{module}.x_{node.name}__mutmut_1")
        for pattern in target.only:
            assert any(fnmatch.fnmatch(d, pattern) for d in defined), (name, pattern)


def test_only_globs_follow_mutmuts_names() -> None:
    assert ms._only("pkg.mod", "f", "C.m") == ("pkg.mod.x_f__mutmut_*", "pkg.mod.xǁCǁm__mutmut_*")
    assert ms.function_of("pkg.mod.xǁCǁm__mutmut_4") == "C.m"


def test_tests_from_an_earlier_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--tests-from REV``: the test folder of that commit, with today's fixtures, linked into the
    work folder in place of the working tree's, and switched back (old copy dropped) afterwards."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[tool.mutmut]\nsource_paths = ["pkg"]\n')

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    (repo / "tests" / "test_a.py").write_text("OLD = 1\n")
    (repo / "tests" / "conftest.py").write_text("# old fixtures\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "old")
    (repo / "tests" / "test_a.py").write_text("NEW = 1\n")
    (repo / "tests" / "test_b.py").write_text("\n")
    (repo / "tests" / "conftest.py").write_text("# new fixtures\n")
    (repo / "tests" / "_services.py").write_text("\n")
    monkeypatch.setattr(ms, "ROOT", repo)

    old = ms.baseline_tests("HEAD")
    assert (old / "test_a.py").read_text() == "OLD = 1\n" and not (old / "test_b.py").exists()
    assert (old / "conftest.py").read_text() == "# new fixtures\n"
    assert ms.baseline_tests("HEAD") == old  # exported once
    with pytest.raises(SystemExit, match="not a commit"):
        ms.baseline_tests("no-such-branch")

    target = ms.Target(("pkg/*.py",), ("tests/test_a.py",), deselect=("tests/test_a.py::test_slow",))
    workdir = ms.prepare_workdir("t", target, fresh=False, tests=old)
    assert (workdir / "tests").resolve() == old.resolve()
    settings = __import__("tomllib").loads((workdir / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert settings["pytest_add_cli_args_test_selection"] == [
        "tests/test_a.py",
        "--deselect",
        "tests/test_a.py::test_slow",
    ]
    (workdir / "mutants" / "tests").mkdir(parents=True)  # mutmut's copy of the old tests
    ms.prepare_workdir("t", target, fresh=False)
    assert (workdir / "tests").resolve() == (repo / "tests").resolve()
    assert not (workdir / "mutants" / "tests").exists()


@pytest.mark.long
def test_smoke_run() -> None:
    """The real thing (mutmut on 5 mutants of one small function, its cache dropped first; about 15 CPU
    seconds): each is killed by the one test that checks the warm-up schedule's values.

    ``--nice 0``: at the script's default niceness (15) mutmut gets a sliver of a shared machine's
    cores, so under other load this test took minutes; its verdicts do not depend on the priority."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "mutation_score.py"), "--smoke", "--fresh", "--nice", "0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[-1] == "mutation score: 5/5 = 100.0% (1 modules)", out
    assert any(line.startswith("neuroinspect/methods/editors/schedules.py") for line in lines), out
