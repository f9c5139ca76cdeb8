"""Leaderboard tables → Markdown, CSV, LaTeX (booktabs) and a standalone sortable HTML page.

Every format shows the same tables (one per task and dataset, :func:`~neuroinspect.leaderboards.
aggregate.build_tables`) with the same identity columns (method, model, class, setting, selection,
source, n) and metric columns. Accuracy-type metrics are percentages; ``spread="std"`` shows
± the standard deviation over seeds (ddof=1), ``spread="ci95"`` ± the half-width of the 95%
t-interval. The CSV has one line per row of every table, with the mean, std, ci95 and n of each
metric in separate columns (percentage points for accuracy-type metrics) so it reads back as numbers;
it also keeps the count columns (integer metrics) that the other formats leave out.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

from neuroinspect.leaderboards.aggregate import Column, Row, Stat, Table, metric_order, references

FORMATS = {"md": "md", "markdown": "md", "csv": "csv", "latex": "tex", "tex": "tex", "html": "html"}
SPREADS = ("std", "ci95")
MISSING = "–"
GROUP_MARK = "†"


@dataclass(frozen=True)
class Cell:
    """A formatted cell: ``text`` without markup, ``main`` and ``spread`` parts (for formats that
    typeset ±), and ``sort`` (the number behind it, for sorting)."""

    main: str
    spread: str | None = None
    sort: float | None = None

    @property
    def text(self) -> str:
        return f"{self.main} ± {self.spread}" if self.spread else self.main


def _spread_of(stat: Stat, spread: str) -> float | None:
    return stat.std if spread == "std" else stat.ci95


def format_stat(stat: Stat | None, column: Column, spread: str = "std") -> Cell:
    """``Stat(0.7243, 0.012)`` in a percent column → ``72.43 ± 1.20``; gains carry a sign."""
    if stat is None or stat.mean is None:
        return Cell(MISSING)
    s = _spread_of(stat, spread)
    if column.percent:
        scale, fmt, sfmt = 100.0, ("{:+.2f}" if column.signed else "{:.2f}"), "{:.2f}"
    else:
        scale, fmt, sfmt = 1.0, ("{:+.4g}" if column.signed else "{:.4g}"), "{:.2g}"
    main = fmt.format(scale * stat.mean)
    return Cell(main, sfmt.format(scale * s) if s is not None else None, scale * stat.mean)


def _source_text(row: Row, refs: Sequence[str]) -> str:
    if row.source == "reported" and row.citation in refs:
        return f"reported [{refs.index(row.citation) + 1}]"
    return row.source


def identity_columns(table: Table) -> list[tuple[str, str]]:
    """(key, header) of the descriptive columns this table needs."""
    cols = [("method", "Method"), ("model", "Model"), ("class_idx", "Class")]
    if any(r.setting for r in table.rows):
        cols.append(("setting", "Setting"))
    if table.varying_selection:
        cols.append(("selection", "Selection"))
    cols += [("source", "Source"), ("n", "n")]
    return cols


def identity_cell(row: Row, key: str, refs: Sequence[str]) -> Cell:
    if key == "method":
        return Cell(row.method_label + (f" {GROUP_MARK}" if row.uses_group_labels else ""))
    if key == "model":
        return Cell(row.model)
    if key == "class_idx":
        return Cell("all" if row.class_idx is None else str(row.class_idx), sort=row.class_idx)
    if key == "setting":
        return Cell(row.setting or MISSING)
    if key == "selection":
        return Cell(row.selection or "not recorded")
    if key == "source":
        return Cell(_source_text(row, refs))
    if key == "n":
        n = row.n_seeds
        return Cell(MISSING if n is None else str(n), sort=n)
    raise KeyError(key)


def _grid(table: Table, refs: Sequence[str], spread: str) -> tuple[list[str], list[list[Cell]], int]:
    ids = identity_columns(table)
    shown = [c for c in table.columns if c.display]
    header = [h for _, h in ids] + [c.label for c in shown]
    body = [
        [identity_cell(r, k, refs) for k, _ in ids]
        + [format_stat(r.metrics.get(c.key), c, spread) for c in shown]
        for r in table.rows
    ]
    return header, body, len(ids)


def _preamble(tables: Sequence[Table], spread: str) -> list[str]:
    measured = sum(r.n_runs for t in tables for r in t.rows if r.source != "reported")
    reported = sum(1 for t in tables for r in t.rows if r.source == "reported")
    what = (
        "standard deviation over seeds (ddof=1)"
        if spread == "std"
        else "half-width of the 95% Student-t interval over seeds"
    )
    return [
        f"Built from {measured} measured run(s) and {reported} reported row(s) by `neuroinspect leaderboard build`.",
        f"Accuracy-type numbers are percentages; ± is the {what}; n is the number of seeds. "
        "Reported rows copy the publication (its spread where it gives one; n where known). "
        "Δ = after − before, computed per seed.",
    ]


def _table_notes(table: Table, spread: str) -> list[str]:
    notes = list(table.notes)
    if table.sort_key:
        col = next((c for c in table.columns if c.key == table.sort_key), None)
        if col:
            notes.append(f"Sorted by {col.label}, best first.")
    return notes


# ------------------------------------------------------------------------------------------ Markdown


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, refs: Sequence[str], spread: str = "std") -> str:
    """One table as a GitHub-flavoured Markdown table (no heading)."""
    header, body, n_id = _grid(table, refs, spread)
    align = ["---"] * n_id + ["---:"] * (len(header) - n_id)
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c.text) for c in cells) + " |" for cells in body]
    return "\n".join(lines)


def to_markdown(tables: Sequence[Table], spread: str = "std", title: str = "Leaderboard") -> str:
    """A Markdown document: preamble, one section per table (notes, table), references."""
    refs = references(tables)
    out = [f"# {title}", "", *_preamble(tables, spread), ""]
    for t in tables:
        out += [f"## {t.title}", ""]
        out += [f"- {n}" for n in _table_notes(t, spread)]
        out += ["", markdown_table(t, refs, spread), ""]
    if refs:
        out += ["## References", ""] + [f"{i}. {_md_escape(r)}" for i, r in enumerate(refs, 1)] + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- CSV

CSV_ID_FIELDS = (
    "table",
    "task",
    "dataset",
    "dataset_params",
    "method",
    "uses_group_labels",
    "model",
    "class_idx",
    "setting",
    "selection",
    "source",
    "citation",
    "n_seeds",
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
                "task": r.task,
                "dataset": r.dataset,
                "dataset_params": json.dumps(t.dataset_params, sort_keys=True) if t.dataset_params else "",
                "method": r.method_label,
                "uses_group_labels": "" if r.uses_group_labels is None else str(r.uses_group_labels).lower(),
                "model": r.model,
                "class_idx": "" if r.class_idx is None else r.class_idx,
                "setting": r.setting,
                "selection": r.selection or "",
                "source": r.source,
                "citation": r.citation or "",
                "n_seeds": "" if r.n_seeds is None else r.n_seeds,
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
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``_`` → ``\\_``, ``%`` → ``\\%``, ...) and typeset ±, Δ, †."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(table: Table, refs: Sequence[str], spread: str = "std") -> str:
    """One ``table`` environment with a booktabs ``tabular``; notes go into the caption."""
    header, body, n_id = _grid(table, refs, spread)
    spec = "l" * n_id + "r" * (len(header) - n_id)

    def cell(c: Cell) -> str:
        # a leading minus of a number is a math minus, not a hyphen
        main = (
            f"$-${latex_escape(c.main[1:])}"
            if c.sort is not None and c.main.startswith("-")
            else latex_escape(c.main)
        )
        return main if c.spread is None else f"{main} $\\pm$ {latex_escape(c.spread)}"

    caption = latex_escape(" ".join([table.title + ".", *_table_notes(table, spread)]))
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


def to_latex(tables: Sequence[Table], spread: str = "std", title: str = "Leaderboard") -> str:
    """Tables for ``\\input{}`` into a paper (needs ``\\usepackage{booktabs}``), then the references."""
    refs = references(tables)
    out = [
        f"% {latex_escape(title)}: generated by `neuroinspect leaderboard build`; needs \\usepackage{{booktabs}}.",
        *(f"% {latex_escape(p)}" for p in _preamble(tables, spread)),
        "",
    ]
    for t in tables:
        out += [latex_table(t, refs, spread), ""]
    if refs:
        out += [r"\paragraph{References of reported rows.}", r"\begin{enumerate}"]
        out += [rf"\item {latex_escape(r)}" for r in refs]
        out += [r"\end{enumerate}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1b1b1b; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
p.note, li { color: #444; font-size: 0.9rem; }
table.lb { border-collapse: collapse; font-size: 0.88rem; margin: 0.6rem 0; }
table.lb th, table.lb td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; white-space: nowrap; }
table.lb th { cursor: pointer; user-select: none; border-bottom: 2px solid #333; text-align: left; background: #f6f6f6; }
table.lb th.num, table.lb td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.lb th[data-dir="asc"]::after { content: " \\25B2"; } table.lb th[data-dir="desc"]::after { content: " \\25BC"; }
table.lb tr.reported td { color: #555; font-style: italic; }
"""

