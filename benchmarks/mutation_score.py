"""Mutation score of the modules that produce published numbers (issue 13 §6); slow, not part of CI.

mutmut 3 puts small realistic bugs ("mutants": ``<`` for ``<=``, ``+ 1``, an argument dropped, a
constant changed) one at a time into a copy of the code and runs the tests that cover the mutated
function (it maps tests to functions by running them once). A mutant the tests fail on is *killed*;
one they pass on *survived*: either the tests miss a bug there, or the mutant is *equivalent* (it cannot
change any behaviour, e.g. ``max(0, x)`` → ``max(1, x)`` on a value already known to be ≥ 1).
Equivalent mutants are reviewed by hand and listed, each with its reason, in
``benchmarks/mutation_equivalent.toml``; the score of a module is

    killed / (mutants − equivalent)

where a timeout counts as killed (the mutant made the tests hang) and a mutant no selected test
reaches counts as not killed.

Each target (a module or package) runs in its own work folder ``mutants/_targets/<target>/`` (git
ignored) holding links to the package and tests and a ``pyproject.toml`` whose ``[tool.mutmut]`` is the
project's with ``only_mutate`` and the test selection of the target; mutmut keeps its cache there, so a
second run only re-tests what changed. Before each run the verdicts that were not "killed" are
forgotten, so survivors are tried again against the current tests; ``--fresh`` starts from nothing
(use it for a measurement after tests were changed or removed). The tests of a target are the test
modules that exercise it directly (listed in :data:`TARGETS`): a score is a lower bound of what the
whole suite would catch, measured in minutes instead of hours. Service tests (browser, PostgreSQL,
Ray) are deselected under mutmut by ``tests/conftest.py``; slow tests by the project's ``-m 'not slow'``.

Usage (under ``nice``: the machine is shared)::

    python benchmarks/mutation_score.py --list               # every target, its functions and tests
    python benchmarks/mutation_score.py                      # the measured scope (README's figures)
    python benchmarks/mutation_score.py metrics --fresh --tests-from main  # "before": main's tests
    python benchmarks/mutation_score.py metrics validator    # run, then print the score per module
    python benchmarks/mutation_score.py metrics --report     # the score from the last run, no run
    python benchmarks/mutation_score.py metrics --survivors  # and each surviving mutant's diff
    python benchmarks/mutation_score.py --smoke              # 5 mutants of one function, ~15 CPU seconds

The last line printed is ``mutation score: <killed>/<counted> = <pct>% (<n> modules)``.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT_FILE = ROOT / "benchmarks" / "mutation_equivalent.toml"
WORK = Path("mutants") / "_targets"  # relative to the repository root
BASELINES = Path("mutants") / "_baselines"  # test folders of earlier commits (--tests-from)


@dataclass(frozen=True)
class Target:
    """Source files to mutate (globs relative to the repository root) and the tests to run on them."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    #: mutant-name globs (``<module>.<function>__mutmut_*``); empty: every mutant of ``files``
    only: tuple[str, ...] = ()
    #: test ids left out (pytest ``--deselect``): a test too slow to run once per mutant, whose
    #: target is also checked by faster tests; the score is then a lower bound
    deselect: tuple[str, ...] = ()
    #: mutmut's ``timeout_constant`` (seconds added to a mutant's expected test time before its limit
    #: of 15 × that in wall time): a test whose module fixture builds a model and a dataset (several
    #: seconds at niceness 15 on a loaded machine) is not counted as a mutant's timeout, i.e. a kill
    timeout_constant: float | None = None


