"""Storage of a study through SQLAlchemy: a SQLite file by default, PostgreSQL by URL.

Tables (the schema is versioned with Alembic; the migrations ship inside the package and are
applied when a database is opened, so a running study survives an upgrade of neuroinspect):

- ``study``: one row per study id: title, task, the bundle's hash, the number of participants assigned
  so far (the Latin-square row counter);
- ``participant``: one row per (study, participant id): the hash of the resume token, the assignment
  index and condition order, the Prolific study and session ids, whether simulated, the times of
  consent, instructions, questionnaire and completion, the questionnaire's answers;
- ``assignment``: the participant's trial sequence (position, trial, kind, block, condition, unit,
  what it repeats, the right answer) and when each trial was first shown (server time);
- ``trial``: the bundle's trials (kind, condition, unit, right answer);
- ``response``: one row per answer, unique on (participant, trial): a resubmission, a double click
  or a retry after a lost reply writes nothing new;
- ``event``: what happened (consent, resumed, duplicate submission, refused token, admin login ...).

SQLite runs in WAL mode with a busy timeout and ``synchronous=NORMAL`` (a committed answer survives a
crash of the process; the last transactions may be lost only if the machine itself loses power), and
write transactions start with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout
instead of failing. The connection pool holds 50 connections (+20 overflow) so 50 participants at once
do not queue in the pool.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeDecorator

from neuroinspect.errors import UserError

POOL_SIZE = 50
MAX_OVERFLOW = 20
SQLITE_BUSY_TIMEOUT_MS = 30_000


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

study = sa.Table(
    "study",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("bundle_hash", sa.String(64), nullable=False),
    sa.Column("n_assigned", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

participant = sa.Table(
    "participant",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), sa.ForeignKey("study.id"), nullable=False),
    sa.Column("participant_id", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("assignment_index", sa.Integer, nullable=False),
    sa.Column("condition_order", sa.Text, nullable=False),
    sa.Column("prolific_study_id", sa.String(64)),
    sa.Column("prolific_session_id", sa.String(64)),
    sa.Column("simulated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("observer", sa.String(32)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("consented_at", UTCDateTime),
    sa.Column("declined_at", UTCDateTime),
    sa.Column("instructions_shown_at", UTCDateTime),
    sa.Column("instructions_done_at", UTCDateTime),
    sa.Column("instructions_s", sa.Float),
    sa.Column("questionnaire_at", UTCDateTime),
    sa.Column("ml_experience", sa.String(32)),
    sa.Column("comments", sa.Text),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("timed_out_at", UTCDateTime),
    sa.Column("last_seen_at", UTCDateTime),
    sa.UniqueConstraint("study_id", "participant_id", name="uq_participant_study_id"),
    sa.UniqueConstraint("study_id", "assignment_index", name="uq_participant_assignment_index"),
)

trial = sa.Table(
    "trial",
    metadata,
    sa.Column("study_id", sa.String(64), sa.ForeignKey("study.id"), primary_key=True),
    sa.Column("trial_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("condition", sa.String(64), nullable=False),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("truth", sa.String(32)),
)

assignment = sa.Table(
    "assignment",
    metadata,
    sa.Column("participant_pk", sa.Integer, sa.ForeignKey("participant.pk"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.String(200), nullable=False),
    sa.Column("source_trial_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("block", sa.Integer),
    sa.Column("condition", sa.String(64), nullable=False),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("repeat_of", sa.String(200)),
    sa.Column("truth", sa.String(32)),
    sa.Column("shown_at", UTCDateTime),
    sa.UniqueConstraint("participant_pk", "trial_id", name="uq_assignment_participant_trial"),
)

response = sa.Table(
    "response",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_pk", sa.Integer, sa.ForeignKey("participant.pk"), nullable=False),
    sa.Column("trial_id", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("response", sa.String(64), nullable=False),
    sa.Column("correct", sa.Integer),
    sa.Column("confidence", sa.Integer),
    sa.Column("rt_s", sa.Float, nullable=False),
    sa.Column("shown_at", UTCDateTime, nullable=False),
    sa.Column("answered_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("participant_pk", "trial_id", name="uq_response_participant_trial"),
)

event = sa.Table(
    "event",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), nullable=False),
    sa.Column("participant_pk", sa.Integer, sa.ForeignKey("participant.pk")),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Index("ix_event_study_kind", "study_id", "kind"),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given, minus anything after '@'
        return url.split("@")[-1]


def _migrations_dir() -> Path:
    return Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the packaged Alembic migrations (a no-op when it is there)."""
    from alembic import command

    with engine.connect() as conn:
        if revision == "head" and current_revision(conn) == head_revision():
            return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # two processes opening a fresh database at once: one migrates, the other waits
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7405311)"))
        cfg = alembic_config(conn)
        command.upgrade(cfg, revision)


