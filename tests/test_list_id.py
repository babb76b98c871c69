"""The list identifier is kept at the first send: links keep working for the life of the list."""

from __future__ import annotations

import asyncio
import datetime as dt
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from digest import pipeline, sending
from digest.audience.listid import effective_list_id
from digest.audience.tokens import read_unsubscribe_token
from digest.models import SubscriberStatus
from digest.options import list_naming
from digest.settings import Settings, load_settings
from digest.store import Store, list_ids
from digest.web.app import create_app

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "list-id-test-key-of-at-least-32-characters"
FIRST_ID = "the-digest.news.example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


class RecordingTransport:
    """Keeps every copy it is given."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: dict[str, EmailMessage] = {}

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        parsed = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(parsed, EmailMessage)
        self.sent[recipient] = parsed

    async def close(self) -> None:
        return None


def settings_for(database_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_url": "https://news.example.org",
        "secret_key": KEY,
        "newsletter_name": "The Digest",
        "from_address": "digest@news.example.org",
    }
    return load_settings(**(values | changes))


def send(settings: Settings, *addresses: str) -> dict[str, EmailMessage]:
    """Add ``addresses`` to the list and send them the day's issue; their copies."""
    transport = RecordingTransport()
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([(address, None) for address in addresses], now=NOW)
        asyncio.run(sending.send_issue(settings, store, DAY, transport, secret_key=KEY, now=NOW))
    assert sorted(transport.sent) == sorted(addresses)
    return transport.sent


def link(copy: EmailMessage) -> str:
    """The one-click path of a copy's List-Unsubscribe header."""
    url = str(copy["List-Unsubscribe"]).split(">")[0].lstrip("<")
    return url.removeprefix("https://news.example.org")


def list_id_of(copy: EmailMessage) -> str:
    return str(copy["List-Id"]).rsplit("<", 1)[1].rstrip(">")


def token_list_id(copy: EmailMessage) -> str:
    read = read_unsubscribe_token(KEY, link(copy).rsplit("/", 1)[1])
    assert read is not None
    return read.list_id


def stored_ids(database_url: str) -> list[str]:
    with Store.open(database_url) as store, store.reading() as connection:
        return list(connection.scalars(select(list_ids.c.list_id).order_by(list_ids.c.list_id)))


def status_of(settings: Settings, address: str) -> SubscriberStatus:
    with Store.open(settings.database_url) as store:
        subscriber = store.subscribers.find(address)
    assert subscriber is not None
    return subscriber.status


def post(settings: Settings, path: str) -> int:
    with Store.open(settings.database_url) as store, TestClient(create_app(settings, store)) as c:
        return c.post(path, data=ONE_CLICK).status_code


def test_renaming_the_list_or_its_domain_keeps_old_links_and_the_list_id(
    project: Path, database_url: str
) -> None:
    first = send(settings_for(database_url), "ann@example.org")
    renamed = settings_for(
        database_url, newsletter_name="Morning Brief", from_address="brief@mail.example.com"
    )

    later = send(renamed, "late@example.org")

    assert list_id_of(first["ann@example.org"]) == FIRST_ID
    assert list_id_of(later["late@example.org"]) == FIRST_ID
    assert token_list_id(later["late@example.org"]) == FIRST_ID
    # The list's name in the header may change; its id may not.
    assert str(later["late@example.org"]["List-Id"]).startswith("Morning Brief <")
    assert post(renamed, link(first["ann@example.org"])) == 200
    assert status_of(renamed, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert post(renamed, link(later["late@example.org"])) == 200
    assert status_of(renamed, "late@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert stored_ids(database_url) == [FIRST_ID]


def test_a_new_list_id_setting_is_used_and_old_links_still_work(
    project: Path, database_url: str
) -> None:
    first = send(settings_for(database_url), "ann@example.org")
    moved = settings_for(database_url, list_id="brief.mail.example.com")

    later = send(moved, "late@example.org")

    assert list_id_of(later["late@example.org"]) == "brief.mail.example.com"
    assert token_list_id(later["late@example.org"]) == "brief.mail.example.com"
    assert stored_ids(database_url) == ["brief.mail.example.com", FIRST_ID]
    assert post(moved, link(first["ann@example.org"])) == 200
    assert status_of(moved, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert post(moved, link(later["late@example.org"])) == 200
    assert status_of(moved, "late@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_a_token_for_a_list_id_never_used_is_still_refused(
    project: Path, database_url: str
) -> None:
    from digest.audience.tokens import unsubscribe_token

    send(settings_for(database_url), "ann@example.org")
    with Store.open(database_url) as store:
        ann = store.subscribers.find("ann@example.org")
    assert ann is not None
    other = unsubscribe_token(
        KEY, subscriber_id=ann.id, list_id="other.example.org", email=ann.email
    )

    assert post(settings_for(database_url), f"/unsubscribe/{other}") == 400
    assert status_of(settings_for(database_url), "ann@example.org") is SubscriberStatus.ACTIVE


def test_preview_dry_run_and_test_copies_store_no_list_id(
    project: Path, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url)
    with Store.open(database_url) as store:
        store.subscribers.add("ann@example.org", None, now=NOW)
        pipeline.preview(settings, store, DAY, out_dir=tmp_path / "preview", now=NOW)
        sending.plan_send(settings, store, DAY)
        asyncio.run(
            sending.send_test_copies(
                settings, store, DAY, RecordingTransport(), ["desk@example.org"], secret_key=KEY
            )
        )

    assert stored_ids(database_url) == []


def test_preview_and_test_copies_show_the_stored_list_id(
    project: Path, database_url: str, tmp_path: Path
) -> None:
    send(settings_for(database_url), "ann@example.org")
    renamed = settings_for(database_url, from_address="brief@mail.example.com")
    transport = RecordingTransport()

    with Store.open(database_url) as store:
        shown = pipeline.preview(renamed, store, DAY, out_dir=tmp_path / "preview", now=NOW)
        asyncio.run(
            sending.send_test_copies(
                renamed, store, DAY, transport, ["desk@example.org"], secret_key=KEY
            )
        )

    eml = BytesParser(policy=policy.default).parsebytes(shown.eml_path.read_bytes())
    assert isinstance(eml, EmailMessage)
    assert list_id_of(eml) == FIRST_ID
    assert list_id_of(transport.sent["desk@example.org"]) == FIRST_ID


@pytest.mark.parametrize(
    ("setting", "known", "expected"),
    [
        (None, (), FIRST_ID),
        (None, ("kept.example.org", "later.example.org"), "kept.example.org"),
        ("set.example.org", ("kept.example.org",), "set.example.org"),
        ("set.example.org", (), "set.example.org"),
    ],
)
def test_which_list_id(
    workdir: Path, setting: str | None, known: tuple[str, ...], expected: str
) -> None:
    settings = load_settings(from_address="digest@news.example.org", list_id=setting)

    assert effective_list_id(list_naming(settings), known) == expected


def test_the_store_keeps_each_list_id_once_oldest_first(database_url: str) -> None:
    later = NOW + dt.timedelta(days=3)
    with Store.open(database_url) as store:
        assert store.list_ids.known() == ()
        assert store.list_ids.remember("b.example.org", now=NOW)
        assert not store.list_ids.remember("b.example.org", now=later)
        assert store.list_ids.remember("a.example.org", now=later)

        assert store.list_ids.known() == ("b.example.org", "a.example.org")
