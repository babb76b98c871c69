"""The send ledger, and each issue's rendering frozen with it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("subject", sa.Text, nullable=True))
        batch.add_column(sa.Column("html", sa.Text, nullable=True))
        batch.add_column(sa.Column("text", sa.Text, nullable=True))
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "issue_id",
            sa.Integer,
            sa.ForeignKey("issues.id", name="fk_deliveries_issue_id_issues", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey(
                "subscribers.id", name="fk_deliveries_subscriber_id_subscribers", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "issue_id", "subscriber_id", name="uq_deliveries_issue_id_subscriber_id"
        ),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_deliveries_status"),
    )
    op.create_index("ix_deliveries_pending", "deliveries", ["issue_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
    op.drop_table("deliveries")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("text")
        batch.drop_column("html")
        batch.drop_column("subject")