# Plain JS, no library: click a header to sort its column (numbers by value, text otherwise; empty last).
_JS = """
document.querySelectorAll("table.lb").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.getAttribute("data-dir") === "desc" ? "asc" : "desc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", dir);
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
        return dir === "asc" ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def html_table(table: Table, refs: Sequence[str], spread: str = "std") -> str:
    """One ``<table class="lb">``; numeric cells carry ``data-sort`` with their value."""
    header, body, n_id = _grid(table, refs, spread)
    e = html.escape
    ths = "".join(f'<th class="{"num" if i >= n_id else "txt"}">{e(h)}</th>' for i, h in enumerate(header))
    trs = []
    for row, cells in zip(table.rows, body, strict=True):
        tds = []
        for i, c in enumerate(cells):
            sort = "" if c.sort is None else f' data-sort="{c.sort!r}"'
            cls = "num" if i >= n_id else "txt"
            tds.append(f'<td class="{cls}"{sort}>{e(c.text)}</td>')
        cls = ' class="reported"' if row.source == "reported" else ""
        title = f' title="{e(row.citation)}"' if row.citation else ""
        trs.append(f"<tr{cls}{title}>{''.join(tds)}</tr>")
    return (
        f'<table class="lb" id="{e(table.slug)}">\n<thead><tr>{ths}</tr></thead>\n<tbody>\n'
        + "\n".join(trs)
        + "\n</tbody>\n</table>"
    )


def to_html(tables: Sequence[Table], spread: str = "std", title: str = "Leaderboard") -> str:
    """A standalone page (inline CSS and JS, nothing fetched) with every table, sortable by clicking a header."""
    refs = references(tables)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        *(f'<p class="note">{e(p)}</p>' for p in _preamble(tables, spread)),
    ]
    for t in tables:
        parts.append(f"<h2>{e(t.title)}</h2>")
        parts += [f'<p class="note">{e(n)}</p>' for n in _table_notes(t, spread)]
        parts.append(html_table(t, refs, spread))
    if refs:
        parts.append("<h2>References</h2>\n<ol>" + "".join(f"<li>{e(r)}</li>" for r in refs) + "</ol>")
    parts += [f"<script>{_JS}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


def render(tables: Sequence[Table], fmt: str, spread: str = "std", title: str = "Leaderboard") -> str:
    """``tables`` in format ``fmt`` (``md``, ``csv``, ``latex`` or ``html``)."""
    kind = FORMATS.get(fmt)
    if kind == "md":
        return to_markdown(tables, spread, title)
    if kind == "csv":
        return to_csv(tables)
    if kind == "tex":
        return to_latex(tables, spread, title)
    if kind == "html":
        return to_html(tables, spread, title)
    raise ValueError(f"unknown format {fmt!r}")
