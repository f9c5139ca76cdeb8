"""Every script behind the README's measured figures runs: ``benchmarks/<script>.py --smoke``.

The smoke mode shrinks each script to seconds (a tiny benchmark, a 1-epoch model, a few iterations)
and goes through the same code as the real run, so a script broken by a change elsewhere fails
here instead of on the day someone re-measures a figure. Its numbers mean nothing and are not checked;
what is checked is that the script finishes, says it passed its own agreement checks (exit 0) and
prints its last line (``ratio: <x>`` or ``calibration: ...``). ``faithfulness_table.py --smoke`` and
``study_coverage.py --smoke`` are run, with their output checked, by their own test modules.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:  # the scripts import benchmarks/_common.py
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: scripts whose smoke run (with its output checked) lives in another test module
ELSEWHERE = {
    "faithfulness_table": "test_faithfulness_table.py",
    "study_coverage": "test_study_coverage_benchmark.py",
    "mutation_score": "test_mutation_score.py",
    "startup": "test_startup.py",
    "study_load": "test_study_load.py",
}


def test_every_script_has_a_smoke_mode_and_a_test_that_runs_it() -> None:
    scripts = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_"))
    assert scripts == sorted([*SCRIPTS, *ELSEWHERE])  # a new script needs an entry here
    for name in scripts:
        assert "--smoke" in (BENCHMARKS / f"{name}.py").read_text(encoding="utf-8"), name
    tests = Path(__file__).parent
    for name, module in ELSEWHERE.items():
        text = (tests / module).read_text(encoding="utf-8")
        assert name in text and "--smoke" in text, module


SCRIPTS = {
    "counterfactual": r"ratio: [0-9.]+",
    "editing": r"ratio: [0-9.]+",
    "calibrate_shapes": r"calibration: avg=[0-9.]+ worst_group=[0-9.]+ gap=-?[0-9.]+ pass=(True|False)",
    "clip_illusion_batching": r"ratio: [0-9.]+",
    "clip_illusion_vs_lucent": r"ratio: [0-9.]+",
    "neuron_choice_table": r"verdicts: [1-9][0-9]*",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_smoke_mode_runs(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load(name)
    argv = ["--smoke"]
    if name in ("counterfactual", "editing", "neuron_choice_table"):
        argv += ["--work", str(tmp_path / "work")]
    threads = torch.get_num_threads()
    try:
        rc = script.main(argv)
    finally:
        torch.set_num_threads(threads)  # the scripts set their own thread count
    out = capsys.readouterr().out
    assert rc in (0, None), out[-2000:]
    last = out.rstrip().splitlines()[-1]
    assert re.fullmatch(SCRIPTS[name], last), last
    if name == "counterfactual":
        assert "same flipped samples" in out and "-> PASS" in out
    if name == "editing":
        assert "accuracy difference" in out and "-> PASS" in out
    if name == "neuron_choice_table":
        # the controls and the pipeline under every neuron editor, the fc/dfr references, a verdict per editor
        assert (
            "| oracle-neurons |" in out and "| random-neurons |" in out and "| margin-deficit + top |" in out
        )
        assert "| neuron set | surgical | neuroinspect λ3=0.01 |" in out
        assert "| fc |" in out and "| dfr † |" in out and "Verdict, k = 3:" in out


def test_the_readme_neuron_choice_table_is_what_its_committed_records_build() -> None:
    """The README's table is the output of its one command on ``leaderboards/measured/neuron-choice/``."""
    script = load("neuron_choice_table")
    root = BENCHMARKS.parent
    paths = sorted((root / "leaderboards" / "measured" / "neuron-choice").glob("*.jsonl"))
    assert paths, "the neuron-choice records are committed"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "python benchmarks/neuron_choice_table.py leaderboards/measured/neuron-choice/*.jsonl" in readme
    assert script.build(paths) in readme, "README table differs from its records: re-run the command"
