"""streamed metric points unique, trial notes

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_point", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_metric_point_trial_attempt_seq", ["trial_id", "attempt", "seq"])

    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.drop_column("notes")

    with op.batch_alter_table("metric_point", schema=None) as batch_op:
        batch_op.drop_constraint("uq_metric_point_trial_attempt_seq", type_="unique")
