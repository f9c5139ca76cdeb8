"""Run a sweep: plan → lock the folder → run the nodes on an executor → commit each result → summary.

Resumable by construction. Every node is committed to the stage store atomically when it finishes
(:class:`~neuroinspect.harness.stages.StageStore`), and the records of a result node are appended to
``OUT/results.jsonl`` (rewritten atomically) as soon as it is committed; at start-up, records of
committed result nodes missing from the file (a kill between the two steps) are appended, and records
already there (same deterministic ``run_id``) never twice. So a re-run after a kill skips every
committed node and redoes only what was in flight.

The sweep folder ``OUT``:

- ``results.jsonl``: the records, once per result;
- ``summary.json`` / ``summary.md``: counts, failures, and what the shared stages saved;
- ``plan.json``: every planned node (stage, inputs, dependencies) and cell;
- ``events.jsonl``: one line per node started / finished / failed, per run;
- ``failures/<key>.txt``: the traceback of each failed node (the node is retried on the next run);
- ``leaderboard.md`` / ``.csv``: the tables built from ``results.jsonl``;
- ``store/``: the stage store (unless ``store`` points elsewhere);
- ``.sweep.lock``: held while a run is going on.
"""

from __future__ import annotations

import heapq
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from neuroinspect.fileio import atomic_write_json, atomic_write_text
from neuroinspect.harness.records import append_records
from neuroinspect.harness.stages import StageStore
from neuroinspect.sweeps.config import SweepConfig, check_data
from neuroinspect.sweeps.executors import Executor, make_executor
from neuroinspect.sweeps.lock import SweepLock
from neuroinspect.sweeps.plan import Plan, build_plan, plan_text
from neuroinspect.sweeps.progress import SweepProgress, fmt_seconds
from neuroinspect.sweeps.worker import task_for


@dataclass
class SweepOutcome:
    summary: dict[str, Any]
    out: Path
    results: Path

    @property
    def ok(self) -> bool:
        return not self.summary["failures"] and not self.summary.get("interrupted")


def _existing_run_ids(results: Path) -> set[str]:
    if not results.is_file():
        return set()
    ids = set()
    for line in results.read_text(encoding="utf-8").splitlines():
        if line.strip():
            ids.add(json.loads(line)["run_id"])
    return ids


class _Events:
    """``events.jsonl``: an append-only log of what each run did (for people and for the tests)."""

    def __init__(self, path: Path, run: str) -> None:
        self.fh: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.run = run

    def write(self, event: str, key: str, stage: str, **extra: Any) -> None:
        self.fh.write(
            json.dumps(
                {
                    "run": self.run,
                    "t": round(time.time(), 3),
                    "event": event,
                    "key": key,
                    "stage": stage,
                    **extra,
                }
            )
            + "\n"
        )
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def run_sweep(
    cfg: SweepConfig,
    out: str | Path,
    *,
    live: bool = False,
    workers: int | None = None,
    stream: IO[str] | None = None,
) -> SweepOutcome:
    """Run ``cfg`` into ``out`` (resuming what is there). ``live``: the in-place status line (a
    terminal); otherwise one line per event. ``workers`` overrides the config's."""
    stream = stream or sys.stderr
    check_data(cfg)
    plan = build_plan(cfg)
    if not plan.leaves:
        from neuroinspect.errors import UserError

        raise UserError(
            f"{cfg.source}: the sweep produces no results (no editor, visualizer, or finder with ground truth); "
            "add editors, visualizers, or a bundled benchmark to score the finders."
        )
    out = Path(out)
    _check_folder(out, cfg)
    executor = make_executor(cfg, workers)
    with SweepLock(out) as lock:
        if lock.took_over:
            print(f"took over the lock of a run that is gone (pid {lock.took_over.get('pid')})", file=stream)
        store_root = Path(cfg.store).expanduser() if cfg.store else out / "store"
        store = StageStore(store_root)
        store.clean_tmp()
        atomic_write_json(out / "plan.json", {"config": cfg.raw, "source": cfg.source, **plan.as_dict()})
        return _run(cfg, plan, out, store, executor, live, stream)