#: The modules whose bugs would change a number in a table, with the test modules that exercise them.
TARGETS: dict[str, Target] = {
    "metrics": Target(
        ("neuroinspect/harness/metrics.py",),
        ("tests/test_metrics.py", "tests/test_determinism.py"),
        # 20 s on two shared cores: a statistical check of the resampling, not of any one number
        deselect=("tests/test_metrics.py::test_binomial_draws_match_index_resampling",),
    ),
    "records": Target(
        ("neuroinspect/harness/records.py",),
        (
            "tests/test_records.py",
            "tests/test_records_validator.py",
            "tests/test_study_records.py",
            "tests/test_fingerprint.py",
        ),
    ),
    "aggregate": Target(
        ("neuroinspect/leaderboards/aggregate.py",),
        (
            "tests/test_leaderboards.py",
            "tests/test_leaderboard_tracks.py",
            "tests/test_published_tables.py",
            "tests/test_records_validator.py",
        ),
        # checks that leaderboards/reported.jsonl is a link into the package, which mutmut's copy of
        # the repository turns into a file: a packaging property, not a number
        deselect=("tests/test_leaderboards.py::test_reported_rows_ship_with_the_package",),
    ),
    "analysis": Target(
        tuple(
            f"neuroinspect/studies/analysis/{m}.py"
            for m in ("accuracy", "agreement", "compare", "confidence", "glmm", "power", "records", "timing")
        ),
        ("tests/test_study_analysis.py", "tests/test_study_records.py"),
    ),
    "groundtruth_scoring": Target(
        ("neuroinspect/methods/groundtruth_scoring.py",),
        ("tests/test_groundtruth_scoring.py",),
    ),
    "finders": Target(
        ("neuroinspect/methods/finders/*.py",),
        ("tests/test_finders.py", "tests/test_determinism.py", "tests/test_groundtruth_scoring.py"),
    ),
    "editors": Target(
        ("neuroinspect/methods/editors/*.py",),
        ("tests/test_editors.py", "tests/test_determinism.py", "tests/test_mitigation.py"),
    ),
    "experiment": Target(
        ("neuroinspect/harness/experiment.py",),
        ("tests/test_experiment.py", "tests/test_pipeline_invariants.py"),
    ),
    "causal_truth": Target(
        ("neuroinspect/methods/causal_truth.py",),
        ("tests/test_causal_truth.py",),
        timeout_constant=10.0,
    ),
}


def _only(module: str, *functions: str) -> tuple[str, ...]:
    """Mutant-name globs of ``functions`` (``f`` or ``Class.method``) of the dotted ``module``."""
    out = []
    for name in functions:
        leaf = "xǁ" + name.replace(".", "ǁ") if "." in name else f"x_{name}"  # mutmut's mangling
        out.append(f"{module}.{leaf}__mutmut_*")
    return tuple(out)


