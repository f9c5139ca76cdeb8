"""The initial schema: study, participant, trial, assignment, response.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("bundle_hash", sa.String(64), nullable=False),
        sa.Column("n_assigned", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_study"),
    )
    op.create_table(
        "participant",
        sa.Column("pk", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("study_id", sa.String(64), nullable=False),
        sa.Column("participant_id", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("assignment_index", sa.Integer, nullable=False),
        sa.Column("condition_order", sa.Text, nullable=False),
        sa.Column("prolific_study_id", sa.String(64)),
        sa.Column("prolific_session_id", sa.String(64)),
        sa.Column("simulated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("observer", sa.String(32)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("consented_at", TS),
        sa.Column("declined_at", TS),
        sa.Column("instructions_shown_at", TS),
        sa.Column("instructions_done_at", TS),
        sa.Column("instructions_s", sa.Float),
        sa.Column("questionnaire_at", TS),
        sa.Column("ml_experience", sa.String(32)),
        sa.Column("comments", sa.Text),
        sa.Column("completed_at", TS),
        sa.Column("timed_out_at", TS),
        sa.PrimaryKeyConstraint("pk", name="pk_participant"),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name="fk_participant_study_id_study"),
        sa.UniqueConstraint("study_id", "participant_id", name="uq_participant_study_id"),
        sa.UniqueConstraint("study_id", "assignment_index", name="uq_participant_assignment_index"),
    )
    op.create_table(
        "trial",
        sa.Column("study_id", sa.String(64), nullable=False),
        sa.Column("trial_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("condition", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("truth", sa.String(32)),
        sa.PrimaryKeyConstraint("study_id", "trial_id", name="pk_trial"),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name="fk_trial_study_id_study"),
    )
    op.create_table(
        "assignment",
        sa.Column("participant_pk", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("trial_id", sa.String(200), nullable=False),
        sa.Column("source_trial_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("block", sa.Integer),
        sa.Column("condition", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("repeat_of", sa.String(200)),
        sa.Column("truth", sa.String(32)),
        sa.Column("shown_at", TS),
        sa.PrimaryKeyConstraint("participant_pk", "position", name="pk_assignment"),
        sa.ForeignKeyConstraint(
            ["participant_pk"], ["participant.pk"], name="fk_assignment_participant_pk_participant"
        ),
        sa.UniqueConstraint("participant_pk", "trial_id", name="uq_assignment_participant_trial"),
    )
    op.create_table(
        "response",
        sa.Column("pk", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("participant_pk", sa.Integer, nullable=False),
        sa.Column("trial_id", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("response", sa.String(64), nullable=False),
        sa.Column("correct", sa.Integer),
        sa.Column("confidence", sa.Integer),
        sa.Column("rt_s", sa.Float, nullable=False),
        sa.Column("shown_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_response"),
        sa.ForeignKeyConstraint(
            ["participant_pk"], ["participant.pk"], name="fk_response_participant_pk_participant"
        ),
        sa.UniqueConstraint("participant_pk", "trial_id", name="uq_response_participant_trial"),
    )


def downgrade() -> None:
    for name in ("response", "assignment", "trial", "participant", "study"):
        op.drop_table(name)
