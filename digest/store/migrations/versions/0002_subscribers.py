"""Subscribers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
        sa.CheckConstraint(
            "status IN ('active', 'unsubscribed', 'bounced')", name="ck_subscribers_status"
        ),
    )
    op.create_index("ix_subscribers_status", "subscribers", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_status", table_name="subscribers")
    op.drop_table("subscribers")
