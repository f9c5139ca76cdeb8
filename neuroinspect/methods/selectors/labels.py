"""The ``labels`` selector: people's labels of neurons (a CSV the study app's neuron-labelling task
writes), or, without a file on a terminal, a prompt like the reference's interactive debug loop.

File format (fixed with the study app), UTF-8 CSV with this header::

    neuron,label,class_idx,n_votes,agreement

- ``neuron``: neuron id (input of the decision layer), an integer ≥ 0;
- ``label``: ``spurious``, ``core`` or ``unclear``;
- ``class_idx``: the class the neuron was shown for, or empty (a label for every class); a row for
  the debugged class overrides an empty-class row of the same neuron;
- ``n_votes``: how many people labelled it (integer ≥ 0, may be empty);
- ``agreement``: the share of votes for ``label`` (in [0, 1], may be empty).

A row with fewer than ``min_votes`` votes or an agreement below ``min_agreement`` counts as
``unclear``; a candidate without a row is ``unclear``.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError
from neuroinspect.methods.selectors.base import (
    LABELS,
    Selection,
    SelectionContext,
    Selector,
    register_selector,
)

COLUMNS = ("neuron", "label", "class_idx", "n_votes", "agreement")


@dataclass(frozen=True)
class NeuronLabel:
    """One row of a labels file."""

    neuron: int
    label: str
    class_idx: int | None
    n_votes: int | None
    agreement: float | None


def read_labels(path: str | Path) -> list[NeuronLabel]:
    """Every row of a labels CSV (module docstring), validated; a :class:`UserError` names the line and field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels file {path} does not exist; export it from the study app or fix the path.")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise UserError(
                f"{path}: the header lacks {', '.join(missing)}; a labels file has the columns {','.join(COLUMNS)}."
            )
        rows = []
        for lineno, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path}:{lineno}"
            try:
                neuron = int(row["neuron"])
            except ValueError:
                raise UserError(f"{where}: neuron {row['neuron']!r} is not an integer.") from None
            if neuron < 0:
                raise UserError(f"{where}: neuron {neuron} is negative.")
            label = row["label"].lower()
            if label not in LABELS:
                raise UserError(f"{where}: label {row['label']!r} is not one of {', '.join(LABELS)}.")
            cls: int | None = None
            if row["class_idx"]:
                try:
                    cls = int(row["class_idx"])
                except ValueError:
                    raise UserError(
                        f"{where}: class_idx {row['class_idx']!r} is not an integer (or leave it empty)."
                    ) from None
            votes: int | None = None
            if row["n_votes"]:
                try:
                    votes = int(row["n_votes"])
                except ValueError:
                    raise UserError(f"{where}: n_votes {row['n_votes']!r} is not an integer.") from None
                if votes < 0:
                    raise UserError(f"{where}: n_votes is negative.")
            agree: float | None = None
            if row["agreement"]:
                try:
                    agree = float(row["agreement"])
                except ValueError:
                    raise UserError(f"{where}: agreement {row['agreement']!r} is not a number.") from None
                if not 0.0 <= agree <= 1.0:
                    raise UserError(f"{where}: agreement {agree} is outside [0, 1].")
            rows.append(NeuronLabel(neuron, label, cls, votes, agree))
    return rows


def labels_for_class(rows: Sequence[NeuronLabel], class_idx: int) -> dict[int, NeuronLabel]:
    """The row that applies to each neuron for ``class_idx`` (a class-specific row beats an empty-class one)."""
    out: dict[int, NeuronLabel] = {}
    for r in rows:
        if r.class_idx is None and r.neuron not in out:
            out[r.neuron] = r
    for r in rows:
        if r.class_idx == class_idx:
            out[r.neuron] = r
    return out


@register_selector("labels")
class LabelsSelector(Selector):
    """People's labels: a CSV (neuron,label,class_idx,n_votes,agreement) from the study app, or an interactive prompt on a terminal."""

    def __init__(self, *, file: str | None = None, min_votes: int = 1, min_agreement: float = 0.0) -> None:
        self.file = None if file in (None, "") else str(file)
        self.min_votes = int(min_votes)
        self.min_agreement = float(min_agreement)
        if self.file is not None:
            read_labels(self.file)  # fail before any work on a bad file

    def check(self, interactive: bool | None = None) -> None:
        """A :class:`UserError` now, rather than after training, when there is nothing to read labels from."""
        if self.file is None and not _interactive(interactive):
            raise UserError(
                "the labels selector needs a labels file (selector_settings.labels.file = PATH, a CSV with "
                f"{','.join(COLUMNS)}) or a terminal to ask on."
            )

    def label(
        self, candidates: Sequence[int], ctx: SelectionContext
    ) -> tuple[dict[int, str], dict[int, float]]:
        if self.file is None:
            return self._ask(candidates, ctx)
        table = labels_for_class(read_labels(self.file), ctx.class_idx)
        labels: dict[int, str] = {}
        scores: dict[int, float] = {}
        for n in candidates:
            r = table.get(int(n))
            if r is None:
                labels[int(n)] = "unclear"
                continue
            weak = (r.n_votes is not None and r.n_votes < self.min_votes) or (
                r.agreement is not None and r.agreement < self.min_agreement
            )
            labels[int(n)] = "unclear" if weak else r.label
            if r.agreement is not None:
                scores[int(n)] = r.agreement if r.label == "spurious" else -r.agreement
        return labels, scores

    def select(self, candidates: Sequence[int], k: int, ctx: SelectionContext) -> Selection:
        self.check(ctx.interactive)
        sel = super().select(candidates, k, ctx)
        sel.info["source"] = self.file or "prompt"
        return sel

    def _ask(
        self, candidates: Sequence[int], ctx: SelectionContext
    ) -> tuple[dict[int, str], dict[int, float]]:
        self.check(ctx.interactive)
        cname = ctx.class_names[ctx.class_idx] if ctx.class_idx < len(ctx.class_names) else str(ctx.class_idx)
        print(f"\nCandidate neurons for class {ctx.class_idx} ({cname}), in the finder's order:")
        for r, n in enumerate(candidates, start=1):
            score = ctx.finder_scores.get(int(n))
            print(f"  {r:>3}. neuron {n}" + (f"  (score {score:.4g})" if score is not None else ""))
        cand = [int(n) for n in candidates]
        while True:
            answer = input("Neurons that look spurious (ids separated by spaces or commas; 'none'): ").strip()
            if answer.lower() in ("", "none"):
                picked: list[int] = []
                break
            try:
                picked = [int(tok) for tok in answer.replace(",", " ").split()]
            except ValueError:
                print("  please type neuron ids, e.g. 12 40 7")
                continue
            unknown = [n for n in picked if n not in cand]
            if unknown:
                print(f"  {unknown[0]} is not a candidate; choose among {', '.join(map(str, cand))}")
                continue
            break
        return ({n: ("spurious" if n in picked else "unclear") for n in cand}, {})


def _interactive(flag: bool | None) -> bool:
    if flag is not None:
        return bool(flag)
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def write_labels(path: str | Path, rows: Sequence[NeuronLabel | dict[str, Any]]) -> Path:
    """Write a labels CSV (atomically) in the fixed format; rows as :class:`NeuronLabel` or dicts."""
    import io

    from neuroinspect.fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        d = r if isinstance(r, dict) else r.__dict__
        w.writerow(["" if d.get(c) is None else d.get(c) for c in COLUMNS])
    return atomic_write_text(path, buf.getvalue())


__all__ = ["COLUMNS", "LabelsSelector", "NeuronLabel", "labels_for_class", "read_labels", "write_labels"]
