"""The store, run unchanged on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from importlib.resources import files
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    String,
    Text,
    column,
    create_engine,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.engine import make_url

from digest.errors import StoreError
from digest.models import Article, Issue, RelatedStory, SubscriberStatus
from digest.store import Store, deliveries, issues, metadata, subscribers
from digest.store.database import SCHEMA_HEAD

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


def make_article(title: str, *, published: dt.date | None = None) -> Article:
    return Article(
        source=f"seeds/{title}.txt",
        id=title.lower(),
        title=title,
        standfirst=f"{title} standfirst",
        paragraphs=("One & two", "<b>Three</b>"),
        related=(
            RelatedStory(
                title=f"{title} related",
                kicker="Briefing",
                summary="Summary",
                authors=("Jane Roe", "John Doe"),
                publisher="The Week UK",
                published=dt.date(2025, 3, 14),
            ),
        ),
        published=published,
    )


def test_migrations_create_exactly_the_declared_tables(database_url: str) -> None:
    with Store.open(database_url) as store, store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        assert {"issues", "issue_articles", "alembic_version"} <= set(
            inspect(connection).get_table_names()
        )


def test_opening_twice_migrates_once(database_url: str) -> None:
    Store.open(database_url).close()
    with Store.open(database_url) as store:
        assert store.issues.get(DAY) is None


def test_the_schema_head_is_alembics(database_url: str) -> None:
    """An up-to-date database is opened without alembic (SCHEMA_HEAD): it must be the head
    of the migrations, or a new migration would never run."""
    config = Config()
    config.set_main_option("script_location", str(files("digest.store") / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD
    with Store.open(database_url) as store:
        assert store.schema_revision() == SCHEMA_HEAD


def test_opening_an_up_to_date_database_does_not_load_alembic(
    database_url: str, tmp_path: Path
) -> None:
    Store.open(database_url).close()
    code = (
        "import sys\n"
        "from digest.store import Store\n"
        f"Store.open({database_url!r}).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


def test_a_saved_issue_comes_back_as_it_went_in(database_url: str) -> None:
    issue = Issue(
        date=DAY,
        articles=(make_article("First", published=dt.date(2026, 11, 2)), make_article("Second")),
    )

    with Store.open(database_url) as store:
        stored, created = store.issues.save(issue, created_at=NOW)
        assert created
        assert stored == issue
    with Store.open(database_url) as store:
        assert store.issues.get(DAY) == issue
        assert store.issues.get(DAY + dt.timedelta(days=1)) is None


def test_an_issue_is_frozen_the_first_save_wins(database_url: str) -> None:
    first = Issue(date=DAY, articles=(make_article("First"),))
    second = Issue(date=DAY, articles=(make_article("Second"),))

    with Store.open(database_url) as store:
        store.issues.save(first, created_at=NOW)
        stored, created = store.issues.save(second, created_at=NOW)

        assert not created
        assert stored == first
        assert store.issues.get(DAY) == first


def test_concurrent_saves_of_one_date_agree(database_url: str) -> None:
    issues = [Issue(date=DAY, articles=(make_article(f"Writer {n}"),)) for n in range(4)]
    results: list[tuple[Issue, bool]] = []
    with Store.open(database_url) as store:
        threads = [
            threading.Thread(
                target=lambda i=issue: results.append(store.issues.save(i, created_at=NOW))
            )
            for issue in issues
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        winners = [issue for issue, created in results if created]
        assert len(winners) == 1
        assert {issue for issue, _ in results} == {winners[0]}
        assert store.issues.get(DAY) == winners[0]


def test_featured_article_ids(database_url: str) -> None:
    with Store.open(database_url) as store:
        store.issues.save(
            Issue(date=DAY, articles=(make_article("A"), make_article("B"))), created_at=NOW
        )
        store.issues.save(
            Issue(date=DAY - dt.timedelta(days=1), articles=(make_article("C"),)), created_at=NOW
        )

        assert store.issues.featured_article_ids() == {"a", "b", "c"}
        assert store.issues.featured_article_ids(excluding=DAY) == {"c"}


def test_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(
        StoreError, match=r"cannot open database postgresql\+psycopg://digest:\*\*\*@127.0.0.1:1/x"
    ):
        Store.open("postgresql+psycopg://digest:secret@127.0.0.1:1/x?connect_timeout=2")


def test_an_unwritable_sqlite_path_is_a_store_error() -> None:
    with pytest.raises(StoreError, match=r"cannot open database sqlite:////proc/digest\.db"):
        Store.open("sqlite:////proc/digest.db")


def test_a_sqlite_path_under_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")

    with pytest.raises(StoreError, match="cannot use database sqlite:///"):
        Store.open(f"sqlite:///{tmp_path}/file/digest.db")


def test_a_schema_from_a_newer_digest_is_named(database_url: str) -> None:
    Store.open(database_url).close()
    with Store.open(database_url) as store, store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))

    with pytest.raises(StoreError, match="written by a newer digest: upgrade digest"):
        Store.open(database_url)


def test_one_send_of_an_issue_at_a_time(database_url: str) -> None:
    with Store.open(database_url) as first, Store.open(database_url) as second:
        with first.send_lock(1):
            with (
                pytest.raises(StoreError, match="another digest send of this issue is running"),
                second.send_lock(1),
            ):
                pass
            with second.send_lock(2):
                pass  # another issue is free
        with second.send_lock(1):
            pass  # released


def test_a_reader_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "digest.db"
    url = f"sqlite:///{path}"

    with Store.open(url, create=False) as store:
        assert store.issues.latest_date(before=dt.date(2026, 11, 23)) is None
    assert not path.parent.exists()

    with Store.open(url) as store:
        store.subscribers.add("ann@example.org", None, now=NOW)
    with Store.open(url, create=False) as store:
        assert [s.email for s in store.subscribers.iterate()] == ["ann@example.org"]


def migrate_to(database_url: str, revision: str) -> None:
    """Bring a new database to ``revision`` only, as an older digest left it."""
    database = make_url(database_url).database
    if database_url.startswith("sqlite") and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(files("digest.store") / "migrations"))
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


# The deliveries table as revision 0005 left it, before it kept the address.
deliveries_0005 = table(
    "deliveries",
    column("issue_id", Integer),
    column("subscriber_id", Integer),
    column("status", String),
    column("attempts", Integer),
    column("created_at", DateTime(timezone=True)),
    column("updated_at", DateTime(timezone=True)),
)


# The issues table as revision 0006 left it, before it kept its send markers.
issues_0006 = table(
    "issues",
    column("id", Integer),
    column("date", Date),
    column("created_at", DateTime(timezone=True)),
    column("html", Text),
)


def test_deliveries_made_before_0006_keep_their_address_past_a_removal(database_url: str) -> None:
    migrate_to(database_url, "0005")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(issues.insert().values(id=1, date=DAY, created_at=NOW))
        connection.execute(
            subscribers.insert(),
            [
                {
                    "id": number,
                    "email": f"Reader{number}@Example.org",
                    "email_key": f"reader{number}@example.org",
                    "status": "active",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for number in (1, 2)
            ],
        )
        connection.execute(
            deliveries_0005.insert(),
            [
                {
                    "issue_id": 1,
                    "subscriber_id": number,
                    "status": "sent",
                    "attempts": 1,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for number in (1, 2)
            ],
        )
    engine.dispose()

    with Store.open(database_url) as store:
        assert store.subscribers.remove("reader1@example.org")
        with store.reading() as connection:
            rows = connection.execute(
                select(
                    deliveries.c.subscriber_id, deliveries.c.email_key, deliveries.c.status
                ).order_by(deliveries.c.email_key)
            ).all()
        assert [tuple(row) for row in rows] == [
            (None, "reader1@example.org", "sent"),
            (2, "reader2@example.org", "sent"),
        ]
        again, added = store.subscribers.add("reader1@example.org", None, now=NOW)
        assert added
        assert store.deliveries.count_to_send(1) == 0
        assert store.deliveries.finished_subscriber_ids(1) == {again.id, 2}


def test_upgrading_to_0009_keeps_every_delivery_tied_to_its_subscriber(
    database_url: str,
) -> None:
    # 0009 widens the subscribers' status check, which SQLite does by copying the table:
    # with foreign keys on, dropping the old copy set every delivery's subscriber to null.
    migrate_to(database_url, "0008")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(issues.insert().values(id=1, date=DAY, created_at=NOW))
        connection.execute(
            subscribers.insert().values(
                id=7,
                email="ann@example.org",
                email_key="ann@example.org",
                status="active",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        connection.execute(
            deliveries.insert().values(
                issue_id=1,
                subscriber_id=7,
                email_key="ann@example.org",
                status="sent",
                attempts=1,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    engine.dispose()

    with Store.open(database_url) as store:
        with store.reading() as connection:
            linked = connection.execute(select(deliveries.c.subscriber_id)).scalars().all()
        assert linked == [7]
        assert store.deliveries.finished_subscriber_ids(1) == {7}
        found = store.subscribers.set_status(
            "ann@example.org", SubscriberStatus.COMPLAINED, now=NOW
        )
        assert found is not None
        assert found.status is SubscriberStatus.COMPLAINED


def test_sends_made_before_0007_are_taken_as_finished(database_url: str) -> None:
    migrate_to(database_url, "0006")
    engine = create_engine(database_url)
    created = {1: NOW, 2: NOW + dt.timedelta(days=1), 3: NOW + dt.timedelta(days=2)}
    with engine.begin() as connection:
        connection.execute(
            issues_0006.insert(),
            [
                # Sent (its rendering frozen), to nobody or to somebody.
                {"id": 1, "date": DAY, "created_at": created[1], "html": "<p>1</p>"},
                # With deliveries but no rendering: queued all the same.
                {
                    "id": 2,
                    "date": DAY + dt.timedelta(days=1),
                    "created_at": created[2],
                    "html": None,
                },
                # Picked and never sent.
                {
                    "id": 3,
                    "date": DAY + dt.timedelta(days=2),
                    "created_at": created[3],
                    "html": None,
                },
            ],
        )
        connection.execute(
            subscribers.insert().values(
                id=1,
                email="reader@example.org",
                email_key="reader@example.org",
                status="active",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        connection.execute(
            deliveries.insert().values(
                issue_id=2,
                subscriber_id=1,
                email_key="reader@example.org",
                status="pending",
                attempts=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    engine.dispose()

    with Store.open(database_url) as store, store.reading() as connection:
        rows = connection.execute(
            select(issues.c.id, issues.c.send_started_at, issues.c.queued_at).order_by(issues.c.id)
        ).all()
    found = [
        (row.id, *(None if at is None else at.replace(tzinfo=dt.UTC) for at in row[1:]))
        for row in rows
    ]
    assert found == [
        (1, created[1], created[1]),
        (2, None, created[2]),
        (3, None, None),
    ]
