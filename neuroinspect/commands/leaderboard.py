"""``neuroinspect leaderboard build``: result records → leaderboard tables (Markdown, CSV, LaTeX, HTML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write_text

EXAMPLE = """\
Examples:
  neuroinspect leaderboard build runs/bench/results.jsonl --format md --format html --out runs/bench/leaderboard
  neuroinspect leaderboard build runs/*/results.jsonl --format md,csv,latex,html --out out/ --no-reported
  neuroinspect leaderboard build runs/bench/results.jsonl --columns all   # every metric, not the headline
  neuroinspect leaderboard build leaderboards/reported.jsonl --format md   # the published numbers alone

Four tracks (mitigation, neuron recovery, visualization faithfulness, human understanding), one table
per dataset, model and class (or class rule): rows are methods, aggregated over seeds (mean ± std
with ddof=1, n seeds; the 95% t-interval and every metric in the CSV). Published numbers from
leaderboards/reported.jsonl join a measured table only when its records' dataset fingerprint is the
official release; otherwise they are shown apart, with the reason (--no-reported leaves them out).
A record that does not follow the schema stops the build with its file:line and field (exit 2).
"""

FILE_EXT = {"md": "md", "csv": "csv", "tex": "tex", "html": "html"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "leaderboard",
        help="build leaderboard tables from result records",
        description="Leaderboard tables from result records (JSON Lines).",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION")
    b = sub.add_parser(
        "build",
        help="aggregate result records over seeds and write the tables",
        description="Aggregate result records over seeds and write the tables of the four tracks in each format: "
        "one table per dataset, model and class.",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    b.add_argument("results", nargs="+", metavar="RESULTS.jsonl", help="result record files (JSON Lines)")
    b.add_argument(
        "--format",
        dest="formats",
        action="append",
        metavar="FMT",
        default=argparse.SUPPRESS,
        help="md, csv, latex or html; repeat or comma-separate for several (none given: md)",
    )
    b.add_argument(
        "--out",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder for the <name>.<ext> files (none given: only print the Markdown)",
    )
    b.add_argument("--name", default="leaderboard", help="file name stem of the written files")
    b.add_argument("--title", default="neuroinspect leaderboard", help="document title")
    b.add_argument(
        "--reported",
        dest="include_reported",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="place the published numbers beside the measured tables of the same data (--no-reported: leave them out)",
    )
    b.add_argument(
        "--reported-file",
        type=Path,
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="file of published rows (none given: $NEUROINSPECT_REPORTED or leaderboards/reported.jsonl)",
    )
    b.add_argument(
        "--columns",
        choices=("compact", "all"),
        default="compact",
        help="compact: each track's headline columns, one row per method; all: every metric (the CSV always has all)",
    )
    b.add_argument(
        "--spread",
        choices=("std", "ci95"),
        default="std",
        help="what ± shows: standard deviation over seeds, or the 95%% t-interval half-width",
    )
    b.add_argument("--quiet", action="store_true", help="do not print the Markdown tables")
    b.set_defaults(func=run)

    def _no_action(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_no_action)
    return p


def parse_formats(values: list[str] | None) -> list[str]:
    """``["md,csv", "html"]`` → ``["md", "csv", "html"]`` (canonical names, duplicates dropped)."""
    from neuroinspect.leaderboards.render import FORMATS

    out: list[str] = []
    for value in values or ["md"]:
        for tok in value.replace(" ", ",").split(","):
            if not tok:
                continue
            kind = FORMATS.get(tok.lower())
            if kind is None:
                raise UserError(f"--format {tok!r} is not a leaderboard format; use md, csv, latex or html.")
            if kind not in out:
                out.append(kind)
    return out


def run(args: argparse.Namespace) -> int:
    from neuroinspect.leaderboards import build_tables, load_records, render
    from neuroinspect.leaderboards.reported import default_reported_path, load_reported

    formats = parse_formats(getattr(args, "formats", None))
    out_dir: Path | None = getattr(args, "out", None)
    if out_dir is not None:  # checked before any work; the tables there are derived, so rewritten
        from neuroinspect.outputs import Outputs

        Outputs().folder(out_dir, "--out", reuse=True)
    records = load_records(args.results)
    n_inputs = len(records)
    reported = []
    if args.include_reported:
        reported_path = getattr(args, "reported_file", None) or default_reported_path()
        given = {Path(p).resolve() for p in args.results}
        if reported_path.resolve() not in given:
            reported = load_reported(reported_path)
    if not records:
        raise UserError(
            f"no result records in {', '.join(args.results)}; run `neuroinspect bench run CONFIG.toml` first."
        )
    tables = build_tables(records, reported)
    markdown = render(tables, "md", args.spread, args.title, args.columns)
    if out_dir is not None:
        written = []
        for kind in formats:
            text = markdown if kind == "md" else render(tables, kind, args.spread, args.title, args.columns)
            written.append(atomic_write_text(out_dir / f"{args.name}.{FILE_EXT[kind]}", text))
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    if not args.quiet:
        print(markdown)
    n_rows = sum(len(t.rows) for t in tables)
    print(
        f"{len(tables)} table(s), {n_rows} row(s) from {n_inputs} record(s) in {len(args.results)} file(s).",
        file=sys.stderr,
    )
    return 0
