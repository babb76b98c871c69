"""Send markers on issues: when a send began, and when its copies were queued.

An issue with a send begun and no copies queued is a send killed before it queued them,
to be finished; an issue sent while nobody was subscribed has both and is done, though
it has no delivery either.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_issues = sa.table(
    "issues",
    sa.column("id", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("html", sa.Text),
    sa.column("send_started_at", sa.DateTime(timezone=True)),
    sa.column("queued_at", sa.DateTime(timezone=True)),
)
_deliveries = sa.table("deliveries", sa.column("issue_id", sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("send_started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    # Sends made before these markers are taken as finished: a frozen rendering, or a
    # delivery, says a send began, and nothing says when it stopped.
    op.execute(
        _issues.update()
        .where(_issues.c.html.is_not(None))
        .values(send_started_at=_issues.c.created_at, queued_at=_issues.c.created_at)
    )
    queued = sa.select(_deliveries.c.issue_id).where(_deliveries.c.issue_id == _issues.c.id)
    op.execute(
        _issues.update()
        .where(_issues.c.queued_at.is_(None), queued.exists())
        .values(queued_at=_issues.c.created_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("queued_at")
        batch.drop_column("send_started_at")
