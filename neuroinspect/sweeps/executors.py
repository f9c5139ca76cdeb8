"""Where a sweep's stage nodes run: in this process, in a local process pool, or on Ray tasks.

Every executor runs the same function, :func:`neuroinspect.sweeps.worker.execute`, on the same task
dicts, and reports the same outcome dicts; dependencies travel through the stage store (a folder), not
through the executor. So a sweep moves from a laptop to a cluster by changing ``executor`` (and, on a
cluster, pointing ``store`` at a shared file system).

- :class:`InlineExecutor` (``workers = 0``): one node at a time in this process (debugging, tests).
- :class:`LocalExecutor` (``executor = "local"``, the default): a pool of ``workers`` processes
  (``spawn``; one per core by default), each with ``cpus_per_task`` torch threads. Workers die with
  the coordinator (``PR_SET_PDEATHSIG`` on Linux), so a killed sweep leaves no orphan computing.
- :class:`RayExecutor` (``executor = "ray"``): one Ray task per node, with ``num_cpus`` /
  ``num_gpus`` from ``cpus_per_task`` / ``gpus_per_task`` and per-stage ``resources``. With
  ``address = "local"`` it starts a private Ray instance on this machine bound to 127.0.0.1
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), without the dashboard or usage statistics, and stops it
  at the end; any other address joins that cluster.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from neuroinspect.errors import UserError
from neuroinspect.sweeps.worker import execute, init_worker


class Executor(Protocol):
    #: how many nodes may be in flight at once
    slots: int
    description: str

    def start(self) -> None: ...

    def submit(self, task: dict[str, Any]) -> None: ...

    def wait(self, timeout: float) -> list[dict[str, Any]]: ...

    def in_flight(self) -> int: ...

    def shutdown(self, cancel: bool = False) -> None: ...


def machine_cpus() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


class InlineExecutor:
    """Runs each node in this process when it is submitted."""

    def __init__(self, threads: int | None = None) -> None:
        self.slots = 1
        self.threads = threads
        self.description = "this process (workers = 0)"
        self._done: list[dict[str, Any]] = []

    def start(self) -> None:
        return None

    def submit(self, task: dict[str, Any]) -> None:
        self._done.append(execute({**task, "threads": task.get("threads") or self.threads}))

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        out, self._done = self._done, []
        return out

    def in_flight(self) -> int:
        return len(self._done)

    def shutdown(self, cancel: bool = False) -> None:
        return None


class LocalExecutor:
    """A ``spawn`` process pool of ``workers`` processes."""

    def __init__(self, workers: int, threads: int) -> None:
        self.slots = workers
        self.threads = threads
        self.description = f"local process pool, {workers} worker(s) x {threads} thread(s)"
        self._pool: Any = None
        self._futures: dict[Any, str] = {}

    def start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=mp.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.threads,),
        )

    def submit(self, task: dict[str, Any]) -> None:
        fut = self._pool.submit(execute, {**task, "threads": task.get("threads") or self.threads})
        self._futures[fut] = task["key"]

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        if not self._futures:
            time.sleep(min(timeout, 0.05))
            return []
        done, _ = wait_futures(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[dict[str, Any]] = []
        broken = False
        for fut in done:
            key = self._futures.pop(fut)
            try:
                out.append(fut.result())
            except BrokenProcessPool as err:
                broken = True
                out.append(
                    _lost(
                        key,
                        f"a worker process died ({err}); every node running then is retried on the next run",
                    )
                )
            except Exception as err:  # noqa: BLE001 - e.g. an outcome that could not be pickled
                out.append(_lost(key, f"{type(err).__name__}: {err}"))
        if broken:
            for fut, key in list(self._futures.items()):
                self._futures.pop(fut)
                out.append(
                    _lost(key, "a worker process died while this node ran; it is retried on the next run")
                )
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.start()
        return out

    def in_flight(self) -> int:
        return len(self._futures)

    def shutdown(self, cancel: bool = False) -> None:
        if self._pool is None:
            return
        if cancel:
            # Interrupted: stop the running nodes now instead of waiting for them (their work folders are
            # removed on the next run). ProcessPoolExecutor has no public way to do this.
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    proc.terminate()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        self._pool = None


def _lost(key: str, message: str) -> dict[str, Any]:
    return {"key": key, "ok": False, "error": message, "traceback": "", "elapsed": 0.0, "log": []}


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


class RayExecutor:
    """One Ray task per node (see the module docstring)."""

    def __init__(
        self,
        address: str | None,
        cpus_per_task: float,
        gpus_per_task: float,
        resources: Mapping[str, Mapping[str, float]],
        local_cpus: int,
    ) -> None:
        self.address = address or "local"
        self.cpus_per_task = float(cpus_per_task)
        self.gpus_per_task = float(gpus_per_task)
        self.resources = {k: dict(v) for k, v in resources.items()}
        self.local_cpus = int(local_cpus)
        self.slots = 1
        self.description = ""
        self._ray: Any = None
        self._remote: Any = None
        self._refs: dict[Any, str] = {}
        self._started_here = False
        self._loopback_patch: Any = None

    def start(self) -> None:
        if not ray_available():
            raise UserError(
                'executor = "ray" needs Ray, which is not installed: pip install "neuroinspect[ray]" '
                '(or run the sweep with executor = "local").'
            )
        if self.address == "local":
            # Before Ray is imported: keep every port of the private instance on 127.0.0.1, send no usage data.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self._loopback_patch = None
        if self.address == "local":
            from ray._private import ray_constants

            if ray_constants.ENABLE_RAY_CLUSTER:
                # Ray was imported before the variable above was set (e.g. by the caller): it read the
                # default, which advertises the machine's external address. Keep the private instance on
                # loopback anyway; restored at shutdown.
                self._loopback_patch = ray_constants
                ray_constants.ENABLE_RAY_CLUSTER = False
        self._ray = ray
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address == "local":
            kwargs.update(num_cpus=self.local_cpus)
        if ray.is_initialized():
            raise UserError("Ray is already initialized in this process; run the sweep from a fresh process.")
        try:
            ray.init(address=self.address, **kwargs)
        except ConnectionError as err:
            raise UserError(
                f"could not reach the Ray cluster at address = {self.address!r} ({err}); start it, fix the address, "
                'or use address = "local".'
            ) from None
        self._started_here = True
        self._remote = ray.remote(execute)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.slots = max(1, int(cpus // max(self.cpus_per_task, 1e-9)))
        ips = sorted({str(n.get("NodeManagerAddress")) for n in ray.nodes() if n.get("Alive")})
        where = (
            f"a private local instance on {', '.join(ips)}"
            if self.address == "local"
            else f"{self.address}, nodes {', '.join(ips)}"
        )
        self.description = (
            f"Ray ({where}, {cpus:g} CPU(s)); {self.cpus_per_task:g} CPU(s)"
            + (f" and {self.gpus_per_task:g} GPU(s)" if self.gpus_per_task else "")
            + " per task"
        )

    def options_for(self, stage: str) -> dict[str, float]:
        opts = {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task}
        opts.update(self.resources.get(stage, {}))
        return opts

    def submit(self, task: dict[str, Any]) -> None:
        opts = self.options_for(task["stage"])
        threads = task.get("threads") or max(1, int(opts["num_cpus"]))
        device = task["device"]
        if device == "auto" and opts["num_gpus"] <= 0:
            device = "cpu"  # a task without a GPU request must not grab one
        ref = self._remote.options(**opts).remote({**task, "threads": threads, "device": device})
        self._refs[ref] = task["key"]

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        ray = self._ray
        if not self._refs:
            time.sleep(min(timeout, 0.05))
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out: list[dict[str, Any]] = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                out.append(ray.get(ref))
            except Exception as err:  # noqa: BLE001 - a worker crash or a lost node becomes a failure
                out.append(
                    _lost(key, f"the Ray task failed: {type(err).__name__}: {str(err).splitlines()[0][:500]}")
                )
        return out

    def in_flight(self) -> int:
        return len(self._refs)

    def shutdown(self, cancel: bool = False) -> None:
        ray = self._ray
        if ray is None:
            return
        if cancel:
            for ref in list(self._refs):
                with contextlib.suppress(Exception):  # best effort on the way out
                    ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started_here:
            ray.shutdown()
        if self._loopback_patch is not None:
            self._loopback_patch.ENABLE_RAY_CLUSTER = True
            self._loopback_patch = None
        self._ray = None


def make_executor(cfg: Any, workers_override: int | None = None) -> Executor:
    """The executor a :class:`~neuroinspect.sweeps.config.SweepConfig` asks for."""
    cpus = machine_cpus()
    workers = workers_override if workers_override is not None else cfg.workers
    if cfg.executor == "ray":
        local_cpus = workers if workers else cpus
        return RayExecutor(
            cfg.address, cfg.cpus_per_task or 1.0, cfg.gpus_per_task, cfg.resources, local_cpus
        )
    if workers == 0:
        return InlineExecutor(int(cfg.cpus_per_task) if cfg.cpus_per_task else cpus)
    n = workers if workers else cpus
    threads = int(cfg.cpus_per_task) if cfg.cpus_per_task else max(1, cpus // n)
    return LocalExecutor(n, threads)