#: The measured scope (README, "Mutation score"): the functions of the targets above that compute a
#: published number or decide what is counted, so that a run fits in about an hour at the lowest
#: priority on two cores shared with other work. Formatting, file handling and plotting are left out,
#: and so are the study-record checks (``_check_study`` and its helpers, 410 mutants); the full
#: targets above still run them.
FOCUSED: dict[str, Target] = {
    "validator": Target(
        ("neuroinspect/harness/records.py",),
        ("tests/test_records.py", "tests/test_records_validator.py", "tests/test_study_records.py"),
        only=_only(
            "neuroinspect.harness.records",
            "validate_record",
            "_check_accuracy_block",
            "_check_fraction",
            "run_key",
        ),
    ),
    "aggregation": Target(
        ("neuroinspect/leaderboards/aggregate.py",),
        TARGETS["aggregate"].tests,
        deselect=TARGETS["aggregate"].deselect,
        only=_only(
            "neuroinspect.leaderboards.aggregate",
            "summarize",
            "record_values",
            "_neuron_recovery_values",
            "_reported_spread",
            "group_records",
            "_base_key",
        ),
    ),
    "ranking": Target(
        (
            "neuroinspect/methods/finders/base.py",
            "neuroinspect/methods/finders/counterfactual.py",
            "neuroinspect/methods/finders/baselines.py",
            "neuroinspect/methods/finders/deficit.py",
        ),
        ("tests/test_finders.py", "tests/test_determinism.py", "tests/test_margin_deficit.py"),
        # command-line runs (5-15 s each, once per mutant they reach): their ranking is checked by the
        # unit tests on hand-made vote matrices and features
        deselect=(
            "tests/test_finders.py::test_batched_counterfactual_equals_running_each_sample_alone",
            "tests/test_finders.py::test_debug_cli_end_to_end",
            # also a command-line run; in mutmut's copy the cold feature cache logs a line to stderr
            # before the one-line error this test expects
            "tests/test_finders.py::test_debug_cli_user_errors_exit_2",
            "tests/test_finders.py::test_debug_passes_finder_settings_and_prints_gamma_for_the_neurons_edit_uses",
            "tests/test_margin_deficit.py::test_debug_prints_the_two_class_notice_for_the_counterfactual_only",
        ),
        timeout_constant=10.0,
        only=_only("neuroinspect.methods.finders.counterfactual", "vote_topk", "aggregate_vote", "build_list")
        + _only(
            "neuroinspect.methods.finders.base",
            "select_mistakes",
            "importance",
            "gamma_heuristic",
            "FinderResult.ranking",
            "FinderResult.top_neurons",
            "FinderResult.ordered",
        )
        + _only(
            "neuroinspect.methods.finders.baselines",
            "_rows",
            "_result",
            "ContributionFinder.find",
            "GradientFinder.find",
            "RandomFinder.find",
        )
        + _only("neuroinspect.methods.finders.deficit", "MarginDeficitFinder.find"),
    ),
    "selection": Target(
        (
            "neuroinspect/methods/editors/base.py",
            "neuroinspect/methods/editors/baselines.py",
            "neuroinspect/methods/editors/neuroinspect_editor.py",
        ),
        ("tests/test_editors.py",),
        # every editor trained end to end (35 s together, once per mutant of the rule they all use):
        # the rule is checked on hand-made epochs and by the editors' epoch-selection tests
        deselect=(
            "tests/test_editors.py::test_each_editor_changes_the_layer_and_leaves_the_input_alone",
            "tests/test_editors.py::test_neuroinspect_reduces_class_dependence_on_the_spurious_neuron",
            "tests/test_editors.py::test_same_seed_same_result_and_hooks_match_cached_path",
        ),
        timeout_constant=10.0,
        only=_only(
            "neuroinspect.methods.editors.base",
            "SelectionRule.key",
            "SelectionRule.eligible",
            "SelectionRule.improves",
            "TrainedEditor.selection_rule",
            "neuron_mask",
        )
        + _only("neuroinspect.methods.editors.baselines", "random_neurons")
        + _only("neuroinspect.methods.editors.neuroinspect_editor", "NeuroInspectEditor.selection_rule"),
    ),
    # ConceptSelector.label is left out: its test trains the benchmark's attribute classifiers (about
    # 10 s a mutant at niceness 15); so is NeuronVisuals (caching, no number)
    "selectors": Target(
        (
            "neuroinspect/methods/selectors/*.py",
            "neuroinspect/harness/choice.py",
            "neuroinspect/harness/pipeline.py",
        ),
        ("tests/test_selectors.py", "tests/test_causal_truth.py", "tests/test_choice.py"),
        # 20 s: three visual selectors end to end on optimized images (a run-through, no numbers
        # checked); the caching it covers (NeuronVisuals.get) is outside the measured functions.
        # 10-20 s with its fixture: core-sensitivity's ratio of 1 on a random resnet, whose formula
        # test_core_sensitivity_on_a_model_whose_features_are_known checks on known features
        deselect=(
            "tests/test_selectors.py::test_every_visual_selector_runs_on_clip_illusion_images_of_a_tiny_model",
            "tests/test_selectors.py::test_core_sensitivity_of_an_unmasked_image_is_one",
        ),
        timeout_constant=10.0,
        only=_only(
            "neuroinspect.methods.selectors.base",
            "Selection.counts",
            "Selector.select",
            "Selector.settings",
        )
        + _only(
            "neuroinspect.methods.selectors.rules",
            "TopSelector.select",
            "CoreSensitivitySelector.__init__",
            "CoreSensitivitySelector.scores",
            "CoreSensitivitySelector._scores",
            "CoreSensitivitySelector.label",
        )
        + _only(
            "neuroinspect.methods.selectors.labels",
            "read_labels",
            "labels_for_class",
            "LabelsSelector.__init__",
            "LabelsSelector.label",
            "LabelsSelector.select",
            "LabelsSelector._ask",
        )
        + _only(
            "neuroinspect.methods.selectors.visual",
            "ClipSelector.__init__",
            "ClipSelector.label",
        )
        + _only(
            "neuroinspect.harness.choice",
            "split_variant",
            "resolve_pipelines",
            "class_means",
            "select_sets",
            "causal_records",
            "gamma_for",
            "attribute_mask",
        )
        # select_sets' per-pair choice and its controls, moved out of choice.py
        + _only("neuroinspect.harness.pipeline", "select_pair", "control_set"),
    ),
    # the other steps that run_experiment and the sweep's stages both call, and choice.py's per-list and
    # edited-set records (split out of causal_records, which the selectors target keeps); train_model
    # and resolve_clip are left out: each trains a model (minutes a mutant), and no number of a table
    # is computed in them
    "pipeline": Target(
        ("neuroinspect/harness/pipeline.py", "neuroinspect/harness/choice.py"),
        (
            "tests/test_pipeline_steps.py",
            "tests/test_choice.py",
            "tests/test_experiment.py",
        ),
        # end-to-end runs (a model trained, then every step; 1-3 min each, once per mutant they reach):
        # each step's answer is checked on hand-made features by test_pipeline_steps.py
        deselect=(
            "tests/test_experiment.py::test_demo_with_config_writes_report_records_and_leaderboard",
            "tests/test_experiment.py::test_bench_run_aggregates_seeds_and_resumes",
        ),
        timeout_constant=10.0,
        only=_only(
            "neuroinspect.harness.pipeline",
            "choose_class",
            "worst_class_accuracy",
            "train_group_counts",
            "class_mistakes",
            "run_finder",
            "measure_causal",
            "selection_context",
            "candidates",
            "set_gamma",
            "edit_and_measure",
            "edit_record",
            "is_plain_fc",
            "relative_to_fc",
        )
        + _only(
            "neuroinspect.harness.choice",
            "list_records",
            "edited_record",
            "no_edit",
            "make_selectors",
            "needs_clip",
        ),
    ),
    "statistics": Target(
        (
            "neuroinspect/studies/analysis/accuracy.py",
            "neuroinspect/studies/analysis/agreement.py",
            "neuroinspect/studies/analysis/compare.py",
            "neuroinspect/studies/analysis/confidence.py",
            "neuroinspect/studies/analysis/power.py",
        ),
        ("tests/test_study_analysis.py", "tests/test_study_statistics.py"),
        # the formulas, and the accuracy table and paired comparisons built from them (the study's
        # headline numbers). The other tables (error consistency, test-retest, Krippendorff, ratings,
        # calibration, the power search: 1,100 more mutants, over an hour a pass on two shared cores)
        # run in the full `analysis` target
        only=_only(
            "neuroinspect.studies.analysis.accuracy",
            "wilson_interval",
            "binomial_p_value",
            "mean_2sem",
            "bootstrap_mean_interval",
            "main_trials",
            "participant_accuracy",
            "accuracy_table",
        )
        + _only("neuroinspect.studies.analysis.agreement", "kappa_binary", "cohen_kappa")
        + _only("neuroinspect.studies.analysis.compare", "holm", "paired_test", "paired_comparisons")
        + _only("neuroinspect.studies.analysis.confidence", "confidence_auc")
        + _only("neuroinspect.studies.analysis.power", "paired_t_detections", "normal_approx_n"),
    ),
    # the feature cache (issue 13: "the feature cache key ignoring the checkpoint"): the key, hit, miss
    # and recompute rules, the pooled extraction, and one split through pipeline.split_features.
    # FeatureSet.num_features and .preds are properties, which mutmut does not mutate
    "features": Target(
        ("neuroinspect/harness/features.py", "neuroinspect/harness/pipeline.py"),
        ("tests/test_features.py", "tests/test_determinism.py", "tests/test_pipeline_steps.py"),
        timeout_constant=10.0,
        only=_only(
            "neuroinspect.harness.features",
            "FeatureSet.__len__",
            "FeatureSet.subset",
            "FeatureSet.to_payload",
            "FeatureSet.from_payload",
            "extract_features",
            "default_cache_dir",
            "FeatureCache.__init__",
            "FeatureCache.key",
            "FeatureCache.path",
            "FeatureCache.get_or_compute",
        )
        + _only("neuroinspect.harness.pipeline", "split_features"),
    ),
}