def _check_folder(out: Path, cfg: SweepConfig) -> None:
    """``out`` is new, empty, or a folder of this same sweep (then the run resumes); anything else is
    refused before any work, so that no other results are mixed in."""
    from neuroinspect.errors import UserError
    from neuroinspect.sweeps.lock import LOCK_NAME

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder.")
    if not out.is_dir():
        return
    plan = out / "plan.json"
    if plan.is_file():
        try:
            name = json.loads(plan.read_text(encoding="utf-8")).get("config", {}).get("name")
        except json.JSONDecodeError:
            name = None
        if name != cfg.name:
            raise UserError(
                f"{out} holds the sweep {name!r}, not {cfg.name!r}; pass another --out (a sweep folder holds one sweep)."
            )
        return
    if any(p.name != LOCK_NAME for p in out.iterdir()):
        raise UserError(f"{out} is not empty and holds no sweep; pass a new or empty --out folder.")


def _run(
    cfg: SweepConfig,
    plan: Plan,
    out: Path,
    store: StageStore,
    executor: Executor,
    live: bool,
    stream: IO[str],
) -> SweepOutcome:
    t0 = time.perf_counter()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    results = out / "results.jsonl"
    done = {k for k, n in plan.nodes.items() if store.is_done(n.stage, k)}
    done_before = set(done)
    known = _existing_run_ids(results)
    recovered = _commit_records(
        results, [store.load(plan.nodes[k].stage, k) for k in plan.leaves if k in done], known
    )
    leaves = set(plan.leaves)
    print(f"sweep {cfg.name}: {plan_text(plan)}", file=stream)
    if done_before:
        print(
            f"resuming: {len(done_before)} of {len(plan.nodes)} stage nodes already in {store.root}"
            + (f"; {recovered} record(s) of committed results appended" if recovered else ""),
            file=stream,
        )
    children = plan.children()
    waiting = {
        k: {d for d in n.deps.values() if d not in done} for k, n in plan.nodes.items() if k not in done
    }
    ready: list[tuple[int, str]] = [(plan.nodes[k].order, k) for k, w in waiting.items() if not w]
    heapq.heapify(ready)
    failed: dict[str, str] = {}
    blocked: dict[str, str] = {}
    executed: set[str] = set()
    reused: set[str] = set()
    progress = SweepProgress(
        {k: plan.nodes[k].stage for k in waiting},
        leaves,
        done_leaves=len(leaves & done),
        total_leaves=len(leaves),
        slots=1,
        live=live,
        stream=stream,
    )
    run_id = time.strftime("%Y%m%dT%H%M%S")
    events = _Events(out / "events.jsonl", run_id)
    interrupted = False
    executor.start()
    progress.slots = executor.slots
    print(f"executor: {executor.description}", file=stream)
    try:
        while ready or executor.in_flight():
            while ready and executor.in_flight() < executor.slots:
                _, key = heapq.heappop(ready)
                node = plan.nodes[key]
                dep_stages = {role: plan.nodes[d].stage for role, d in node.deps.items()}
                events.write("start", key, node.stage, label=node.label)
                progress.started(key)
                executor.submit(task_for(node, dep_stages, str(store.root), cfg.device, None))
            for outcome in executor.wait(timeout=0.5):
                key = outcome["key"]
                node = plan.nodes[key]
                if outcome["ok"]:
                    done.add(key)
                    (out / "failures" / f"{key}.txt").unlink(missing_ok=True)  # failed on an earlier run
                    (reused if outcome.get("cached") else executed).add(key)
                    events.write(
                        "done",
                        key,
                        node.stage,
                        seconds=outcome.get("elapsed"),
                        cached=bool(outcome.get("cached")),
                        pid=outcome.get("pid"),
                    )
                    if node.leaf:
                        _commit_records(results, [store.load(node.stage, key)], known)
                    progress.finished(key, node.label, outcome)
                    for child in children[key]:
                        if child in waiting and child not in blocked:
                            waiting[child].discard(key)
                            if not waiting[child]:
                                heapq.heappush(ready, (plan.nodes[child].order, child))
                else:
                    failed[key] = outcome["error"]
                    events.write("failed", key, node.stage, error=outcome["error"])
                    fail_dir = out / "failures"
                    atomic_write_text(
                        fail_dir / f"{key}.txt",
                        f"{node.label}\n{outcome['error']}\n\n{outcome.get('traceback', '')}\n"
                        + "".join(f"log: {line}\n" for line in outcome.get("log", [])),
                    )
                    progress.failed(key, node.label, outcome["error"])
                    for d in sorted(plan.descendants(key, children), key=lambda k: plan.nodes[k].order):
                        if d not in blocked and d not in done:
                            blocked[d] = key
                            progress.blocked(d, plan.nodes[d].label, node.label)
            progress.draw()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        executor.shutdown(cancel=interrupted)
        progress.close()
        events.close()
        summary = _summary(
            cfg,
            plan,
            out,
            store,
            executor,
            done,
            done_before,
            executed,
            reused,
            failed,
            blocked,
            started_at,
            time.perf_counter() - t0,
            interrupted,
        )
        atomic_write_json(out / "summary.json", summary)
        atomic_write_text(out / "summary.md", summary_text(summary))
    _leaderboard(cfg, results, out)
    return SweepOutcome(summary, out, results)


