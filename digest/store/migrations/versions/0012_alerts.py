"""The alerts sent to the operator: one per cause per day.

``alerts`` holds one row per alert: its cause (send-stopped, check-failed, nothing-new,
bounce-rate, complaint-rate), the day it was for, what it said and when. The unique
(cause, day) is what keeps a second process, or a second failure of the same kind, from
sending it again that day.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("cause", "day", name="uq_alerts_cause_day"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
