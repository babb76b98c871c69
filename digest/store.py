"""The database: tables, migrations, and the issue records the picker relies on.

SQLite by default (``var/digest.db``) and PostgreSQL through ``postgresql+psycopg://``;
the schema is versioned with Alembic and brought up to date whenever a store is opened.
"""

from __future__ import annotations

import datetime as dt
import fcntl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Row, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from digest.errors import StoreError
from digest.models import Article, Issue, Subscriber, SubscriberStatus

__all__ = [
    "Store",
    "deliveries",
    "issue_articles",
    "issues",
    "list_ids",
    "metadata",
    "subscriber_from_row",
    "subscribers",
]

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
    # The rendering frozen at the first send, so every copy of the issue is the same.
    Column("subject", Text, nullable=True),
    Column("html", Text, nullable=True),
    Column("text", Text, nullable=True),
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

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    # The address case-folded: Ann@example.org and ann@example.org are one subscriber.
    Column("email_key", String(320), nullable=False),
    Column("name", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("email_key"),
    Index("ix_subscribers_status", "status", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    # Kept when the subscriber is removed (set to null): the row still says the issue went
    # to the address, which is what a re-added subscriber is recognised by.
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True
    ),
    # The address, case-folded as subscribers.email_key: the ledger's key for a reader.
    Column("email_key", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("message_id", Text, nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The worker that claimed it, kept after the send; and until when the claim holds.
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    UniqueConstraint("issue_id", "subscriber_id"),
    UniqueConstraint("issue_id", "email_key"),
    Index("ix_deliveries_pending", "issue_id", "status", "id"),
)

# Every list identifier copies went out under, oldest first (see digest.listid).
list_ids = Table(
    "list_ids",
    metadata,
    Column("list_id", String(255), primary_key=True),
    Column("first_used_at", DateTime(timezone=True), nullable=False),
)

# Rows read or written per statement when walking or importing the subscriber list.
_BATCH = 1000
# Any fixed numbers: they name the locks that keep two processes from migrating, or from
# sending one issue, at once.
_MIGRATION_LOCK = 0x6469676573
_SEND_LOCK = 0x64696773
# Advisory locks are per database, not per schema: the schema's name goes into the key, so
# two installations in one database (or two test runs) do not block each other.
_SCHEMA_LOCK = "SELECT {call}(hashtext(current_schema()) # CAST(:space AS integer), :issue)"


class Store:
    """Issue records in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Connect to ``url``, creating a SQLite file's folder, and migrate to the latest schema.

        With ``create`` False, a SQLite file that does not exist yet is not made: an empty
        database in memory stands in for it, so a command that only reads (a preview, a
        dry run) leaves nothing on disk.
        """
        parsed = make_url(url)
        shown = _shown_url(parsed)
        try:
            sqlite = parsed.get_backend_name() == "sqlite"
            in_file = sqlite and parsed.database not in (None, "", ":memory:")
            if in_file and not create and not Path(str(parsed.database)).exists():
                # One connection for the whole life of the store: each new connection to
                # "sqlite://" would be a new, empty database.
                engine = create_engine("sqlite://", poolclass=StaticPool)
            elif sqlite and not in_file:
                # The same, and a send's recorder thread must see the same database.
                engine = create_engine(parsed, poolclass=StaticPool)
            else:
                if in_file:
                    Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
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
        with self.reading() as connection:
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
        with self.reading() as connection:
            latest: dt.date | None = connection.scalar(query)
        return latest

    def featured_article_ids(self, *, excluding: dt.date | None = None) -> set[str]:
        """Ids of the articles every stored issue (but the one for ``excluding``) featured."""
        query = select(issue_articles.c.article_id).join(
            issues, issues.c.id == issue_articles.c.issue_id
        )
        if excluding is not None:
            query = query.where(issues.c.date != excluding)
        with self.reading() as connection:
            return set(connection.scalars(query.distinct()))

    def save_issue(self, issue: Issue, *, created_at: dt.datetime) -> tuple[Issue, bool]:
        """Freeze ``issue``; if one for its date exists already, keep that one instead.

        Returns the stored issue and whether this call created it. The unique date settles
        a race between two processes: the loser reads the winner's issue.
        """
        try:
            with self.writing() as connection:
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
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            existing = self.get_issue(issue.date)
            if existing is None:
                raise
            return existing, False
        return issue, True

    def issue_id(self, date: dt.date) -> int | None:
        """The stored issue's row id, or None."""
        with self.reading() as connection:
            found: int | None = connection.scalar(select(issues.c.id).where(issues.c.date == date))
        return found

    def rendering(self, date: dt.date) -> tuple[str, str, str] | None:
        """The subject, HTML and text frozen with the issue at its first send, if any."""
        query = select(issues.c.subject, issues.c.html, issues.c.text).where(issues.c.date == date)
        with self.reading() as connection:
            row = connection.execute(query).first()
        if row is None or row.html is None:
            return None
        return row.subject, row.html, row.text

    def sent_issues(self) -> list[tuple[dt.date, str]]:
        """Date and subject of each issue that went out (its rendering is frozen), newest first."""
        query = (
            select(issues.c.date, issues.c.subject)
            .where(issues.c.html.is_not(None))
            .order_by(issues.c.date.desc())
        )
        with self.reading() as connection:
            return [(row.date, row.subject) for row in connection.execute(query)]

    def freeze_rendering(self, date: dt.date, *, subject: str, html: str, text: str) -> None:
        """Keep the issue's rendering; one frozen before (by another sender) stays."""
        statement = (
            issues.update()
            .where(issues.c.date == date, issues.c.html.is_(None))
            .values(subject=subject, html=html, text=text)
        )
        with self.writing() as connection:
            connection.execute(statement)

    @contextmanager
    def send_lock(self, issue_id: int, *, shared: bool = False) -> Iterator[None]:
        """Held for a whole send: a second send of the same issue is refused, not doubled.

        On PostgreSQL an advisory lock on its own connection. ``shared`` is for workers
        (``digest send --worker``): any number of them hold it together, and none while a
        plain send holds it alone. On SQLite a lock on a file beside the database, always
        exclusive (one machine, one sender, is all SQLite serves).
        """
        if self.engine.dialect.name == "postgresql":
            kind = "_shared" if shared else ""
            with self.engine.connect() as connection:
                got = connection.scalar(
                    text(_SCHEMA_LOCK.format(call=f"pg_try_advisory_lock{kind}")),
                    {"space": _SEND_LOCK, "issue": issue_id},
                )
                # A session lock outlives the transaction: end it, so the connection does
                # not sit idle in one for the whole send (a server may kill such sessions).
                connection.commit()
                if not got:
                    raise StoreError(
                        "a plain digest send of this issue is running: a worker cannot "
                        "start beside it; run the worker again when it has finished"
                        if shared
                        else "another digest send of this issue is running"
                    )
                try:
                    yield
                finally:
                    connection.execute(
                        text(_SCHEMA_LOCK.format(call=f"pg_advisory_unlock{kind}")),
                        {"space": _SEND_LOCK, "issue": issue_id},
                    )
                    connection.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with Path(f"{database}.send-{issue_id}.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError("another digest send of this issue is running") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def count_to_send(self, issue_id: int | None) -> int:
        """Active subscribers the issue has not yet been sent to (or failed for good)."""
        query = (
            select(func.count())
            .select_from(subscribers)
            .where(subscribers.c.status == SubscriberStatus.ACTIVE.value)
        )
        if issue_id is not None:
            # By address: a subscriber removed and added again was sent the issue too.
            handled = select(deliveries.c.id).where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.email_key == subscribers.c.email_key,
                deliveries.c.status != "pending",
            )
            query = query.where(~handled.exists())
        with self.reading() as connection:
            return int(connection.scalar(query) or 0)

    def finished_subscriber_ids(self, issue_id: int) -> set[int]:
        """Subscribers whose address has a delivery of the issue sent or failed for good."""
        query = (
            select(subscribers.c.id)
            .join(deliveries, deliveries.c.email_key == subscribers.c.email_key)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.status != "pending")
        )
        with self.reading() as connection:
            return set(connection.scalars(query))

    def add_subscriber(
        self, email: str, name: str | None, *, now: dt.datetime
    ) -> tuple[Subscriber, bool]:
        """Add ``email`` (already normalised) as active; an address on the list is left as it is.

        Returns the subscriber and whether this call added them.
        """
        existing = self.find_subscriber(email)
        if existing is not None:
            return existing, False
        try:
            with self.writing() as connection:
                connection.execute(
                    subscribers.insert().values(
                        email=email,
                        email_key=email.casefold(),
                        name=name,
                        status=SubscriberStatus.ACTIVE.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except StoreError:
            existing = self.find_subscriber(email)
            if existing is None:
                raise
            return existing, False
        added = self.find_subscriber(email)
        assert added is not None
        return added, True

    def import_subscribers(
        self, rows: Iterable[tuple[str, str | None]], *, now: dt.datetime
    ) -> tuple[int, int]:
        """Add every new address of ``rows`` (email, name); returns (added, already there)."""
        wanted: dict[str, tuple[str, str | None]] = {}
        for email, name in rows:
            wanted.setdefault(email.casefold(), (email, name))
        added = 0
        keys = list(wanted)
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            with self.writing() as connection:
                known = set(
                    connection.scalars(
                        select(subscribers.c.email_key).where(subscribers.c.email_key.in_(batch))
                    )
                )
                new = [
                    {
                        "email": wanted[key][0],
                        "email_key": key,
                        "name": wanted[key][1],
                        "status": SubscriberStatus.ACTIVE.value,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for key in batch
                    if key not in known
                ]
                if new:
                    connection.execute(subscribers.insert(), new)
                added += len(new)
        return added, len(keys) - added

    def find_subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address, whatever its case."""
        with self.reading() as connection:
            row = connection.execute(
                select(subscribers).where(subscribers.c.email_key == email.casefold())
            ).first()
        return subscriber_from_row(row) if row is not None else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber with this id, or None."""
        with self.reading() as connection:
            row = connection.execute(
                select(subscribers).where(subscribers.c.id == subscriber_id)
            ).first()
        return subscriber_from_row(row) if row is not None else None

    def iter_subscribers(
        self, *, status: SubscriberStatus | None = None, batch_size: int = _BATCH
    ) -> Iterator[Subscriber]:
        """Every subscriber (with ``status``), by id, read ``batch_size`` at a time.

        Each batch is a query of its own from the last id seen, so memory stays flat
        however long the list, and no connection is held between batches.
        """
        after = 0
        while True:
            query = select(subscribers).where(subscribers.c.id > after)
            if status is not None:
                query = query.where(subscribers.c.status == status.value)
            with self.reading() as connection:
                rows = connection.execute(query.order_by(subscribers.c.id).limit(batch_size)).all()
            if not rows:
                return
            yield from map(subscriber_from_row, rows)
            after = rows[-1].id

    def set_subscriber_status(
        self, email: str, status: SubscriberStatus, *, now: dt.datetime
    ) -> Subscriber | None:
        """Change a subscriber's status; None if the address is not on the list."""
        with self.writing() as connection:
            connection.execute(
                subscribers.update()
                .where(subscribers.c.email_key == email.casefold())
                .values(status=status.value, updated_at=now)
            )
        return self.find_subscriber(email)

    def unsubscribe(self, subscriber_id: int, *, now: dt.datetime) -> bool:
        """Unsubscribe by id (an unsubscribe link's); False if there is no such subscriber.

        Only an active subscriber changes: a bounced one stays bounced, and doing it again
        changes nothing.
        """
        with self.writing() as connection:
            connection.execute(
                subscribers.update()
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.status == SubscriberStatus.ACTIVE.value,
                )
                .values(status=SubscriberStatus.UNSUBSCRIBED.value, updated_at=now)
            )
            found = connection.scalar(
                select(subscribers.c.id).where(subscribers.c.id == subscriber_id)
            )
        return found is not None

    def remove_subscriber(self, email: str) -> bool:
        """Delete a subscriber altogether; False if the address is not on the list.

        Their deliveries stay, keyed by address (``subscriber_id`` becomes null): added
        again, the address is not sent an issue it already had.
        """
        with self.writing() as connection:
            result = connection.execute(
                subscribers.delete().where(subscribers.c.email_key == email.casefold())
            )
        return bool(result.rowcount)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads; database errors become :class:`StoreError`."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the database: {_reason(exc)}") from exc

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction; database errors become :class:`StoreError`."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the database: {_reason(exc)}") from exc

    def known_list_ids(self) -> tuple[str, ...]:
        """Every list id copies went out under, the first first (see :mod:`digest.listid`)."""
        query = select(list_ids.c.list_id).order_by(list_ids.c.first_used_at, list_ids.c.list_id)
        with self.reading() as connection:
            return tuple(connection.scalars(query))

    def remember_list_id(self, list_id: str, *, now: dt.datetime) -> bool:
        """Keep ``list_id`` as one copies went out under; False if it was kept before.

        Two senders may keep the same id at once (workers sharing an issue): the second
        changes nothing, on SQLite and PostgreSQL alike.
        """
        insert = postgresql_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(list_ids)
            .values(list_id=list_id, first_used_at=now)
            .on_conflict_do_nothing(index_elements=[list_ids.c.list_id])
            # A row back means it was added (psycopg gives no row count for this).
            .returning(list_ids.c.list_id)
        )
        with self.writing() as connection:
            return connection.execute(statement).first() is not None


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _shown_url(url: URL) -> str:
    """``url`` for messages, its password hidden: libpq takes one in the query too."""
    hidden = {key: "***" for key in url.query if "password" in key.casefold()}
    shown = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def subscriber_from_row(row: Row[Any]) -> Subscriber:
    """A :class:`Subscriber` from a row with the subscribers table's columns."""
    return Subscriber(
        id=row.id, email=row.email, name=row.name, status=SubscriberStatus(row.status)
    )


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
    # Write-ahead logging lets readers (a preview, digest serve) work while a send writes,
    # and with synchronous=NORMAL a commit survives the process being killed without an
    # fsync each: a send records every delivery as it completes.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # Wait for a writer instead of failing at once when another process holds the lock.
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.close()
