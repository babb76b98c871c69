"""Every list identifier the list has been sent under, so old unsubscribe links keep working.

The first is kept at the first send and used from then on; a later one (set by the
operator) is added beside it, and tokens naming any of them are still honoured.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "list_ids",
        sa.Column("list_id", sa.String(255), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("list_id", name=op.f("pk_list_ids")),
    )


def downgrade() -> None:
    op.drop_table("list_ids")
