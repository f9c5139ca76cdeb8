"""Leaderboards: result records → tables aggregated over seeds → Markdown, CSV, LaTeX, HTML.

>>> from neuroinspect.leaderboards import load_records, build_tables, render
>>> tables = build_tables(load_records(["runs/bench/results.jsonl"]))  # doctest: +SKIP
>>> print(render(tables, "md"))  # doctest: +SKIP
"""

from __future__ import annotations

from neuroinspect.leaderboards.aggregate import (
    Column,
    LocatedRecord,
    Row,
    Stat,
    Table,
    build_tables,
    check_unique_run_ids,
    load_records,
    read_located,
    summarize,
)
from neuroinspect.leaderboards.render import FORMATS, render, to_csv, to_html, to_latex, to_markdown
from neuroinspect.leaderboards.reported import default_reported_path, load_reported, reported_matching

__all__ = [
    "FORMATS",
    "Column",
    "LocatedRecord",
    "Row",
    "Stat",
    "Table",
    "build_tables",
    "check_unique_run_ids",
    "default_reported_path",
    "load_records",
    "load_reported",
    "read_located",
    "render",
    "reported_matching",
    "summarize",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
]
