"""Real servers and a real browser for the tests: a throwaway PostgreSQL cluster and Debian's chromium.

Everything listens on loopback only (127.0.0.1) and is stopped through the process that started it.
A missing server binary or browser makes the tests that need it skip with the reason, unless
``NEUROINSPECT_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where it is a failure instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def services_required() -> bool:
    return os.environ.get("NEUROINSPECT_REQUIRE_SERVICES", "") == "1"


def chromium_path() -> str | None:
    """Debian's chromium, or ``$NEUROINSPECT_CHROMIUM``; None when neither exists."""
    explicit = os.environ.get("NEUROINSPECT_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def postgres_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` of the newest PostgreSQL server installed."""
    explicit = os.environ.get("NEUROINSPECT_PG_BINDIR")
    if explicit:
        return Path(explicit) if (Path(explicit) / "initdb").exists() else None
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1:``port``, user ``postgres``, no password."""

    bindir: Path
    datadir: Path
    port: int
    as_user: str | None
    #: fsync and synchronous commits on (PostgreSQL's defaults, what a deployment runs); off for tests
    durable: bool = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        if self.as_user:  # initdb and the server refuse to run as root
            args = ["su", self.as_user, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in args)]
        return subprocess.run(args, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        init = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-400:]}")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.datadir} -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        started = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir / "data"),
                "-l",
                str(self.datadir / "data" / "server.log"),
                "-w",
                "-o",
                opts,
                "start",
            ]
        )
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()[-400:]}")

    def stop(self) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir / "data"), "-m", "fast", "-w", "stop"])

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@contextlib.contextmanager
def postgres_server(durable: bool = False) -> Iterator[PostgresServer]:
    """Start a throwaway cluster (as the ``postgres`` system user when running as root) and stop it;
    ``durable``: with PostgreSQL's own fsync and commit settings (benchmarks) instead of the fast,
    unsafe ones tests use."""
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL server binary (initdb) found")
    as_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as err:
            raise FileNotFoundError("running as root but there is no 'postgres' system user") from err
        as_user = "postgres"
    datadir = Path(tempfile.mkdtemp(prefix="ni-pg-"))
    if as_user:
        shutil.chown(datadir, user=as_user)
    server = PostgresServer(
        bindir=bindir, datadir=datadir, port=free_port(), as_user=as_user, durable=durable
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(datadir, ignore_errors=True)
