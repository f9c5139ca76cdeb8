"""Events (consent, resume, duplicate submissions, refused tokens, admin logins) and last-seen times.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("pk", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("study_id", sa.String(64), nullable=False),
        sa.Column("participant_pk", sa.Integer),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text),
        sa.PrimaryKeyConstraint("pk", name="pk_event"),
        sa.ForeignKeyConstraint(
            ["participant_pk"], ["participant.pk"], name="fk_event_participant_pk_participant"
        ),
    )
    op.create_index("ix_event_study_kind", "event", ["study_id", "kind"])
    with op.batch_alter_table("participant") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("participant") as batch:
        batch.drop_column("last_seen_at")
    op.drop_index("ix_event_study_kind", table_name="event")
    op.drop_table("event")
