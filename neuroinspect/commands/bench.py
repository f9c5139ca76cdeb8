"""``neuroinspect bench run CONFIG.toml``: one experiment over several seeds → records → leaderboard;
``neuroinspect bench compare A B``: did two runs measure the same numbers?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import add_no_progress, add_overwrite, parse_int_list, progress_on
from neuroinspect.errors import UserError

EPILOG = """Examples:
  neuroinspect bench run configs/spurious-shapes.toml --seeds 0,1,2 --out runs/bench-shapes
  neuroinspect leaderboard build runs/bench-shapes/results.jsonl --format md,html --out runs/bench-shapes/leaderboard

Each seed trains its own model (or loads the config's checkpoint), runs every finder and editor, and
appends its records to OUT/results.jsonl; OUT/seed-N/report.md holds that seed's report and
OUT/leaderboard.md the table aggregated over seeds (mean ± std).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "bench",
        help="run an experiment config over seeds and write result records",
        description="Run experiment configs over seeds.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="bench_command", metavar="ACTION")
    from neuroinspect.sweeps.command import SWEEP_EPILOG, add_sweep_arguments

    r = sub.add_parser(
        "run",
        help="run CONFIG.toml over seeds, or a sweep",
        description=(
            "Run an experiment config over seeds: train (or load) the model, find the neurons behind the "
            "worst class's mistakes with every finder, edit the decision layer with every editor, and write "
            "the records, a report per seed and the leaderboard aggregated over seeds. A config with a "
            "[sweep] table runs a whole grid as cached stages (below)."
        ),
        epilog=EPILOG + "\n" + SWEEP_EPILOG,
        formatter_class=_Formatter,
    )
    r.add_argument("config", help="experiment TOML, or a sweep TOML with a [sweep] table (see configs/)")
    r.add_argument(
        "--seeds",
        default=argparse.SUPPRESS,
        help="comma-separated seeds (default 0,1,2; a sweep: its own seeds)",
    )
    r.add_argument("--out", default=None, help="output folder (default runs/bench-<config name>)")
    r.add_argument("--device", default=None, help="override the config's device (cpu, cuda, auto)")
    add_no_progress(r)
    add_overwrite(
        r,
        resume="continue an interrupted run: seeds already in OUT/results.jsonl are skipped (a sweep "
        "always resumes)",
    )
    add_sweep_arguments(r)
    r.set_defaults(func=run)

    c = sub.add_parser(
        "compare",
        help="check that two runs measured the same numbers",
        description=(
            "Compare two results.jsonl files record by record (matched by run_id): every number under "
            "metrics must agree; timings (keys ending in 'seconds') and provenance are not compared. "
            "Exit status 0 when both hold the same records with the same numbers, 1 when they differ."
        ),
        epilog=(
            "Examples:\n"
            "  neuroinspect bench compare runs/bundled/results.jsonl runs/bundled-ray/results.jsonl\n"
            "  neuroinspect bench compare runs/bundled runs/bundled-ray      (run folders: their results.jsonl)"
        ),
        formatter_class=_Formatter,
    )
    c.add_argument("a", help="a results.jsonl (or a run folder holding one)")
    c.add_argument("b", help="the other results.jsonl (or run folder)")
    c.add_argument(
        "--atol",
        type=float,
        default=0.0,
        help="largest absolute difference that still counts as the same number (default 0: exact)",
    )
    c.add_argument("--show", type=int, default=10, help="how many differences to list (default 10)")
    c.set_defaults(func=compare)
    p.set_defaults(func=lambda args: _need_action(p))
    return p


def _need_action(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    raise UserError("say what to do: `neuroinspect bench run CONFIG.toml`.")


def run(args: argparse.Namespace) -> int:
    from neuroinspect.fileio import atomic_write_text
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.harness.experiment import run_experiment
    from neuroinspect.harness.report import write_experiment_report
    from neuroinspect.leaderboards import build_tables, load_records, render
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import resolve_device
    from neuroinspect.sweeps.command import is_sweep, refuse_sweep_options, run_sweep_command

    if is_sweep(args.config):
        if args.overwrite:
            raise UserError(
                f"--overwrite does not apply to sweeps: {args.config} resumes in its --out folder by design; "
                "remove that folder, or pass another --out, to start again."
            )
        return run_sweep_command(args)
    refuse_sweep_options(args)
    cfg = ExperimentConfig.from_toml(args.config)
    if args.device:
        cfg.device = args.device
    seeds = parse_int_list(getattr(args, "seeds", "0,1,2"), "seeds")
    if not seeds:
        raise UserError("--seeds is empty; give at least one seed, e.g. --seeds 0,1,2.")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one of them.")
    resolve_device(cfg.device)
    cfg.check_methods(str(args.config))
    outputs = Outputs(overwrite=args.overwrite, resume=bool(args.resume))
    out = outputs.folder(args.out or f"runs/bench-{cfg.name}", "--out")
    results = outputs.records(out / "results.jsonl", "--out")
    done = _done_seeds(results, cfg.name) if args.resume else set()
    with outputs.guard():
        for seed in seeds:
            if seed in done:
                print(f"seed {seed}: already in {results}, skipped (--resume)", file=sys.stderr)
                continue
            print(f"== {cfg.name}: seed {seed} ==", file=sys.stderr)
            res = run_experiment(
                cfg,
                seed,
                out / f"seed-{seed}",
                show_progress=progress_on(args),
                log=lambda m: print(m, file=sys.stderr),
                results_path=results,
                replace_records=args.overwrite,
            )
            write_experiment_report(res, out / f"seed-{seed}")
    tables = build_tables(load_records([results]))
    md = render(tables, "md", title=f"Leaderboard: {cfg.name}, seeds {','.join(map(str, seeds))}")
    atomic_write_text(out / "leaderboard.md", md)
    atomic_write_text(out / "leaderboard.csv", render(tables, "csv"))
    print(md)
    print(f"records: {results}\nleaderboard: {out / 'leaderboard.md'}")
    return 0


def compare(args: argparse.Namespace) -> int:
    """``bench compare A B``: 0 when both runs measured the same numbers, 1 when not."""
    from neuroinspect.harness.record_diff import compare_records
    from neuroinspect.harness.records import read_records

    if not args.atol >= 0:
        raise UserError(f"--atol is {args.atol}; give a difference of 0 or more, e.g. --atol 1e-6.")
    paths = []
    for given in (args.a, args.b):
        path = Path(given)
        if path.is_dir():
            path = path / "results.jsonl"
        paths.append(path)
    result = compare_records(read_records(paths[0]), read_records(paths[1]), atol=args.atol)
    print(result.summary(str(paths[0]), str(paths[1]), show=max(0, args.show)))
    return 0 if result.same else 1


def _done_seeds(results: Path, name: str) -> set[int]:
    """Seeds of ``name`` already recorded in ``results`` (a re-run resumes instead of duplicating)."""
    if not results.exists():
        return set()
    from neuroinspect.harness.records import read_records

    return {int(r["seed"]) for r in read_records(results) if r.get("config", {}).get("experiment") == name}
