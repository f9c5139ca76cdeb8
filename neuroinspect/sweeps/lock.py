"""One sweep per folder at a time: a lock file holding the owner's pid, host and process start time.

The lock is created with ``O_CREAT | O_EXCL`` (atomic). A lock whose owner is gone (same host, and
the pid is dead or now belongs to a process started at another time) is stale: it is taken over, by
an atomic rename so that two runs cannot both take it. A live owner, or one on another host, is a
clear refusal (:class:`~neuroinspect.errors.UserError`) naming the pid and what to do.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

LOCK_NAME = ".sweep.lock"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing one
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    from neuroinspect.harness.stages import pid_alive

    if not pid_alive(pid):
        return False
    if started is not None:
        now = _start_time(pid)
        if now is not None and now != started:
            return False  # the pid was reused by another process
    return True


class SweepLock:
    """``with SweepLock(folder):`` holds ``folder/.sweep.lock`` for the block."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False
        self.took_over: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read()
                if owner is None or not self._stale(owner):
                    self._refuse(owner)
                # atomic: only one of several runs renames the stale lock away
                aside = self.path.with_name(f"{LOCK_NAME}.stale-{uuid.uuid4().hex[:8]}")
                try:
                    os.rename(self.path, aside)
                except FileNotFoundError:
                    continue
                aside.unlink(missing_ok=True)
                self.took_over = owner
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.info(), fh)
                fh.flush()
                os.fsync(fh.fileno())
            self.held = True
            return
        raise UserError(
            f"could not take the sweep lock {self.path}; another run is starting there. Try again."
        )

    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            return data if isinstance(data, dict) else None
        except json.JSONDecodeError:
            # an owner killed between creating and writing the file: stale once it is a few seconds old
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return {}
            return {} if age > 5 else None

    def _stale(self, owner: dict[str, Any]) -> bool:
        if not owner:
            return True
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        return not isinstance(pid, int) or not _alive(pid, owner.get("started"))

    def _refuse(self, owner: dict[str, Any] | None) -> None:
        if not owner:
            raise UserError(
                f"{self.path.parent} is being locked by another run right now; wait a few seconds and try again."
            )
        where = "" if owner.get("host") == socket.gethostname() else f" on host {owner.get('host')}"
        raise UserError(
            f"{self.path.parent} is in use by another sweep (pid {owner.get('pid')}{where}, since {owner.get('since')}). "
            f"Wait for it to finish, or pass another --out. If that process is gone, delete {self.path}."
        )

    def release(self) -> None:
        if self.held:
            owner = self._read()
            if owner and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
