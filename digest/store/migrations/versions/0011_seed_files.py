"""The seed files already parsed: a pick parses only what is new or changed.

``seed_files`` holds one row per seed file of the seeds directory: its path as loaded, its
size, modification time (ns) and the SHA-256 of its bytes, the key of the parser and the
format settings that parsed it, and what came of it: the article (as ``digest load
--json`` shows one, with its id, date and file time beside it for the pick) or why it
failed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seed_files",
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("parser_key", sa.String(64), nullable=False),
        sa.Column("article_id", sa.Text, nullable=True),
        sa.Column("published", sa.Date, nullable=True),
        sa.Column("modified", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("failure", sa.Text, nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_seed_files"),
    )


def downgrade() -> None:
    op.drop_table("seed_files")
