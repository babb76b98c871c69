"""What the operator does at /admin: the actions log, and the scheduled sends skipped.

``admin_actions`` holds one row per action taken at /admin (a subscriber unsubscribed,
resubscribed or removed, a test copy sent, a send skipped or resumed): when, what, on
what, and the address the request came from (the operator's, kept apart so that a
reader's copy of their own data does not carry it). ``skipped_sends`` holds the days
whose scheduled send the operator skipped; a resume deletes the row.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_actions"),
    )
    op.create_index("ix_admin_actions_created_at", "admin_actions", ["created_at"])
    op.create_table(
        "skipped_sends",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_skipped_sends"),
    )


def downgrade() -> None:
    op.drop_table("skipped_sends")
    op.drop_index("ix_admin_actions_created_at", table_name="admin_actions")
    op.drop_table("admin_actions")