class Store:
    """A study database: an engine for reads and one for writes (the same on PostgreSQL)."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE, migrate_to: str | None = "head") -> None:
        self.url = url
        self.masked = mask_url(url)
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise UserError(
                f"database_url {url!r} is not a database URL; use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB."
            ) from None
        self.dialect = parsed.get_backend_name()
        # reentrant: a nested write in one thread meets SQLite's busy timeout (an error), never a hang
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        try:
            if self.dialect == "sqlite":
                db = parsed.database
                if db and db != ":memory:":
                    Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
                self.engine = self._sqlite_engine(url, pool_size, immediate=False)
                self.write_engine = self._sqlite_engine(url, pool_size, immediate=True)
            else:
                self.engine = sa.create_engine(
                    url, pool_size=pool_size, max_overflow=MAX_OVERFLOW, pool_pre_ping=True, pool_timeout=60
                )
                self.write_engine = self.engine
            if migrate_to is not None:
                migrate(self.write_engine, migrate_to)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
            first = (str(getattr(err, "orig", err)).strip().splitlines() or ["unreachable"])[0][:300]
            raise UserError(
                f"cannot open the study database {self.masked}: {first}. Check that the server runs and the URL "
                "(database_url in the spec) is right, or that the folder of the SQLite file is writable."
            ) from None
        except sa.exc.NoSuchModuleError:
            raise UserError(
                f"database_url {self.masked}: SQLAlchemy has no driver for it; use sqlite:///FILE or "
                "postgresql+psycopg://USER@HOST/DB (pip install 'neuroinspect[study]')."
            ) from None
        except ModuleNotFoundError as err:
            raise UserError(
                f"the driver for {self.masked} is not installed ({err.name}); pip install 'neuroinspect[study]'."
            ) from None

    @staticmethod
    def _sqlite_engine(url: str, pool_size: int, immediate: bool) -> Engine:
        engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=60,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )

        @sa_event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, record: Any) -> None:
            # pysqlite's own transaction handling is off; BEGIN is emitted below.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A deferred transaction that later writes can fail at once with SQLITE_BUSY instead of
            # waiting; writers take the lock up front.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction (committed on exit, rolled back on an exception).

        SQLite: this process's writers queue on a lock first. SQLite lets one writer in at a time and
        makes the others poll with growing sleeps (its busy handler), so under a burst of answers from
        the app's many sessions (threads of one process) some waited seconds; a queue keeps the wait to
        the writes ahead. Writers in other processes (a `study simulate` beside `study serve`) still
        meet the busy timeout."""
        if self._write_lock is None:
            with self.write_engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.write_engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def insert_ignore(self, table: sa.Table, values: dict[str, Any], keys: list[str]) -> Any:
        """``INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING <first primary key column>`` in this store's
        dialect: the result has a row when the insert happened and none when the row existed (psycopg
        reports no rowcount for it)."""
        pk = list(table.primary_key.columns)[0]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=keys).returning(pk)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=keys).returning(pk)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


_STORES: dict[str, Store] = {}
_LOCK = threading.Lock()


def open_store(url: str) -> Store:
    """The (process-wide, shared) :class:`Store` for ``url``, migrated to the newest schema."""
    with _LOCK:
        store = _STORES.get(url)
        if store is None:
            store = Store(url)
            _STORES[url] = store
        return store


def close_stores() -> None:
    """Dispose every store opened with :func:`open_store` (tests; end of a command)."""
    with _LOCK:
        for s in _STORES.values():
            s.dispose()
        _STORES.clear()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
