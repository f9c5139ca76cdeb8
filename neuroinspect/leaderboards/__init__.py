"""Leaderboards: result records → tables of like with like, in four tracks → Markdown, CSV, LaTeX, HTML.

>>> from neuroinspect.leaderboards import load_records, build_tables, render
>>> tables = build_tables(load_records(["runs/bench/results.jsonl"]))  # doctest: +SKIP
>>> print(render(tables, "md"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neuroinspect.leaderboards.aggregate import (
    TRACK_TITLES,
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
from neuroinspect.leaderboards.reported import default_reported_path, load_reported


def render_compact_markdown(
    records: Sequence[Mapping[str, Any]] | Sequence[LocatedRecord],
    title: str = "Leaderboard",
    heading_level: int = 2,
    spread: str = "std",
) -> str:
    """The compact leaderboard of ``records`` (record dicts, e.g. a run's ``results.jsonl`` read with
    :func:`neuroinspect.harness.records.read_records`) as Markdown, for embedding in a report: the
    title at ``heading_level`` (tracks and tables below it), the headline columns only, no published
    rows. Raises :class:`~neuroinspect.errors.RecordError` for a record that does not validate."""
    return to_markdown(build_tables(records), spread, title, "compact", heading_level)


__all__ = [
    "FORMATS",
    "TRACK_TITLES",
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
    "render_compact_markdown",
    "summarize",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
]
