"""Issues and the articles frozen into them.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("date", name="uq_issues_date"),
    )
    op.create_table(
        "issue_articles",
        sa.Column(
            "issue_id",
            sa.Integer,
            sa.ForeignKey(
                "issues.id", name="fk_issue_articles_issue_id_issues", ondelete="CASCADE"
            ),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("article_id", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("published", sa.Date, nullable=True),
        sa.Column("content", sa.JSON, nullable=False),
        sa.UniqueConstraint("issue_id", "article_id", name="uq_issue_articles_issue_id_article_id"),
    )
    op.create_index("ix_issue_articles_article_id", "issue_articles", ["article_id"])


def downgrade() -> None:
    op.drop_index("ix_issue_articles_article_id", table_name="issue_articles")
    op.drop_table("issue_articles")
    op.drop_table("issues")
