"""Leaderboard tables → Markdown, CSV, LaTeX (booktabs) and one self-contained sortable HTML page.

Every format shows the same tables (:func:`~neuroinspect.leaderboards.aggregate.build_tables`),
grouped by track (Mitigation, Neuron recovery, Visualization faithfulness, Human understanding).
``columns="compact"`` (the default) shows the headline columns of each track, one row per method,
mean ± spread; ``columns="all"`` every metric. Accuracy-type metrics are percentages;
``spread="std"`` shows ± the standard deviation over seeds (ddof=1), ``spread="ci95"`` ± the
half-width of the 95% t-interval. The CSV always has every column: one line per row of every table,
with the mean, std, ci95 and n of each metric in separate columns (percentage points for
accuracy-type metrics) so it reads back as numbers.

The output depends only on the records: no dates, no paths, no random order, so a build from the
same records gives the same bytes (the published tables in ``leaderboards/`` are checked that way).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

from neuroinspect.leaderboards.aggregate import (
    SELECTION_SHORT,
    TRACK_ORDER,
    TRACK_TITLES,
    Column,
    Row,
    Stat,
    Table,
    metric_order,
    references,
)

FORMATS = {"md": "md", "markdown": "md", "csv": "csv", "latex": "tex", "tex": "tex", "html": "html"}
SPREADS = ("std", "ci95")
COLUMN_SETS = ("compact", "all")
MISSING = "–"
GROUP_MARK = "†"


@dataclass(frozen=True)
class Cell:
    """A formatted cell: ``text`` without markup, ``main``, ``spread`` and ``interval`` parts (for
    formats that typeset ±), and ``sort`` (the number behind it, for sorting)."""

    main: str
    spread: str | None = None
    sort: float | None = None
    interval: str | None = None

    @property
    def text(self) -> str:
        out = f"{self.main} ± {self.spread}" if self.spread else self.main
        return f"{out} {self.interval}" if self.interval else out


def _spread_of(stat: Stat, spread: str) -> float | None:
    return stat.std if spread == "std" else stat.ci95


def _formats(column: Column) -> tuple[float, str, str]:
    if column.percent:
        d = column.decimals
        return 100.0, ("{:+.%df}" if column.signed else "{:.%df}") % d, "{:.%df}" % d  # noqa: UP031
    # plain numbers (AUCs, percentiles, logits): three significant digits, the spread two
    return 1.0, ("{:+.3g}" if column.signed else "{:.3g}"), "{:.2g}"


def format_stat(stat: Stat | None, column: Column, spread: str = "std") -> Cell:
    """``Stat(0.7243, 0.012)`` in a percent column → ``72.43 ± 1.20``; gains carry a sign."""
    if stat is None or stat.mean is None:
        return Cell(MISSING)
    s = _spread_of(stat, spread)
    scale, fmt, sfmt = _formats(column)
    main = fmt.format(scale * stat.mean)
    return Cell(main, sfmt.format(scale * s) if s is not None else None, scale * stat.mean)


def format_cell(row: Row, column: Column, spread: str = "std") -> Cell:
    """The cell of ``column`` in ``row``: a statistic over seeds, a count, or (one run or a published
    row) a value with the interval or ± the record itself carries."""
    stat = row.metrics.get(column.key)
    if stat is None or stat.mean is None:
        return Cell(MISSING)
    single = row.n_runs == 1 or row.source == "reported"
    scale, fmt, sfmt = _formats(column)
    if column.kind == "int":
        v = stat.mean
        main = f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
        run_spread = None if single else _spread_of(stat, spread)
        return Cell(main, None if run_spread is None else f"{run_spread:.2g}", v)
    if column.kind == "interval" and single and column.low_key and column.high_key:
        lo, hi = row.metrics.get(column.low_key), row.metrics.get(column.high_key)
        if lo is not None and hi is not None and lo.mean is not None and hi.mean is not None:
            interval = f"[{sfmt.format(scale * lo.mean)}, {sfmt.format(scale * hi.mean)}]"
            return Cell(fmt.format(scale * stat.mean), None, scale * stat.mean, interval)
    if column.kind == "pm" and single and column.spread_key:
        own = row.metrics.get(column.spread_key)
        if own is not None and own.mean is not None:
            return Cell(fmt.format(scale * stat.mean), sfmt.format(scale * own.mean), scale * stat.mean)
    return format_stat(stat, column, spread)


def _source_text(row: Row, refs: Sequence[str]) -> str:
    if row.source == "reported" and row.citation in refs:
        return f"reported [{refs.index(row.citation) + 1}]"
    return row.source


def _compact_ids(table: Table) -> list[str]:
    rows = table.rows
    ids = ["method"]
    if len({r.model for r in rows}) > 1 or table.model is None:
        ids.append("model")
    if table.task not in ("visualization", "study") and len({r.class_text for r in rows}) > 1:
        ids.append("class_idx")
    if any(r.setting for r in rows):
        ids.append("setting")
    if table.varying_selection:
        ids.append("selection")
    if table.task == "study":
        ids.append("participants")
    if any(r.source == "reported" for r in rows):
        ids.append("source")
    if table.task != "study" and any(r.n_seeds is not None for r in rows):
        ids.append("n")
    if table.task == "visualization":
        ids.append("pairs")
    return ids


def _all_ids(table: Table) -> list[str]:
    ids = ["method", "model", "class_idx"]
    if any(r.setting for r in table.rows):
        ids.append("setting")
    if any(r.selection for r in table.rows):
        ids.append("selection")
    if table.task == "study":
        ids.append("participants")
    ids += ["source", "n"]
    if table.task == "visualization":
        ids.append("pairs")
    return ids


ID_HEADERS = {
    "method": "Method",
    "model": "Model",
    "class_idx": "Class",
    "setting": "Setting",
    "selection": "Selection",
    "participants": "Data",
    "source": "Source",
    "n": "n",
    "pairs": "Pairs",
}


def identity_columns(table: Table, columns: str = "compact") -> list[tuple[str, str]]:
    """(key, header) of the descriptive columns this table needs in the ``columns`` view."""
    ids = _compact_ids(table) if columns == "compact" else _all_ids(table)
    return [(k, ID_HEADERS[k]) for k in ids]


def identity_cell(
    row: Row, key: str, refs: Sequence[str], table: Table | None = None, compact: bool = True
) -> Cell:
    if key == "method":
        return Cell(row.method_label + (f" {GROUP_MARK}" if row.uses_group_labels else ""))
    if key == "model":
        return Cell(row.model)
    if key == "class_idx":
        return Cell(row.class_text, sort=row.class_idx)
    if key == "setting":
        return Cell(row.setting or MISSING)
    if key == "selection":
        if compact and row.selection_raw in SELECTION_SHORT:
            return Cell(SELECTION_SHORT[row.selection_raw])  # type: ignore[index]
        if compact and row.selection:
            return Cell(row.selection.split(" (", 1)[0])  # the whole rule is in the table's notes
        return Cell(row.selection or "not recorded")
    if key == "participants":
        return Cell(row.participants if row.participants not in (None, "None") else "not stated")
    if key == "source":
        return Cell(_source_text(row, refs))
    if key == "n":
        n = row.n_seeds
        if n is None:
            return Cell(MISSING)
        if (
            table is not None
            and row.source != "reported"
            and table.benchmark_seeds
            and n < table.benchmark_seeds
        ):
            return Cell(f"{n} of {table.benchmark_seeds}", sort=n)
        return Cell(str(n), sort=n)
    if key == "pairs":
        return Cell(str(row.n_runs), sort=row.n_runs)
    raise KeyError(key)


def shown_columns(table: Table, columns: str = "compact") -> list[Column]:
    """The metric columns of the ``columns`` view: the headline ones, or every displayable one."""
    if columns == "compact":
        return [c for c in table.columns if c.headline]
    return [c for c in table.columns if c.display]


def _grid(
    table: Table, refs: Sequence[str], spread: str, columns: str = "compact"
) -> tuple[list[str], list[list[Cell]], int, list[Column]]:
    ids = identity_columns(table, columns)
    shown = shown_columns(table, columns)
    compact = columns == "compact"
    header = [h for _, h in ids] + [c.label for c in shown]
    body = [
        [identity_cell(r, k, refs, table, compact) for k, _ in ids]
        + [format_cell(r, c, spread) for c in shown]
        for r in table.rows
    ]
    return header, body, len(ids), shown


def _preamble(tables: Sequence[Table], spread: str, columns: str, page: bool = False) -> list[str]:
    measured = sum(r.n_runs for t in tables for r in t.rows if r.source != "reported")
    reported = sum(1 for t in tables for r in t.rows if r.source == "reported")
    what = (
        "the standard deviation over seeds (ddof=1)"
        if spread == "std"
        else "the half-width of the 95% Student-t interval over seeds"
    )
    if page:
        view = "Compact view: the headline columns of each track; tick “all columns” for every metric."
    elif columns == "compact":
        view = "Compact view: the headline columns of each track; every metric is in the CSV and in `--columns all`."
    else:
        view = "All columns."
    return [
        f"Built from {measured} measured run(s) and {reported} published row(s) by `neuroinspect leaderboard build`. "
        + view,
        f"Accuracy-type numbers are percentages; ± is {what}; n is the number of seeds. "
        "Δ = after − before, computed per seed. Published rows (Source: reported [i]) copy the publication: "
        "its spread where it gives one, n where known.",
    ]


def _table_notes(table: Table) -> list[str]:
    notes = list(table.notes)
    if table.sort_key:
        col = next((c for c in table.columns if c.key == table.sort_key), None)
        if col:
            order = (
                "lowest first" if table.sort_key in ("faithfulness_deletion_auc", "p_value") else "best first"
            )
            notes.append(f"Sorted by {col.label}, {order}.")
    return notes


def tracks(tables: Sequence[Table]) -> list[tuple[str, str, list[Table]]]:
    """``(task, title, tables)`` per track that has tables, in :data:`TRACK_ORDER`."""
    order = [t for t in TRACK_ORDER if any(x.task == t for x in tables)]
    order += sorted({x.task for x in tables} - set(order))
    return [(task, TRACK_TITLES.get(task, task), [x for x in tables if x.task == task]) for task in order]


def _anchor(text: str) -> str:
    """GitHub's heading anchor: lower case, spaces to hyphens, punctuation dropped."""
    out = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return out.replace(" ", "-")