#: every target by name; a run without names runs MEASURED, the scope the README reports
ALL_TARGETS: dict[str, Target] = {**TARGETS, **FOCUSED}
MEASURED = ("metrics", "causal_truth", *FOCUSED)

#: ``--smoke``: one small function of a real module and the one test file that covers it.
SMOKE = Target(
    ("neuroinspect/methods/editors/schedules.py",),
    ("tests/test_editors.py::test_warmup_schedule_global_and_reference_sawtooth",),
    # 5 of its 23 mutants: the machinery end to end (about 15 CPU seconds, most of it mutmut's own
    # start: mutant generation, the stats, the clean and the forced-fail runs)
    only=("neuroinspect.methods.editors.schedules.x_warmup_factor__mutmut_[1-5]",),
)

#: what the work folder links to (besides ``neuroinspect`` and ``tests``): files tests read from the root
LINKED = ("neuroinspect", "tests", "README.md", "configs", "leaderboards", "benchmarks", "constraints.txt")


# -- results -----------------------------------------------------------------------------------------


@dataclass
class Mutant:
    name: str  # mutmut's id, e.g. neuroinspect.harness.metrics.x_group_counts__mutmut_3
    file: str  # neuroinspect/harness/metrics.py
    status: str  # killed | survived | no tests | timeout | suspicious | segfault | skipped | not checked
    function: str = ""  # ``group_counts`` or ``Class.method``
    before: str = ""  # the lines the mutant changes, each stripped, joined by "\n"
    after: str = ""
    context: str = ""  # the unchanged line just above the changed ones, stripped
    reason: str | None = None  # set when the mutant is listed as equivalent


