"""Alembic migrations of the study database (applied by :func:`neuroinspect.studies.storage.migrate`)."""