# ------------------------------------------------------------------------------------------ Markdown


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, refs: Sequence[str], spread: str = "std", columns: str = "compact") -> str:
    """One table as a GitHub-flavoured Markdown table (no heading)."""
    header, body, n_id, _ = _grid(table, refs, spread, columns)
    align = ["---"] * n_id + ["---:"] * (len(header) - n_id)
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c.text) for c in cells) + " |" for cells in body]
    return "\n".join(lines)


def to_markdown(
    tables: Sequence[Table],
    spread: str = "std",
    title: str = "Leaderboard",
    columns: str = "compact",
    heading_level: int = 1,
) -> str:
    """A Markdown document: preamble, one section per track with one sub-section per table (notes,
    table), references. ``heading_level``: the level of the title (tracks one below, tables two)."""
    refs = references(tables)
    h = "#" * heading_level
    by_track = tracks(tables)
    out = [f"{h} {title}", "", *_preamble(tables, spread, columns), ""]
    if len(by_track) > 1:
        out += [
            "Tracks: " + " · ".join(f"[{name}](#{_anchor(name)}) ({len(ts)})" for _, name, ts in by_track),
            "",
        ]
    for _, name, ts in by_track:
        out += [f"{h}# {name}", ""]
        for t in ts:
            out += [f"{h}## {t.subtitle}", ""]
            out += [f"- {n}" for n in _table_notes(t)]
            out += ["", markdown_table(t, refs, spread, columns), ""]
    if refs:
        out += [f"{h}# References", ""] + [f"{i}. {_md_escape(r)}" for i, r in enumerate(refs, 1)] + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- CSV

