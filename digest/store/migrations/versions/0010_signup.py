"""Readers who join and manage themselves: pending addresses, consent, pauses, erasure.

Subscribers gain the status ``pending`` (signed up, not yet confirmed), ``joined_via``
(form, import, cli, api), ``confirmed_at``, ``paused_until`` (no copies for issues
before that date) and ``confirm_sent_at`` (the last confirmation mail, so a repeated
signup re-sends it at most once an hour). ``consent_texts`` holds each wording of the
signup form's consent once; ``consents`` the evidence for each subscriber (how, when,
from where, which wording, or which file and note for an import). ``subscriber_events``
records every other change to a subscriber with its cause. ``signup_attempts`` counts
signups per keyed hash of an IP or address, for rate limits shared by every server
process. ``erasures`` keeps a keyed hash of each erased address, and nothing else.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'active', 'unsubscribed', 'bounced', 'complained'"


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("joined_via", sa.String(16), nullable=True))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("paused_until", sa.Date, nullable=True))
        batch.add_column(sa.Column("confirm_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("ck_subscribers_status", type_="check")
        batch.create_check_constraint(
            "ck_subscribers_status", f"status IN ({_STATUSES}, 'pending')"
        )
    # Before this, "cli" marked an address added by hand and anything else an import.
    subscribers = sa.table(
        "subscribers", sa.column("source", sa.String), sa.column("joined_via", sa.String)
    )
    op.execute(
        subscribers.update().values(
            joined_via=sa.case((subscribers.c.source == "cli", "cli"), else_="import")
        )
    )
    op.create_table(
        "consent_texts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_texts"),
        sa.UniqueConstraint("sha256", name="uq_consent_texts_sha256"),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("text_id", sa.Integer, nullable=True),
        sa.Column("ip", sa.Text, nullable=True),
        sa.Column("ip_hash", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("file_name", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_consents_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["text_id"], ["consent_texts.id"], name="fk_consents_text_id_consent_texts"
        ),
    )
    op.create_index("ix_consents_subscriber_id", "consents", ["subscriber_id"])
    op.create_table(
        "subscriber_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber_events"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_subscriber_events_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_subscriber_events_subscriber_id", "subscriber_events", ["subscriber_id"])
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signup_attempts"),
    )
    op.create_index("ix_signup_attempts_key", "signup_attempts", ["scope", "key", "created_at"])
    op.create_table(
        "erasures",
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name="pk_erasures"),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_index("ix_signup_attempts_key", "signup_attempts")
    op.drop_table("signup_attempts")
    op.drop_index("ix_subscriber_events_subscriber_id", "subscriber_events")
    op.drop_table("subscriber_events")
    op.drop_index("ix_consents_subscriber_id", "consents")
    op.drop_table("consents")
    op.drop_table("consent_texts")
    op.execute("DELETE FROM subscribers WHERE status = 'pending'")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint("ck_subscribers_status", type_="check")
        batch.create_check_constraint("ck_subscribers_status", f"status IN ({_STATUSES})")
        batch.drop_column("confirm_sent_at")
        batch.drop_column("paused_until")
        batch.drop_column("confirmed_at")
        batch.drop_column("joined_via")
