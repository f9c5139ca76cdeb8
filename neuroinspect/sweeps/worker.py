"""What runs on a worker (a pool process, a Ray task, or the sweep's own process): one stage node.

:func:`execute` takes a plain task dict (picklable, small), reads the node's dependencies from the
store, runs the stage through :meth:`StageStore.run` (which commits it atomically) and returns a
plain outcome dict. It never raises for a failing stage: the error and its traceback travel back in
the outcome, so that one failing cell does not stop the others.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from neuroinspect.errors import UserError


def task_for(
    node: Any, dep_stages: dict[str, str], store_root: str, device: str, threads: int | None
) -> dict[str, Any]:
    """The task dict of a planned :class:`~neuroinspect.sweeps.plan.Node` (``dep_stages``: role → stage)."""
    return {
        "key": node.key,
        "stage": node.stage,
        "label": node.label,
        "params": node.params,
        "deps": node.deps,
        "dep_stages": dep_stages,
        "store": store_root,
        "device": device,
        "threads": threads,
    }


def execute(task: dict[str, Any]) -> dict[str, Any]:
    """Run one node; returns ``{"key", "ok", "cached", "wall_seconds", "elapsed", "pid", "log"}`` or, on
    failure, ``{"key", "ok": False, "error", "traceback", ...}``."""
    t0 = time.perf_counter()
    lines: list[str] = []
    base = {"key": task["key"], "pid": os.getpid(), "log": lines}
    try:
        import torch

        from neuroinspect.harness.stages import StageContext, StageStore

        if task.get("threads"):
            torch.set_num_threads(max(1, int(task["threads"])))
        store = StageStore(task["store"])
        deps = {role: store.load(task["dep_stages"][role], key) for role, key in task["deps"].items()}
        ctx = StageContext(device=task["device"], show_progress=False, log=lines.append)
        node = store.run(task["stage"], task["params"], deps, ctx)
        if node.key != task["key"]:
            raise RuntimeError(
                f"the store keyed this {task['stage']} node {node.key[:12]}, the plan {task['key'][:12]}; "
                "the planner and the stages disagree on the node's inputs (a bug)"
            )
        return {
            **base,
            "ok": True,
            "cached": node.cached,
            "wall_seconds": node.wall_seconds,
            "elapsed": time.perf_counter() - t0,
        }
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - a failing stage becomes a recorded failure
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        return {
            **base,
            "ok": False,
            "error": message.strip() or type(err).__name__,
            "traceback": traceback.format_exc(),
            "elapsed": time.perf_counter() - t0,
        }


def init_worker(threads: int | None) -> None:
    """Pool-process start-up: die with the coordinator, leave Ctrl-C to it, no progress bars, set threads."""
    import signal
    import sys

    os.environ["NEUROINSPECT_NO_PROGRESS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except OSError:  # pragma: no cover - no glibc: the worker outlives a killed coordinator
            pass
    import neuroinspect  # noqa: F401  (the torchvision fix before any stage imports torchvision)

    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
