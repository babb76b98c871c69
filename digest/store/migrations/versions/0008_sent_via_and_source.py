"""Where each copy went, and where each subscriber came from.

``deliveries.sent_via`` is the transport a copy was handed to (``outbox`` or ``smtp``):
a copy that only reached the local outbox is sent for real by a later send through a
relay. ``subscribers.source`` says how an address got onto the list (``cli``, an import's
label such as ``example``), so a trial list can be cleared in one command. Rows written
before are left null: a copy of unknown route counts as sent, never as one to send again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sent_via", sa.String(16), nullable=True))
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("source", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sent_via")
