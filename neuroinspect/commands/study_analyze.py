"""``neuroinspect study analyze``: the statistics of a human-understanding study.

Registered under the ``study`` command group (``neuroinspect.commands.study``) through
:func:`add_arguments` and :func:`run`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import add_no_progress, progress_on
from neuroinspect.errors import UserError

TASKS = ("2afc", "labelling", "mistake", "rating")
PARTICIPANTS = ("human", "simulated")

DESCRIPTION = """\
Analyse a study: exclusions, accuracy per condition against chance, paired comparisons (Holm) and a
mixed-effects logistic regression between conditions, confidence calibration, response times,
agreement, and the participants a follow-up needs. Writes report.md, figures/*.png, one `study`
result record per condition (results.jsonl, for `neuroinspect leaderboard build`) and analysis.json.
"""

EPILOG = """\
Examples:
  neuroinspect study analyze configs/studies/shapes-2afc.toml         # the study's database, its rules
  neuroinspect study analyze --responses responses.csv --task 2afc --out runs/analysis
  neuroinspect study analyze --responses labels.csv --task labelling --baseline none --power-diff 0.05,0.1

With a spec, the task, chance level, conditions and exclusion rules come from it (a --responses CSV
beside it is analysed under the spec instead of the database). With a bare CSV, --task or the CSV's
task / n_options columns set chance, and the default exclusion rules apply (the report states them).
"""


def _fraction_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions such as 0.05,0.1, got {text!r}") from None
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(
            f"differences are fractions in (0, 1), e.g. 0.1 for 10 points; got {text!r}"
        )
    return values


#: options without a default value: absent from the namespace when not given (so --help does not
#: print "default: None"); :func:`run` fills them with None
OPTIONAL_VALUES = ("responses", "task", "baseline", "out", "dataset", "model", "participants")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``study analyze`` (on a parser made by the ``study`` command group)."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    none = argparse.SUPPRESS
    parser.add_argument(
        "spec",
        nargs="?",
        default=none,  # no type=Path: argparse would convert the SUPPRESS marker; run() makes a Path
        metavar="SPEC.toml",
        help="the study spec (reads its database)",
    )
    parser.add_argument(
        "--responses", type=Path, metavar="FILE.csv", default=none, help="a long-format response CSV"
    )
    parser.add_argument(
        "--task", metavar="TASK", default=none, help="2afc, labelling, mistake or rating (bare CSV)"
    )
    parser.add_argument(
        "--baseline",
        metavar="NAME",
        default=none,
        help="the no-explanation condition (none given: the one named none, baseline or control)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=none,
        help="output folder, new or empty (none given: the spec's out folder/analysis, or <CSV name>-analysis beside the CSV)",
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder")
    parser.add_argument(
        "--dataset", default=none, help="dataset name for the records (bare CSV; none given: unknown)"
    )
    parser.add_argument(
        "--model", default=none, help="model name for the records (bare CSV; none given: none)"
    )
    parser.add_argument(
        "--participants",
        metavar="KIND",
        default=none,
        help="human or simulated, for a CSV without a 'simulated' column (none given: human, said in the report)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the power simulations")
    parser.add_argument("--boot", type=int, default=2000, metavar="N", help="bootstrap resamples")
    parser.add_argument(
        "--power-sims",
        type=int,
        default=500,
        metavar="N",
        help="simulated follow-ups per sample size (0: no power analysis)",
    )
    parser.add_argument(
        "--power-diff",
        type=_fraction_list,
        default="0.1",
        metavar="D[,D]",
        help="accuracy differences over the baseline the follow-up should detect (fractions)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument("--power", type=float, default=0.8, help="target power of the follow-up")
    parser.add_argument(
        "--no-compare", action="store_true", help="accuracy against chance only (e.g. one condition)"
    )
    parser.add_argument(
        "--no-glmm", action="store_true", help="skip the mixed-effects model (and the power analysis)"
    )
    add_no_progress(parser)


def _default_out(args: argparse.Namespace) -> Path:
    """A study's analysis goes beside its bundle and database (``<out of the spec>/analysis``), not
    into the folder of the spec (often a checkout's configs/); a bare CSV's beside the CSV."""
    if args.spec is not None:
        from neuroinspect.studies.spec import load_spec

        return Path(load_spec(args.spec, check_methods=False).out) / "analysis"
    src: Path = args.responses
    return src.with_name(f"{src.stem}-analysis")


def _check_args(args: argparse.Namespace) -> None:
    if args.spec is None and args.responses is None:
        raise UserError("name a study spec (SPEC.toml) or a response table (--responses FILE.csv).")
    if args.task is not None and args.task not in TASKS:
        raise UserError(f"unknown --task {args.task!r}; use one of {', '.join(TASKS)}.")
    if args.spec is not None and args.task is not None:
        raise UserError("--task comes from the spec; drop --task (or analyse the CSV without the spec).")
    if args.spec is not None and (args.dataset or args.model):
        raise UserError("--dataset and --model come from the spec; drop them.")
    if args.participants is not None and args.participants not in PARTICIPANTS:
        raise UserError(f"--participants must be human or simulated, got {args.participants!r}.")
    if args.boot < 100:
        raise UserError(f"--boot {args.boot} is too few resamples for an interval; use 1000 or more.")
    if args.power_sims < 0:
        raise UserError("--power-sims must be 0 (no power analysis) or more.")
    if not 0.0 < args.alpha < 0.5:
        raise UserError(f"--alpha must be in (0, 0.5), got {args.alpha}.")
    if not 0.5 <= args.power < 1.0:
        raise UserError(f"--power must be in [0.5, 1), got {args.power}.")
    if args.spec is not None and not args.spec.is_file():
        raise UserError(
            f"study spec {args.spec} does not exist; pass the TOML file the study was built from."
        )


def _command_line(args: argparse.Namespace) -> str:
    parts = ["neuroinspect", "study", "analyze"]
    if args.spec is not None:
        parts.append(str(args.spec))
    if args.responses is not None:
        parts += ["--responses", str(args.responses)]
    for flag, value in (
        ("--out", args.out),
        ("--task", args.task),
        ("--baseline", args.baseline),
        ("--dataset", args.dataset),
        ("--model", args.model),
        ("--participants", args.participants),
    ):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--seed", str(args.seed), "--boot", str(args.boot), "--power-sims", str(args.power_sims)]
    parts += ["--power-diff", ",".join(f"{v:g}" for v in args.power_diff)]
    if args.no_compare:
        parts.append("--no-compare")
    if args.no_glmm:
        parts.append("--no-glmm")
    return " ".join(shlex.quote(p) for p in parts)


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The normalized response table and the design."""
    from neuroinspect.studies.analysis.design import design_from_spec, design_from_table
    from neuroinspect.studies.responses import normalize_responses, read_responses

    if args.spec is not None:
        from neuroinspect.studies.export import responses_frame
        from neuroinspect.studies.spec import load_spec

        spec = load_spec(args.spec, check_methods=False)  # the analysis runs no visualizer
        if args.responses is not None:
            df = read_responses(args.responses)
        else:
            df = normalize_responses(responses_frame(spec), source=f"the database of {args.spec}")
        _check_nonempty(df, args)
        return df, design_from_spec(spec, df, baseline=args.baseline)
    df = read_responses(args.responses)
    _check_nonempty(df, args)
    design = design_from_table(
        df,
        task=args.task,
        baseline=args.baseline,
        dataset=args.dataset,
        model=args.model,
        seed=args.seed,
        path=str(args.responses),
    )
    return df, design


def _check_nonempty(df: Any, args: argparse.Namespace) -> None:
    if len(df) == 0 or not (df["trial_kind"] == "main").any():
        where = args.responses or f"the database of {args.spec}"
        raise UserError(
            f"{where} has no main-trial responses to analyse; run the study (or `study simulate`) first."
        )


def run(args: argparse.Namespace) -> int:
    """Analyse the study; returns 0, or raises :class:`UserError` (exit status 2) on bad input."""
    from neuroinspect.runtime import Provenance, progress
    from neuroinspect.studies.analysis.outputs import check_out_dir, write_outputs
    from neuroinspect.studies.analysis.pipeline import AnalysisSettings, analyze

    for name in ("spec", *OPTIONAL_VALUES):
        if not hasattr(args, name):
            setattr(args, name, None)
    if args.spec is not None:
        args.spec = Path(args.spec)
    _check_args(args)
    out: Path = args.out if args.out is not None else _default_out(args)
    check_out_dir(out, args.overwrite)

    def log(msg: str) -> None:
        print(f"study analyze: {msg}", file=sys.stderr, flush=True)

    with Provenance(device="cpu") as prov:
        df, design = _load(args)
        compare = not args.no_compare
        if compare and len(design.conditions) < 2:
            raise UserError(
                f"the study has one condition ({', '.join(design.conditions) or 'none'}); comparisons need "
                "two. Pass --no-compare to test accuracy against chance alone."
            )
        settings = AnalysisSettings(
            seed=args.seed,
            n_boot=args.boot,
            power_sims=0 if args.no_glmm else args.power_sims,
            power_diffs=tuple(args.power_diff),
            alpha=args.alpha,
            power=args.power,
            compare=compare,
            glmm=not args.no_glmm,
            participants=args.participants,
        )
        log(
            f"{len(df)} responses, {df['participant'].nunique()} participants, conditions {', '.join(design.conditions)}"
        )
        show = progress_on(args)

        def bar(items: Any) -> Any:
            return progress(items, desc="power (sample sizes)", enabled=show)

        analysis = analyze(df, design, settings, log=log, progress=bar)
        log("figures, report and records")
        paths = write_outputs(analysis, out, prov, _command_line(args))
    from neuroinspect.studies.analysis.report import summary_lines

    for line in summary_lines(analysis):
        print("- " + line.replace("**", ""))
    print(
        f"wrote {paths['report']}, {paths['results']} ({len(design.conditions)} records), figures in {out / 'figures'}"
    )
    return 0
