"""What came back after a send: the messages read, and what each said of an address.

``returned_messages`` holds one row per message read from a bounce mailbox (by the
SHA-256 of its bytes, so no message is counted twice); ``bounce_events`` one row per
address a message was about: the kind (hard, soft, refused, complaint, unsubscribe,
ignored), the status code and reason, and the delivery, issue and subscriber it was
traced to, how, and whether it changed the subscriber (``applied``: what keeps an
address suppressed even after it is removed and added again). Subscribers gain the status
``complained``: the check constraint on their status is widened. An issue whose send was
stopped because too many copies were refused is held (``issues.held_at``): no automatic
catch-up resumes it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "returned_messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("form", sa.String(16), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("problem", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_returned_messages"),
        sa.UniqueConstraint("digest", name="uq_returned_messages_digest"),
    )
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("returned_id", sa.Integer, nullable=False),
        sa.Column("delivery_id", sa.Integer, nullable=True),
        sa.Column("issue_id", sa.Integer, nullable=True),
        sa.Column("subscriber_id", sa.Integer, nullable=True),
        sa.Column("email_key", sa.String(320), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("matched_by", sa.String(16), nullable=True),
        sa.Column("applied", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_events"),
        sa.ForeignKeyConstraint(
            ["returned_id"],
            ["returned_messages.id"],
            name="fk_bounce_events_returned_id_returned_messages",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_bounce_events_delivery_id_deliveries",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name="fk_bounce_events_issue_id_issues",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_bounce_events_subscriber_id_subscribers",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_bounce_events_subscriber", "bounce_events", ["subscriber_id", "kind"])
    op.create_index("ix_bounce_events_issue", "bounce_events", ["issue_id", "kind"])
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])
    op.create_index("ix_bounce_events_email_key", "bounce_events", ["email_key"])
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("held_reason", sa.Text, nullable=True))
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint("ck_subscribers_status", type_="check")
        batch.create_check_constraint(
            "ck_subscribers_status", "status IN ('active', 'unsubscribed', 'bounced', 'complained')"
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint("ck_subscribers_status", type_="check")
        batch.create_check_constraint(
            "ck_subscribers_status", "status IN ('active', 'unsubscribed', 'bounced')"
        )
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("held_reason")
        batch.drop_column("held_at")
    op.drop_index("ix_deliveries_message_id", "deliveries")
    op.drop_table("bounce_events")
    op.drop_table("returned_messages")
