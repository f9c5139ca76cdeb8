"""Seeds, devices, provenance and progress bars: the run-time facts every result records."""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from neuroinspect.errors import UserError

T = TypeVar("T")

TRACKED_PACKAGES = (
    "neuroinspect",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "captum",
    "torch-lucent",
    "numpy",
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(name: str | None = "cpu") -> Any:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` to a ``torch.device``; a clear error if absent."""
    import torch

    name = (name or "cpu").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"unknown device {name!r} ({err}). Use --device cpu, cuda, cuda:N or auto.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA GPU here. Use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for but MPS is not available. Use --device cpu.")
    return device


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` where a package is absent).

    Each name is looked up once per process: the code that runs is the code imported at start, and a
    lookup parses the package's metadata (a sweep writes thousands of records)."""
    return {name: _installed_version(name) for name in names}


@functools.cache
def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(path: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the source checkout this package runs from (``None`` outside git).

    Without ``path``, asked once per process (a ``git`` subprocess per record otherwise): a commit made
    while a sweep runs does not change the code that sweep imported."""
    if path is not None:
        return _git_head(Path(path))
    return _own_git_head()


@functools.cache
def _own_git_head() -> str | None:
    return _git_head(Path(__file__).resolve().parent)


def _git_head(where: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def describe_device(device: Any) -> str:
    """A human-readable device name, e.g. ``"cpu (x86_64, 2 threads)"`` or ``"cuda:0 (NVIDIA H100)"``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({platform.machine()}, {torch.get_num_threads()} threads)"


@dataclass
class Provenance:
    """What made a result: versions, commit, device, start time and wall seconds.

    Use as a context manager around the work; :meth:`as_dict` gives the record's ``provenance``.
    """

    device: str = "cpu"
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    _t0: float = field(default_factory=time.perf_counter, repr=False)
    wall_seconds: float | None = None

    def __enter__(self) -> Provenance:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> float:
        self.wall_seconds = time.perf_counter() - self._t0
        return self.wall_seconds

    def as_dict(self) -> dict[str, Any]:
        wall = self.wall_seconds if self.wall_seconds is not None else time.perf_counter() - self._t0
        return {
            "versions": package_versions(),
            "python": platform.python_version(),
            "git_commit": git_commit(),
            "device": describe_device(self.device),
            "started_at": self.started_at,
            "wall_seconds": round(wall, 3),
        }


_BARS_ALLOWED = True


def set_progress_bars(allowed: bool) -> None:
    """``False`` (``--no-progress``): never draw bars, report one line per stage instead."""
    global _BARS_ALLOWED
    _BARS_ALLOWED = bool(allowed)


def bars_wanted() -> bool:
    """Progress bars only on a terminal, and not after ``--no-progress`` or ``NEUROINSPECT_NO_PROGRESS``:
    a log gets one line per stage instead of the redraws of a bar."""
    if not _BARS_ALLOWED or os.environ.get("NEUROINSPECT_NO_PROGRESS"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def progress(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    enabled: bool = True,
    leave: bool = False,
    unit: str = "steps",
) -> Iterator[T]:
    """Report the progress of one stage on stderr: a tqdm bar on a terminal (:func:`bars_wanted`),
    otherwise one line when the stage ends (``"<desc>: done in 3.2 s (38 steps)"``). Nothing when
    ``enabled`` is false (a stage too small to mention)."""
    if not enabled:
        yield from iterable
        return
    if bars_wanted():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
        return
    t0, n = time.perf_counter(), 0
    for item in iterable:
        n += 1
        yield item
    # Only a stage that ran to its end says "done": a failure's message stays the only line, and a
    # stage left early (a loop's break) has nothing to report.
    of = f" of {total}" if total is not None and n != total else ""
    print(f"{desc}: done in {time.perf_counter() - t0:.1f} s ({n}{of} {unit})", file=sys.stderr, flush=True)