@dataclass
class ModuleScore:
    file: str
    mutants: list[Mutant] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(m.status in statuses for m in self.mutants)

    @property
    def total(self) -> int:
        return len(self.mutants) - self.count("skipped")

    @property
    def killed(self) -> int:
        return self.count("killed", "timeout")

    @property
    def equivalent(self) -> int:
        return sum(m.reason is not None and m.status not in ("killed", "timeout") for m in self.mutants)

    @property
    def counted(self) -> int:
        return self.total - self.equivalent

    @property
    def score(self) -> float:
        return self.killed / self.counted if self.counted else float("nan")

    def survivors(self) -> list[Mutant]:
        """Not killed and not listed as equivalent: what a reviewer has to look at."""
        return [
            m for m in self.mutants if m.status not in ("killed", "timeout", "skipped") and m.reason is None
        ]


def function_of(mutant_name: str) -> str:
    """``pkg.mod.x_f__mutmut_3`` → ``f``; ``pkg.mod.xǁCǁm__mutmut_1`` → ``C.m``."""
    leaf = mutant_name.rsplit(".", 1)[-1]
    leaf = re.sub(r"__mutmut_\d+$", "", leaf)
    if leaf.startswith("xǁ"):
        return ".".join(part for part in leaf[2:].split("ǁ") if part)
    return leaf[2:] if leaf.startswith("x_") else leaf


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a unified diff, each stripped, joined by newlines."""
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            removed.append(line[1:].strip())
        elif line.startswith("+"):
            added.append(line[1:].strip())
    return "\n".join(removed), "\n".join(added)


def context_line(diff: str) -> str:
    """The unchanged line just above the first changed line of a unified diff, stripped ("" if none)."""
    last = ""
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith(("-", "+")):
            return last
        last = line[1:].strip() if line.startswith(" ") else line.strip()
    return last


def status_of(exit_code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    status = str(status_by_exit_code[exit_code])
    if status == "caught by type check":  # not configured here; a type checker's catch is a kill
        return "killed"
    return status


@dataclass(frozen=True)
class Equivalent:
    file: str
    function: str
    before: str
    after: str
    reason: str
    #: the unchanged line just above, for mutants whose changed lines alone are ambiguous (two
    #: ``continue`` → ``break`` in one function); ``None``: any
    context: str | None = None


def load_equivalents(path: Path = EQUIVALENT_FILE) -> list[Equivalent]:
    """The reviewed list: ``[[mutant]]`` tables with ``file``, ``function``, ``before``, ``after``, ``reason``
    and, where those are ambiguous, ``context`` (the unchanged line just above the change)."""
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, entry in enumerate(data.get("mutant", [])):
        missing = {"file", "function", "before", "after", "reason"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: [[mutant]] #{i + 1} lacks {', '.join(sorted(missing))}")
        if not str(entry["reason"]).strip():
            raise SystemExit(f"{path}: [[mutant]] #{i + 1} has an empty reason")
        out.append(
            Equivalent(
                entry["file"],
                entry["function"],
                _norm(entry["before"]),
                _norm(entry["after"]),
                entry["reason"].strip(),
                entry["context"].strip() if "context" in entry else None,
            )
        )
    return out


def _norm(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


def apply_equivalents(
    modules: Iterable[ModuleScore], equivalents: Sequence[Equivalent]
) -> tuple[list[Equivalent], list[Mutant]]:
    """Mark listed mutants (matched on file, function and the changed lines) with their reason.

    Returns the entries of functions in ``modules`` that matched no mutant (stale: the code changed
    since the review; entries of functions a target's ``only`` leaves out are not its business) and the
    listed mutants that were killed (not equivalent after all).
    """
    modules = list(modules)
    functions = {(m.file, m.function) for module in modules for m in module.mutants}
    used: set[int] = set()
    killed_but_listed = []
    for module in modules:
        for mutant in module.mutants:
            for i, eq in enumerate(equivalents):
                if (eq.file, eq.function, eq.before, eq.after) == (
                    mutant.file,
                    mutant.function,
                    mutant.before,
                    mutant.after,
                ) and eq.context in (None, mutant.context):
                    mutant.reason = eq.reason
                    used.add(i)
                    if mutant.status in ("killed", "timeout"):
                        killed_but_listed.append(mutant)
                    break
    stale = [eq for i, eq in enumerate(equivalents) if (eq.file, eq.function) in functions and i not in used]
    return stale, killed_but_listed


@contextmanager
def _cwd(path: Path):  # noqa: ANN202
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def read_results(workdir: Path, files: Sequence[str], only: Sequence[str] = ()) -> list[ModuleScore]:
    """Per source file, mutmut's verdicts (``mutants/<file>.meta``) with each mutant's changed lines."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    out = []
    with _cwd(workdir):
        for file in files:
            meta = Path("mutants") / f"{file}.meta"
            if not meta.exists():
                continue
            codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
            module = ModuleScore(file)
            for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
                if only and not any(fnmatch.fnmatch(name, pattern) for pattern in only):
                    continue
                mutant = Mutant(name, file, status_of(code), function_of(name))
                diff = get_diff_for_mutant(name, path=file)
                mutant.before, mutant.after = changed_lines(diff)
                mutant.context = context_line(diff)
                module.mutants.append(mutant)
            out.append(module)
    return out


def _natural(name: str) -> tuple[str, int]:
    stem, _, index = name.rpartition("__mutmut_")
    return stem, int(index) if index.isdigit() else 0


# -- running mutmut ------------------------------------------------------------------------------------


def expand(patterns: Iterable[str]) -> list[str]:
    files = sorted({str(p.relative_to(ROOT)) for pattern in patterns for p in ROOT.glob(pattern)})
    return [f for f in files if not f.endswith("__init__.py") or (ROOT / f).read_text().strip()]


def baseline_tests(rev: str) -> Path:
    """The ``tests`` folder as it is at git revision ``rev`` (for a "before" score), exported once to
    ``mutants/_baselines/<commit>/tests``, with today's ``conftest.py`` and ``_services.py``: those hold
    fixtures and the deselection of service tests under mutmut, not checks of the mutated code."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    if found.returncode != 0:
        raise SystemExit(f"--tests-from: {rev!r} is not a commit of this repository; give a branch or a hash")
    sha = found.stdout.strip()
    dest = ROOT / BASELINES / sha[:12]
    if not (dest / "tests").is_dir():
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha, "tests"], cwd=ROOT, capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(partial, filter="data")
        os.replace(partial, dest)
    for helper in ("conftest.py", "_services.py"):
        shutil.copy2(ROOT / "tests" / helper, dest / "tests" / helper)
    return dest / "tests"


def prepare_workdir(name: str, target: Target, fresh: bool, tests: Path | None = None) -> Path:
    """``mutants/_targets/<name>/``: links to the sources and a pyproject.toml for this target.

    ``tests``: the test folder to run (default: the working tree's); mutmut copies it into its
    ``mutants/`` folder at the start of every run, so a run is not disturbed by edits made meanwhile.
    """
    import tomli_w

    workdir = ROOT / WORK / name
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = workdir / entry
        source = tests if entry == "tests" and tests is not None else ROOT / entry
        if link.is_symlink() and Path(os.readlink(link)) != source:
            link.unlink()
            # mutmut copies the tests over its old copy: drop that copy, or files of the other
            # test folder would stay and run
            shutil.rmtree(workdir / "mutants" / "tests", ignore_errors=True)
        if source.exists() and not link.is_symlink():
            link.symlink_to(source)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    settings = dict(project["tool"]["mutmut"])
    settings["only_mutate"] = expand(target.files)
    folder = tests if tests is not None else ROOT / "tests"
    # a "before" run on an earlier commit's tests: a test module added since is not there to run
    present = [t for t in target.tests if (folder.parent / t.split("::")[0]).exists()]
    settings["pytest_add_cli_args_test_selection"] = [
        *present,
        *(arg for test in target.deselect for arg in ("--deselect", test)),
    ]
    if target.timeout_constant is not None:
        settings["timeout_constant"] = target.timeout_constant
    project["tool"]["mutmut"] = settings
    text = tomli_w.dumps(project)
    pyproject = workdir / "pyproject.toml"
    if not pyproject.exists() or pyproject.read_text(encoding="utf-8") != text:
        pyproject.write_text(text, encoding="utf-8")
    return workdir


def forget_survivors(workdir: Path, files: Sequence[str]) -> int:
    """Reset every verdict but "killed" (and timeout) so the next run tries those mutants again."""
    n = 0
    for file in files:
        meta = workdir / "mutants" / f"{file}.meta"
        if not meta.exists():
            continue
        data = json.loads(meta.read_text(encoding="utf-8"))
        for key, code in data["exit_code_by_key"].items():
            if code is not None and status_of(code) not in ("killed", "timeout"):
                data["exit_code_by_key"][key] = None
                n += 1
        meta.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return n


def run_mutmut(workdir: Path, target: Target, max_children: int, niceness: int, log: Path) -> None:
    mutmut = Path(sys.executable).with_name("mutmut")
    cmd = [str(mutmut), "run", "--max-children", str(max_children), *target.only]
    env = dict(os.environ, HF_HUB_OFFLINE="1", NEUROINSPECT_NO_PROGRESS="1", MPLBACKEND="Agg")
    env.setdefault("OMP_NUM_THREADS", "1")

    def lower_priority() -> None:
        # at least this niceness, not this much more: under `nice -n 15 python mutation_score.py`
        # an added 15 would give 19, whose tiny share of a loaded machine turns slow tests into
        # false timeouts (a timeout counts as a kill)
        os.nice(max(0, niceness - os.nice(0)))

    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=lower_priority
        )
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"mutmut failed (exit {proc.returncode}); its log: {log}\n{tail}")


# -- report --------------------------------------------------------------------------------------------


def summary(modules: Sequence[ModuleScore]) -> dict[str, Any]:
    rows = []
    for m in modules:
        rows.append(
            {
                "file": m.file,
                "mutants": m.total,
                "killed": m.killed,
                "timeout": m.count("timeout"),
                "survived": m.count("survived"),
                "no_tests": m.count("no tests"),
                "other": m.count("suspicious", "segfault", "check was interrupted by user", "not checked"),
                "equivalent": m.equivalent,
                "score": m.score,
                "survivors": [
                    {
                        "mutant": s.name,
                        "function": s.function,
                        "status": s.status,
                        "before": s.before,
                        "after": s.after,
                        "context": s.context,
                    }
                    for s in m.survivors()
                ],
            }
        )
    killed = sum(m.killed for m in modules)
    counted = sum(m.counted for m in modules)
    return {
        "modules": rows,
        "killed": killed,
        "counted": counted,
        "score": killed / counted if counted else None,
    }


def print_report(modules: Sequence[ModuleScore], show_survivors: bool) -> None:
    header = f"{'module':<48} {'mutants':>7} {'killed':>6} {'(t/o)':>5} {'surv.':>5} {'no test':>7} {'equiv.':>6} {'score':>7}"
    print(header)
    print("-" * len(header))
    for m in modules:
        other = m.total - m.killed - m.count("survived", "no tests")
        note = f"  ({other} suspicious/segfault/unchecked)" if other else ""
        print(
            f"{m.file:<48} {m.total:>7} {m.killed:>6} {m.count('timeout'):>5} {m.count('survived'):>5} "
            f"{m.count('no tests'):>7} "
            f"{m.equivalent:>6} {100 * m.score:>6.1f}%{note}"
        )
    if show_survivors:
        for m in modules:
            for s in m.survivors():
                print(f"\n# {s.name} ({s.status}) in {s.function}")
                for line in s.before.splitlines():
                    print(f"-   {line}")
                for line in s.after.splitlines():
                    print(f"+   {line}")
    killed = sum(m.killed for m in modules)
    counted = sum(m.counted for m in modules)
    pct = 100 * killed / counted if counted else float("nan")
    print(f"mutation score: {killed}/{counted} = {pct:.1f}% ({len(modules)} modules)")


def check_writable(path: Path) -> None:
    """Fail before a long run, not after it, when the --json file cannot be written."""
    parent = path.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise SystemExit(f"--json: cannot write {path}: its folder {parent} is missing or read-only")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets",
        nargs="*",
        help=f"targets to run (default: the measured scope, {' '.join(MEASURED)}); all: {' '.join(ALL_TARGETS)}",
    )
    parser.add_argument("--smoke", action="store_true", help="one small function only, well under a minute")
    parser.add_argument("--list", action="store_true", help="print the targets, their files and tests")
    parser.add_argument("--report", action="store_true", help="no run: the score from the last run's results")
    parser.add_argument(
        "--survivors", action="store_true", help="print each surviving mutant's changed lines"
    )
    parser.add_argument("--fresh", action="store_true", help="drop the target's cached results first")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--nice", type=int, default=15, help="niceness of mutmut (default 15)")
    parser.add_argument("--json", type=Path, help="also write the scores and survivors to this file")
    parser.add_argument(
        "--tests-from",
        metavar="REV",
        help="run the tests as they are at this git revision (a 'before' score), e.g. main",
    )
    args = parser.parse_args(argv)

    unknown = [t for t in args.targets if t not in ALL_TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(ALL_TARGETS)}")
    chosen = {"smoke": SMOKE} if args.smoke else {t: ALL_TARGETS[t] for t in (args.targets or MEASURED)}
    if args.list:
        listed = chosen if args.targets or args.smoke else ALL_TARGETS
        for name, target in listed.items():
            scope = " (measured scope)" if name in MEASURED else ""
            print(f"{name}{scope}: {' '.join(expand(target.files))}\n    tests: {' '.join(target.tests)}")
            if target.only:
                print(f"    only: {' '.join(target.only)}")
            if target.deselect:
                print(f"    left out: {' '.join(target.deselect)}")
        return 0

    if args.json:
        check_writable(args.json)
    tests = baseline_tests(args.tests_from) if args.tests_from and not args.report else None
    if tests is not None:
        print(f"tests as at {args.tests_from} ({tests.parent.name})")
    equivalents = load_equivalents()
    modules: list[ModuleScore] = []
    for name, target in chosen.items():
        files = expand(target.files)
        if args.report:  # read only: the work folder may be in use by a run
            workdir = ROOT / WORK / name
        else:
            workdir = prepare_workdir(name, target, fresh=args.fresh, tests=tests)
            forgotten = forget_survivors(workdir, files)
            log = workdir / "mutmut.log"
            print(
                f"{name}: mutmut on {len(files)} file(s), {forgotten} earlier survivors to retry; log {log}"
            )
            run_mutmut(workdir, target, args.max_children, args.nice, log)
        modules.extend(read_results(workdir, files, target.only))

    stale, killed_but_listed = apply_equivalents(modules, equivalents)
    for eq in stale:
        print(
            f"warning: listed equivalent matches no mutant (code changed?): {eq.file} {eq.function}: {eq.before!r}"
        )
    for mutant in killed_but_listed:
        print(f"warning: listed as equivalent but killed, so not equivalent: {mutant.name}")
    unchecked = sum(m.count("not checked") for m in modules)
    if unchecked:
        print(f"warning: {unchecked} mutants were not checked (interrupted run?); they count as not killed")
    if args.json:
        args.json.write_text(json.dumps(summary(modules), indent=2), encoding="utf-8")
    print_report(modules, args.survivors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
