"""Compare two runs' result records number by number (``neuroinspect bench compare A B``).

Two runs of the same config and seeds (a sweep on the local pool and under Ray, or on two machines)
should measure the same numbers. Records are matched by ``run_id`` (deterministic for sweeps and
``bench``); within a pair every number under ``metrics`` is compared, except timings (any key that
ends in ``seconds``: ``wall_seconds``, ``edit_wall_seconds``, ``faithfulness.metric_seconds``), which
say how long a run took, not what it measured. Provenance (commit, start time, device) is not
compared either.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def is_timing(key: str) -> bool:
    """A metric key that holds a duration (never compared)."""
    return key.endswith("seconds")


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k in sorted(value, key=str):
            if is_timing(str(k)):
                continue
            yield from _leaves(value[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _same(a: Any, b: Any, atol: float) -> bool:
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not (isinstance(a, (int, float)) and isinstance(b, (int, float)))
    ):
        return bool(a == b)
    if math.isnan(a) and math.isnan(b):
        return True
    return abs(float(a) - float(b)) <= atol


@dataclass
class Difference:
    """One metric of one record whose values differ: ``path`` is dotted (``after.test_acc``)."""

    run_id: str
    path: str
    a: Any
    b: Any


@dataclass
class Comparison:
    """The outcome of :func:`compare_records`."""

    n_a: int
    n_b: int
    identical: int = 0
    differing: list[str] = field(default_factory=list)  # run ids whose metrics differ
    differences: list[Difference] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        """True when both hold the same run ids and every compared number agrees."""
        return not (self.differing or self.only_a or self.only_b)

    def summary(self, name_a: str = "A", name_b: str = "B", show: int = 10) -> str:
        """A few plain lines: how many records match, and the first ``show`` differences."""
        shared = self.identical + len(self.differing)
        lines = [
            f"{self.identical} of {shared} shared records have identical metrics (timings not compared; "
            f"{name_a}: {self.n_a} records, {name_b}: {self.n_b})."
        ]
        if self.only_a:
            lines.append(f"{len(self.only_a)} only in {name_a}, e.g. {self.only_a[0]}")
        if self.only_b:
            lines.append(f"{len(self.only_b)} only in {name_b}, e.g. {self.only_b[0]}")
        if self.differing:
            by_path: dict[str, int] = {}
            for d in self.differences:
                by_path[d.path] = by_path.get(d.path, 0) + 1
            common = sorted(by_path.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            lines.append(
                f"{len(self.differing)} differ; most often in "
                + ", ".join(f"{p} ({n} records)" for p, n in common)
            )
            for d in self.differences[:show]:
                lines.append(f"  {d.run_id}: {d.path}: {d.a!r} vs {d.b!r}")
        return "\n".join(lines)


def compare_records(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *, atol: float = 0.0
) -> Comparison:
    """Match ``a`` and ``b`` by ``run_id`` and compare their ``metrics`` leaf by leaf (timings left out).

    ``atol``: the largest absolute difference two numbers may have and still count as the same
    (0: bit for bit, as a rerun on the same machine and versions should give).
    """
    ia = {str(r["run_id"]): r for r in a}
    ib = {str(r["run_id"]): r for r in b}
    out = Comparison(n_a=len(a), n_b=len(b))
    out.only_a = sorted(set(ia) - set(ib))
    out.only_b = sorted(set(ib) - set(ia))
    for run_id in sorted(set(ia) & set(ib)):
        la = dict(_leaves(ia[run_id].get("metrics") or {}))
        lb = dict(_leaves(ib[run_id].get("metrics") or {}))
        diffs = [
            Difference(run_id, p, la.get(p), lb.get(p))
            for p in sorted(set(la) | set(lb))
            if p not in la or p not in lb or not _same(la[p], lb[p], atol)
        ]
        if diffs:
            out.differing.append(run_id)
            out.differences += diffs
        else:
            out.identical += 1
    return out