CSV_ID_FIELDS = (
    "table",
    "track",
    "kind",
    "task",
    "task_type",
    "dataset",
    "dataset_params",
    "data_sha256",
    "official_release",
    "method",
    "uses_group_labels",
    "participants",
    "model",
    "class_idx",
    "class_rule",
    "classes",
    "setting",
    "selection",
    "source",
    "citation",
    "n_seeds",
    "benchmark_seeds",
    "n_runs",
    "seeds",
)


def _num(x: float | None, scale: float) -> str:
    return "" if x is None else repr(round(scale * x, 6))


def _csv_order(key: str, first_seen: int) -> tuple[int, int, int, int]:
    """Mitigation columns metric by metric (before, after, gain), then the rest as first seen."""
    phase, _, metric = key.partition(".")
    if phase in ("before", "after", "gain"):
        return (0, metric_order(metric)[0], ("before", "after", "gain").index(phase), first_seen)
    return (1, 0, 0, first_seen)


def to_csv(tables: Sequence[Table]) -> str:
    """One line per row of every table. For each metric ``m``: ``m`` (mean), ``m_std``, ``m_ci95``,
    ``m_n``; accuracy-type metrics in percentage points. Empty where a value does not exist."""
    metric_keys: list[str] = []
    for t in tables:
        metric_keys.extend(c.key for c in t.columns if c.key not in metric_keys)
    first_seen = {k: i for i, k in enumerate(metric_keys)}
    metric_keys.sort(key=lambda k: _csv_order(k, first_seen[k]))
    fields = list(CSV_ID_FIELDS) + [
        f"{k}{suffix}" for k in metric_keys for suffix in ("", "_std", "_ci95", "_n")
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for t in tables:
        for r in t.rows:
            line: dict[str, object] = {
                "table": t.slug,
                "track": t.track_title,
                "kind": t.kind,
                "task": r.task,
                "task_type": r.task_type or "",
                "dataset": r.dataset,
                "dataset_params": json.dumps(t.dataset_params, sort_keys=True) if t.dataset_params else "",
                "data_sha256": (r.fingerprint or {}).get("sha256", "") if r.source != "reported" else "",
                "official_release": ""
                if t.official is None or r.source == "reported"
                else str(t.official).lower(),
                "method": r.method_label,
                "uses_group_labels": "" if r.uses_group_labels is None else str(r.uses_group_labels).lower(),
                "participants": r.participants or "",
                "model": r.model,
                "class_idx": "" if r.class_idx is None or r.class_rule else r.class_idx,
                "class_rule": r.class_rule or "",
                "classes": " ".join(str(c) for c in r.classes),
                "setting": r.setting,
                "selection": r.selection or "",
                "source": r.source,
                "citation": r.citation or "",
                "n_seeds": "" if r.n_seeds is None else r.n_seeds,
                "benchmark_seeds": t.benchmark_seeds or "" if r.source != "reported" else "",
                "n_runs": r.n_runs if r.source != "reported" else "",
                "seeds": " ".join(str(s) for s in sorted(set(r.seeds))) if r.source != "reported" else "",
            }
            for c in t.columns:
                st = r.metrics.get(c.key)
                if st is None:
                    continue
                scale = 100.0 if c.percent else 1.0
                line[c.key] = _num(st.mean, scale)
                line[f"{c.key}_std"] = _num(st.std, scale)
                line[f"{c.key}_ci95"] = _num(st.ci95, scale)
                line[f"{c.key}_n"] = "" if st.n is None else st.n
            writer.writerow(line)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "†": r"\textsuperscript{\dag}",
    "—": "---",
    "–": "--",
    "−": "$-$",
    "→": r"$\rightarrow$",
    "✓": r"$\surd$",
    "✗": r"$\times$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "·": r"$\cdot$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``_`` → ``\\_``, ``%`` → ``\\%``, ...) and typeset ±, Δ, †."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(table: Table, refs: Sequence[str], spread: str = "std", columns: str = "compact") -> str:
    """One ``table`` environment with a booktabs ``tabular``; notes go into the caption."""
    header, body, n_id, _ = _grid(table, refs, spread, columns)
    spec = "l" * n_id + "r" * (len(header) - n_id)

    def cell(c: Cell) -> str:
        # a leading minus of a number is a math minus, not a hyphen
        main = (
            f"$-${latex_escape(c.main[1:])}"
            if c.sort is not None and c.main.startswith("-")
            else latex_escape(c.main)
        )
        out = main if c.spread is None else f"{main} $\\pm$ {latex_escape(c.spread)}"
        return f"{out} {latex_escape(c.interval)}" if c.interval else out

    caption = latex_escape(" ".join([table.title + ".", *_table_notes(table)]))
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\small",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{table.slug}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(cell(c) for c in cells) + r" \\" for cells in body),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines)


