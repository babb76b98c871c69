"""Deliveries keyed by address: removing a subscriber keeps the record of what they were sent.

Each delivery keeps the subscriber's case-folded address (``email_key``), and a removed
subscriber's deliveries stay with ``subscriber_id`` set to null instead of going with
them; the address added again is then not sent an issue it already had.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEY = "fk_deliveries_subscriber_id_subscribers"

_deliveries = sa.table(
    "deliveries",
    sa.column("subscriber_id", sa.Integer),
    sa.column("email_key", sa.String),
)
_subscribers = sa.table(
    "subscribers", sa.column("id", sa.Integer), sa.column("email_key", sa.String)
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("email_key", sa.String(320), nullable=True))
    # Every existing delivery has its subscriber still (they went with them until now).
    op.execute(
        _deliveries.update().values(
            email_key=sa.select(_subscribers.c.email_key)
            .where(_subscribers.c.id == _deliveries.c.subscriber_id)
            .scalar_subquery()
        )
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("email_key", existing_type=sa.String(320), nullable=False)
        batch.alter_column("subscriber_id", existing_type=sa.Integer, nullable=True)
        batch.drop_constraint(_FOREIGN_KEY, type_="foreignkey")
        batch.create_foreign_key(
            _FOREIGN_KEY, "subscribers", ["subscriber_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_unique_constraint(
            "uq_deliveries_issue_id_email_key", ["issue_id", "email_key"]
        )


def downgrade() -> None:
    # Deliveries whose subscriber was removed cannot point at one again: they go.
    op.execute(_deliveries.delete().where(_deliveries.c.subscriber_id.is_(None)))
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_deliveries_issue_id_email_key", type_="unique")
        batch.drop_constraint(_FOREIGN_KEY, type_="foreignkey")
        batch.create_foreign_key(
            _FOREIGN_KEY, "subscribers", ["subscriber_id"], ["id"], ondelete="CASCADE"
        )
        batch.alter_column("subscriber_id", existing_type=sa.Integer, nullable=False)
        batch.drop_column("email_key")