def _commit_records(results: Path, nodes: list[Any], known: set[str]) -> int:
    new = [r for node in nodes for r in node.records if r["run_id"] not in known]
    if new:
        append_records(results, new)
        known.update(r["run_id"] for r in new)
    return len(new)


def _summary(
    cfg: SweepConfig,
    plan: Plan,
    out: Path,
    store: StageStore,
    executor: Executor,
    done: set[str],
    done_before: set[str],
    executed: set[str],
    reused: set[str],
    failed: dict[str, str],
    blocked: dict[str, str],
    started_at: str,
    wall: float,
    interrupted: bool,
) -> dict[str, Any]:
    seconds = {k: store.wall_seconds(plan.nodes[k].stage, k) or 0.0 for k in done}
    by_stage: dict[str, dict[str, Any]] = {}
    naive = plan.naive_by_stage()
    for k, n in plan.nodes.items():
        s = by_stage.setdefault(
            n.stage, {"planned": 0, "naive": naive.get(n.stage, 0), "executed": 0, "done": 0, "seconds": 0.0}
        )
        s["planned"] += 1
        if k in executed:
            s["executed"] += 1
        if k in done:
            s["done"] += 1
            s["seconds"] = round(s["seconds"] + seconds[k], 2)
    naive_seconds = 0.0
    complete_cells = 0
    failed_cells = 0
    bad = set(failed) | set(blocked)
    for c in plan.cells:
        if not c.leaves:
            continue
        closure = plan.closure(c.leaves)
        naive_seconds += sum(seconds.get(k, 0.0) for k in closure)
        if all(k in done for k in c.leaves):
            complete_cells += 1
        elif closure & bad:
            failed_cells += 1
    stage_seconds = sum(seconds.values())
    naive_exec = plan.naive_executions()
    leaves = plan.leaves
    return {
        "name": cfg.name,
        "config": cfg.source,
        "out": str(out),
        "store": str(store.root),
        "executor": executor.description,
        "started_at": started_at,
        "wall_seconds": round(wall, 2),
        "interrupted": interrupted,
        "cells": {
            "total": len(plan.cells),
            "complete": complete_cells,
            "failed_or_blocked": failed_cells,
            "skipped": len(plan.skipped),
        },
        "results": {
            "total": len(leaves),
            "done": sum(1 for k in leaves if k in done),
            "failed": sum(1 for k in leaves if k in failed),
            "blocked": sum(1 for k in leaves if k in blocked),
        },
        "stages": {
            "planned": len(plan.nodes),
            "already_done": len(done_before),
            "executed": len(executed),
            "found_in_store": len(reused),
            "failed": len(failed),
            "blocked": len(blocked),
            "by_stage": by_stage,
        },
        "savings": {
            "from_scratch_executions": naive_exec,
            "planned_executions": len(plan.nodes),
            "executions_saved": naive_exec - len(plan.nodes),
            "share_saved": round(1 - len(plan.nodes) / naive_exec, 4) if naive_exec else 0.0,
            "from_scratch_seconds": round(naive_seconds, 1),
            "stage_seconds": round(stage_seconds, 1),
            "seconds_saved": round(naive_seconds - stage_seconds, 1),
            "note": "from scratch = every cell runs its whole chain of stages alone (nothing shared); "
            "seconds are the stages' measured compute times, summed",
        },
        "failures": [
            {
                "key": k,
                "stage": plan.nodes[k].stage,
                "label": plan.nodes[k].label,
                "error": e,
                "traceback": str(out / "failures" / f"{k}.txt"),
            }
            for k, e in failed.items()
        ],
        "blocked": [
            {"key": k, "label": plan.nodes[k].label, "by": plan.nodes[b].label} for k, b in blocked.items()
        ],
        "skipped": plan.skipped,
        "records": str(out / "results.jsonl"),
    }