def to_latex(
    tables: Sequence[Table], spread: str = "std", title: str = "Leaderboard", columns: str = "compact"
) -> str:
    """Tables for ``\\input{}`` into a paper (needs ``\\usepackage{booktabs}``), then the references."""
    refs = references(tables)
    out = [
        f"% {latex_escape(title)}: generated by `neuroinspect leaderboard build`; needs \\usepackage{{booktabs}}.",
        *(f"% {latex_escape(p)}" for p in _preamble(tables, spread, columns)),
        "",
    ]
    for _, name, ts in tracks(tables):
        out += [f"% ---- {latex_escape(name)}", ""]
        for t in ts:
            out += [latex_table(t, refs, spread, columns), ""]
    if refs:
        out += [r"\paragraph{References of reported rows.}", r"\begin{enumerate}"]
        out += [rf"\item {latex_escape(r)}" for r in refs]
        out += [r"\end{enumerate}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink: #1b1b1b; --muted: #5a5a5a; --rule: #d9d9d9; --head: #f3f4f6; --accent: #0b5cad; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem 2rem 3rem;
  color: var(--ink); line-height: 1.4; max-width: 110rem; }
h1 { font-size: 1.55rem; margin-bottom: 0.4rem; }
h2 { font-size: 1.3rem; margin-top: 2.4rem; padding-bottom: 0.25rem; border-bottom: 2px solid var(--ink); }
h3 { font-size: 1.02rem; margin: 1.6rem 0 0.3rem; }
p.lead { color: var(--muted); font-size: 0.92rem; margin: 0.2rem 0; max-width: 70rem; }
nav.tracks { margin: 0.9rem 0; font-size: 0.95rem; }
nav.tracks a { color: var(--accent); margin-right: 1.1rem; text-decoration: none; }
nav.tracks a:hover { text-decoration: underline; }
label.toggle { font-size: 0.9rem; color: var(--muted); cursor: pointer; }
ul.notes { margin: 0.2rem 0 0.5rem; padding-left: 1.2rem; color: var(--muted); font-size: 0.85rem; max-width: 70rem; }
.wrap { overflow-x: auto; }
table.lb { border-collapse: collapse; font-size: 0.88rem; margin: 0.3rem 0 0.6rem; }
table.lb th, table.lb td { padding: 0.28rem 0.65rem; border-bottom: 1px solid var(--rule); white-space: nowrap; }
table.lb thead th { cursor: pointer; user-select: none; border-bottom: 2px solid #444; text-align: left;
  background: var(--head); white-space: normal; max-width: 7.5rem; vertical-align: bottom; }
