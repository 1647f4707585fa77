"""attempt records and retry requests

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("objective", sa.Float(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["trial_id"], ["trial.id"], name=op.f("fk_attempt_record_trial_id_trial")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempt_record")),
    )
    with op.batch_alter_table("attempt_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempt_record_trial_id"), ["trial_id"], unique=False)

    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retry_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.drop_column("retry_requested")

    with op.batch_alter_table("attempt_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempt_record_trial_id"))

    op.drop_table("attempt_record")