def summary_text(s: dict[str, Any]) -> str:
    """The summary in plain words (printed at the end and written to ``summary.md``)."""
    sv, st, res = s["savings"], s["stages"], s["results"]
    lines = [
        f"# Sweep {s['name']}",
        "",
        f"- config: {s['config']}; executor: {s['executor']}",
        f"- wall time of this run: {fmt_seconds(s['wall_seconds'])}"
        + (" (interrupted)" if s["interrupted"] else ""),
        f"- results: {res['done']} of {res['total']} done"
        + (
            f", {res['failed']} failed, {res['blocked']} blocked by a failed stage"
            if res["failed"] or res["blocked"]
            else ""
        ),
        f"- cells: {s['cells']['complete']} of {s['cells']['total']} complete"
        + (f", {s['cells']['skipped']} skipped (listed below)" if s["cells"]["skipped"] else ""),
        f"- stage nodes: {st['planned']} planned, {st['already_done']} already done before this run, "
        f"{st['executed']} executed now, {st['failed']} failed, {st['blocked']} blocked",
        "",
        "## What the shared stages saved",
        "",
        f"Running every cell from scratch would execute {sv['from_scratch_executions']} stages; this sweep plans "
        f"{sv['planned_executions']} ({100 * sv['share_saved']:.0f}% fewer). Measured stage time: "
        f"{fmt_seconds(sv['stage_seconds'])} summed; from scratch it would be about "
        f"{fmt_seconds(sv['from_scratch_seconds'])}, so sharing saved about {fmt_seconds(sv['seconds_saved'])} of compute.",
        "",
        "| stage | nodes | from scratch | executed now | seconds (summed) |",
        "|---|---|---|---|---|",
    ]
    for name, b in st["by_stage"].items():
        lines.append(f"| {name} | {b['planned']} | {b['naive']} | {b['executed']} | {b['seconds']:.1f} |")
    if s["failures"]:
        lines += ["", "## Failures (retried on the next run)", ""]
        for f in s["failures"]:
            lines.append(
                f"- {f['label']}: {f['error'].splitlines()[0] if f['error'] else ''} (traceback: {f['traceback']})"
            )
    if s["skipped"]:
        lines += ["", "## Skipped cells", ""]
        seen = set()
        for c in s["skipped"]:
            if c["why"] not in seen:
                seen.add(c["why"])
                lines.append(f"- {c['why']}")
    lines.append("")
    return "\n".join(lines)


def _leaderboard(cfg: SweepConfig, results: Path, out: Path) -> None:
    if not results.is_file():
        return
    from neuroinspect.leaderboards import build_tables, load_records, render

    tables = build_tables(load_records([results]))
    atomic_write_text(out / "leaderboard.md", render(tables, "md", title=f"Leaderboard: sweep {cfg.name}"))
    atomic_write_text(out / "leaderboard.csv", render(tables, "csv"))
