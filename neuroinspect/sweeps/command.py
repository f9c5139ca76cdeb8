"""``neuroinspect bench run SWEEP.toml``: the command-line side of a sweep (called by ``commands/bench.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

SWEEP_EPILOG = """A TOML file with a [sweep] table is a sweep: the grid datasets x models x finders x selectors x
editors x visualizers x seeds runs as a DAG of cached stages (one training per dataset, model and seed,
one feature pass per split, one finder run per model and class, ...), resumably (re-run the same
command after a kill), on a local process pool or on Ray:
  neuroinspect bench run configs/bundled.toml --out runs/bundled
  neuroinspect bench run configs/bundled.toml --out runs/bundled --executor ray   (a private local Ray)
"""


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The options that apply to sweeps only."""
    g = p.add_argument_group("sweeps (a config with a [sweep] table)")
    # SUPPRESS: an option not given stays out of the namespace (and out of --help's defaults)
    g.add_argument(
        "--executor",
        choices=["local", "ray"],
        default=argparse.SUPPRESS,
        help="override the sweep's executor",
    )
    g.add_argument(
        "--address", default=argparse.SUPPRESS, help='Ray address ("local" starts a private instance)'
    )
    g.add_argument(
        "--workers",
        type=int,
        default=argparse.SUPPRESS,
        help="local: worker processes (0: in this process); ray local: CPUs",
    )
    g.add_argument(
        "--plan",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the planned stage nodes (per stage, and against running every cell from scratch) and exit",
    )


def run_sweep_command(args: argparse.Namespace) -> int:
    """Load, validate and run a sweep; print its summary. Exit status 1 when some results failed."""
    from neuroinspect.commands.common import parse_int_list
    from neuroinspect.sweeps.config import load_sweep, parse_sweep
    from neuroinspect.sweeps.runner import run_sweep, summary_text

    cfg = load_sweep(args.config)
    overrides: dict[str, Any] = {}
    if getattr(args, "seeds", None):
        overrides["seeds"] = parse_int_list(args.seeds, "seeds")
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "executor", None):
        overrides["executor"] = args.executor
    if getattr(args, "address", None):
        overrides["address"] = args.address
        overrides.setdefault("executor", "ray")
    if overrides:
        raw = {**cfg.raw, **overrides}
        if raw.get("executor") != "ray":
            raw.pop("address", None)
            raw.pop("gpus_per_task", None)
        cfg = parse_sweep(raw, source=cfg.source)
    if getattr(args, "plan", False):
        from neuroinspect.sweeps.plan import build_plan, plan_text

        print(plan_text(build_plan(cfg)))
        return 0
    out = Path(args.out or f"runs/sweep-{cfg.name}")
    from neuroinspect.outputs import Outputs

    Outputs().folder(out, "--out", reuse=True)  # writable, checked before any work (a sweep resumes there)
    live = sys.stderr.isatty() and not args.no_progress
    outcome = run_sweep(cfg, out, live=live, workers=getattr(args, "workers", None))
    print(summary_text(outcome.summary))
    print(f"records: {outcome.results}\nsummary: {out / 'summary.md'}\nleaderboard: {out / 'leaderboard.md'}")
    if outcome.summary["failures"]:
        n = len(outcome.summary["failures"])
        print(
            f"{n} stage(s) failed (see {out / 'failures'}); the other results are recorded. "
            "Fix the cause and re-run the same command: only what failed or was blocked runs again.",
            file=sys.stderr,
        )
        return 1
    return 0


def is_sweep(path: str) -> bool:
    from neuroinspect.sweeps.config import is_sweep_file

    return is_sweep_file(path)


def refuse_sweep_options(args: argparse.Namespace) -> None:
    """A plain experiment config with a sweep-only option: say so instead of ignoring it."""
    for opt in ("executor", "address", "workers", "plan"):
        if getattr(args, opt, None) is not None:
            raise UserError(
                f"--{opt} applies to sweep configs (a [sweep] table) only; {args.config} is a plain experiment. "
                "Drop the option, or write the grid as a sweep (see configs/bundled.toml)."
            )