table.lb td.long { white-space: normal; min-width: 9rem; max-width: 18rem; }
table.lb th.num, table.lb td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.lb th.sorted { color: var(--accent); }
table.lb th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.lb th[aria-sort="descending"]::after { content: " \\25BC"; }
table.lb tbody tr:hover { background: #f7fafc; }
table.lb tr.reported td { color: var(--muted); font-style: italic; }
table.lb tr.simulated td { background: #fff7e6; }
table.lb td.short { color: #a15c00; font-weight: 600; }
span.tag { font-size: 0.72rem; font-style: normal; border-radius: 0.6rem; padding: 0.05rem 0.45rem; margin-left: 0.35rem; }
span.tag.sim { background: #ffe3a3; color: #6b4500; }
span.tag.pub { background: #e5e7eb; color: #374151; }
body:not(.all) .x { display: none; }
ol.refs { font-size: 0.88rem; color: var(--muted); }
"""

# Plain JS, no library: click a header to sort its column (numbers by value, text otherwise; empty
# cells last in both directions); the checkbox shows the columns outside the compact view.
_JS = """
document.querySelectorAll("table.lb").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); h.classList.remove("sorted"); });
      th.setAttribute("aria-sort", dir);
      th.classList.add("sorted");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var s = cell.getAttribute("data-sort");
        if (s !== null && s !== "") { return {num: true, v: parseFloat(s)}; }
        var t = cell.textContent.trim();
        return {num: false, v: (t === "\\u2013" ? "" : t.toLowerCase())};
      }
      rows.sort(function (a, b) {
        var ka = key(a), kb = key(b);
        var ea = ka.v === "", eb = kb.v === "";
        if (ea || eb) { return ea === eb ? 0 : (ea ? 1 : -1); }
        var c = (ka.num && kb.num) ? ka.v - kb.v : String(ka.v).localeCompare(String(kb.v));
        return dir === "ascending" ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
var toggle = document.getElementById("all-columns");
if (toggle) {
  toggle.checked = document.body.classList.contains("all");
  toggle.addEventListener("change", function () { document.body.classList.toggle("all", toggle.checked); });
}
"""


def html_table(table: Table, refs: Sequence[str], spread: str = "std", columns: str = "compact") -> str:
    """One ``<table class="lb">`` with every displayable column: the compact view's columns first,
    then the others with class ``x`` (hidden until "all columns" is ticked), so ticking it does not
    move what was on screen. Numeric cells carry ``data-sort`` with their value."""
    e = html.escape
    compact_ids = identity_columns(table, "compact")
    compact_metrics = shown_columns(table, "compact")
    taken_ids = {k for k, _ in compact_ids}
    taken_metrics = {c.key for c in compact_metrics}
    # (an identity column's (key, header) or a metric Column, hidden in the compact view)
    spec: list[tuple[tuple[str, str] | Column, bool]] = [(kh, False) for kh in compact_ids]
    spec += [(c, False) for c in compact_metrics]
    spec += [(kh, True) for kh in identity_columns(table, "all") if kh[0] not in taken_ids]
    spec += [(c, True) for c in shown_columns(table, "all") if c.key not in taken_metrics]
    ths = []
    for what, hidden in spec:
        extra = " x" if hidden else ""
        if isinstance(what, Column):
            tip = f' title="{e(what.help)}"' if what.help else ""
            ths.append(f'<th class="num{extra}" scope="col"{tip}>{e(what.label)}</th>')
        else:
            ths.append(f'<th class="txt{extra}" scope="col">{e(what[1])}</th>')
    trs = []
    for row in table.rows:
        tds = []
        for what, hidden in spec:
            extra = " x" if hidden else ""
            if isinstance(what, Column):
                c = format_cell(row, what, spread)
                sort = "" if c.sort is None else f' data-sort="{c.sort!r}"'
                tds.append(f'<td class="num{extra}"{sort}>{e(c.text)}</td>')
                continue
            k = what[0]
            c = identity_cell(row, k, refs, table, compact=True)
            cls = "txt" + extra + (" short" if k == "n" and " of " in c.main else "")
            cls += " long" if k in ("setting", "selection") else ""
            sort = "" if c.sort is None else f' data-sort="{c.sort!r}"'
            inner = e(c.text)
            if k == "method" and row.simulated:
                inner += '<span class="tag sim">simulated</span>'
            if k == "source" and row.source == "reported" and row.citation in refs:
                inner = f'<a href="#ref-{refs.index(row.citation) + 1}">{inner}</a>'
            tds.append(f'<td class="{cls}"{sort}>{inner}</td>')
        classes = [
            x for x, on in (("reported", row.source == "reported"), ("simulated", row.simulated)) if on
        ]
        cls_attr = f' class="{" ".join(classes)}"' if classes else ""
        title = f' title="{e(row.citation)}"' if row.citation else ""
        trs.append(f"<tr{cls_attr}{title}>{''.join(tds)}</tr>")
    return (
        f'<div class="wrap"><table class="lb" id="{e(table.slug)}">\n<thead><tr>{"".join(ths)}</tr></thead>\n<tbody>\n'
        + "\n".join(trs)
        + "\n</tbody>\n</table></div>"
    )


def to_html(
    tables: Sequence[Table], spread: str = "std", title: str = "Leaderboard", columns: str = "compact"
) -> str:
    """One standalone page (inline CSS and JS, nothing fetched: it opens offline) with the tracks as
    sections, every table sortable by clicking a header, and a switch between the compact and the
    full set of columns (``columns`` sets which one the page opens with)."""
    refs = references(tables)
    e = html.escape
    by_track = tracks(tables)
    body_cls = ' class="all"' if columns == "all" else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        f"<body{body_cls}>",
        f"<h1>{e(title)}</h1>",
        *(f'<p class="lead">{e(p)}</p>' for p in _preamble(tables, spread, columns, page=True)),
        '<nav class="tracks">'
        + "".join(f'<a href="#{e(_anchor(name))}">{e(name)} ({len(ts)})</a>' for _, name, ts in by_track)
        + '<label class="toggle"><input type="checkbox" id="all-columns"> all columns</label></nav>',
    ]
    for _, name, ts in by_track:
        parts.append(f'<section id="{e(_anchor(name))}">')
        parts.append(f"<h2>{e(name)}</h2>")
        for t in ts:
            tag = '<span class="tag pub">published</span>' if t.kind == "published" else ""
            parts.append(f'<h3 id="h-{e(t.slug)}">{e(t.subtitle)}{tag}</h3>')
            parts.append(
                '<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in _table_notes(t)) + "</ul>"
            )
            parts.append(html_table(t, refs, spread, columns))
        parts.append("</section>")
    if refs:
        parts.append(
            '<section id="references"><h2>References</h2>\n<ol class="refs">'
            + "".join(f'<li id="ref-{i}">{e(r)}</li>' for i, r in enumerate(refs, 1))
            + "</ol></section>"
        )
    parts += [f"<script>{_JS}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


def render(
    tables: Sequence[Table],
    fmt: str,
    spread: str = "std",
    title: str = "Leaderboard",
    columns: str = "compact",
) -> str:
    """``tables`` in format ``fmt`` (``md``, ``csv``, ``latex`` or ``html``); ``columns``: ``compact``
    (headline columns) or ``all`` (the CSV always has every column)."""
    if columns not in COLUMN_SETS:
        raise ValueError(f"unknown column set {columns!r}")
    kind = FORMATS.get(fmt)
    if kind == "md":
        return to_markdown(tables, spread, title, columns)
    if kind == "csv":
        return to_csv(tables)
    if kind == "tex":
        return to_latex(tables, spread, title, columns)
    if kind == "html":
        return to_html(tables, spread, title, columns)
    raise ValueError(f"unknown format {fmt!r}")
