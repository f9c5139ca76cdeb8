"""Alembic environment: runs on the connection :func:`neuroinspect.studies.storage.migrate` hands over."""

from __future__ import annotations

from alembic import context

from neuroinspect.studies.storage import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the package always passes a connection
    raise RuntimeError("neuroinspect's migrations run through neuroinspect.studies.storage.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
