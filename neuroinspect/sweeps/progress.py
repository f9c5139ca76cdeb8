"""The sweep's progress display: results (cells) done / running / left, failures, time left.

On a terminal: one live status line, redrawn in place, with each failure printed above it as it
happens. In a log, or with ``--no-progress``: one line per finished, failed or blocked node, each
ending with the same counts. The estimate of the time left is the mean duration of each stage so far
(on this run) times the nodes of that stage still to run, divided by the slots running in parallel.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class SweepProgress:
    """Counts and display. ``stages`` maps every node still to run to its stage; ``leaves`` are the
    nodes that hold results."""

    def __init__(
        self,
        pending: dict[str, str],
        leaves: Iterable[str],
        done_leaves: int,
        total_leaves: int,
        slots: int,
        live: bool,
        stream: IO[str] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = live
        self.slots = max(1, slots)
        self.pending = dict(pending)
        self.leaves = set(leaves)
        self.total_leaves = total_leaves
        self.done_leaves = done_leaves
        self.failed_leaves = 0
        self.blocked_leaves = 0
        self.running: set[str] = set()
        self.durations: dict[str, list[float]] = {}
        self.t0 = time.perf_counter()
        self.failures = 0
        self._last_draw = 0.0
        self._width = 0

    # -- events --------------------------------------------------------------------------------
    def started(self, key: str) -> None:
        self.running.add(key)
        self.draw()

    def finished(self, key: str, label: str, outcome: dict[str, Any]) -> None:
        stage = self.pending.pop(key, "?")
        self.running.discard(key)
        took = float(outcome.get("elapsed") or outcome.get("wall_seconds") or 0.0)
        if not outcome.get("cached"):
            self.durations.setdefault(stage, []).append(took)
        if key in self.leaves:
            self.done_leaves += 1
        note = " (already in the store)" if outcome.get("cached") else ""
        self.event(f"done    {label}  {took:.1f} s{note}")

    def failed(self, key: str, label: str, error: str) -> None:
        self.pending.pop(key, None)
        self.running.discard(key)
        self.failures += 1
        if key in self.leaves:
            self.failed_leaves += 1
        first = error.strip().splitlines()[0] if error.strip() else "failed"
        self.event(f"FAILED  {label}: {first}", always=True)

    def blocked(self, key: str, label: str, by: str) -> None:
        self.pending.pop(key, None)
        if key in self.leaves:
            self.blocked_leaves += 1
        if not self.live:
            self.event(f"skipped {label} (needs {by}, which failed)")

    # -- display -------------------------------------------------------------------------------
    def counts(self) -> str:
        running = sum(1 for k in self.running if k in self.leaves)
        left = self.total_leaves - self.done_leaves - self.failed_leaves - self.blocked_leaves
        parts = [
            f"results {self.done_leaves}/{self.total_leaves} done",
            f"{running} running",
            f"{left - running} left",
        ]
        if self.failed_leaves or self.blocked_leaves or self.failures:
            parts.append(
                f"{self.failures} failed"
                + (f", {self.blocked_leaves} blocked" if self.blocked_leaves else "")
            )
        stages_left = len(self.pending)
        parts.append(f"{stages_left} stage(s) to run")
        parts.append(f"elapsed {fmt_seconds(time.perf_counter() - self.t0)}")
        parts.append(f"ETA {fmt_seconds(self.eta())}")
        return " | ".join(parts)

    def eta(self) -> float | None:
        if not self.pending:
            return 0.0
        observed = [d for ds in self.durations.values() for d in ds]
        if not observed:
            return None
        overall = sum(observed) / len(observed)
        total = 0.0
        for stage in self.pending.values():
            ds = self.durations.get(stage)
            total += sum(ds) / len(ds) if ds else overall
        return total / self.slots

    def event(self, text: str, always: bool = False) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.live:
            self._clear()
            if always or text.startswith("FAILED"):
                print(f"[{stamp}] {text}", file=self.stream)
            self.draw(force=True)
        else:
            print(f"[{stamp}] {text} | {self.counts()}", file=self.stream, flush=True)

    def draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.5:
            return
        self._last_draw = now
        line = f"sweep: {self.counts()}"
        self._clear()
        self.stream.write(line)
        self.stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r\x1b[2K")
            self._width = 0

    def close(self) -> None:
        if self.live:
            self._clear()
            self.stream.flush()
