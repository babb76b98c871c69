"""The database: tables, migrations, and the issue records the picker relies on.

SQLite by default (``var/digest.db``) and PostgreSQL through ``postgresql+psycopg://``;
the schema is versioned with Alembic and brought up to date whenever a store is opened.
"""

from __future__ import annotations

import datetime as dt
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from digest.errors import StoreError
from digest.models import Article, Issue

__all__ = ["Store", "issue_articles", "issues", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("date", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("date"),
)

issue_articles = Table(
    "issue_articles",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("article_id", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("published", Date, nullable=True),
    # The article exactly as it went into the issue, related stories trimmed.
    Column("content", JSON, nullable=False),
    UniqueConstraint("issue_id", "article_id"),
    Index(None, "article_id"),
)

# Any fixed number: it names the lock that keeps two processes from migrating at once.
_MIGRATION_LOCK = 0x6469676573


class Store:
    """Issue records in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``url``, creating a SQLite file's folder, and migrate to the latest schema."""
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
        try:
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (
                None,
                "",
                ":memory:",
            ):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed)
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise StoreError(f"cannot use database {shown}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        try:
            store.migrate()
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open database {shown}: {str(reason).strip()}") from exc
        except CommandError as exc:
            engine.dispose()
            raise StoreError(
                f"database {shown} has a schema this digest does not know ({exc}); "
                "it was written by a newer digest: upgrade digest"
            ) from exc
        return store

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> None:
        """Apply every migration not yet applied."""
        config = Config()
        config.set_main_option("script_location", str(files("digest") / "migrations"))
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def get_issue(self, date: dt.date) -> Issue | None:
        """The frozen issue for ``date``, or None if none was created."""
        with self.engine.connect() as connection:
            issue_id = connection.scalar(select(issues.c.id).where(issues.c.date == date))
            if issue_id is None:
                return None
            rows = connection.execute(
                select(issue_articles.c.content, issue_articles.c.published)
                .where(issue_articles.c.issue_id == issue_id)
                .order_by(issue_articles.c.position)
            )
            articles = tuple(
                Article.from_dict(row.content, published=row.published) for row in rows
            )
        return Issue(date=date, articles=articles)

    def latest_issue_date(self, *, before: dt.date) -> dt.date | None:
        """The date of the newest stored issue before ``before``, if any."""
        query = select(func.max(issues.c.date)).where(issues.c.date < before)
        with self.engine.connect() as connection:
            latest: dt.date | None = connection.scalar(query)
        return latest

    def featured_article_ids(self, *, excluding: dt.date | None = None) -> set[str]:
        """Ids of the articles every stored issue (but the one for ``excluding``) featured."""
        query = select(issue_articles.c.article_id).join(
            issues, issues.c.id == issue_articles.c.issue_id
        )
        if excluding is not None:
            query = query.where(issues.c.date != excluding)
        with self.engine.connect() as connection:
            return set(connection.scalars(query.distinct()))

    def save_issue(self, issue: Issue, *, created_at: dt.datetime) -> tuple[Issue, bool]:
        """Freeze ``issue``; if one for its date exists already, keep that one instead.

        Returns the stored issue and whether this call created it. The unique date settles
        a race between two processes: the loser reads the winner's issue.
        """
        try:
            with self.engine.begin() as connection:
                issue_id = connection.execute(
                    issues.insert()
                    .values(date=issue.date, created_at=created_at)
                    .returning(issues.c.id)
                ).scalar_one()
                rows = [
                    _article_row(issue_id, position, article)
                    for position, article in enumerate(issue.articles)
                ]
                if rows:
                    connection.execute(issue_articles.insert(), rows)
        except IntegrityError:
            existing = self.get_issue(issue.date)
            if existing is None:
                raise
            return existing, False
        return issue, True


def _article_row(issue_id: int, position: int, article: Article) -> dict[str, Any]:
    return {
        "issue_id": issue_id,
        "position": position,
        "article_id": article.id,
        "source": article.source,
        "title": article.title,
        "published": article.published,
        "content": article.to_dict(),
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # Wait for a writer instead of failing at once when another process holds the lock.
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.close()
