"""Signup with double opt-in, the confirmation link, the preference page, export and erasure,
through the ASGI app with a clock the tests control; mail goes to the local outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from digest import sending
from digest.audience.signup import HONEYPOT_FIELD, TOKEN_FIELD, form_token
from digest.audience.tokens import Purpose, keyed_hash, subscriber_token
from digest.models import SubscriberStatus
from digest.readers.signup import remove_unconfirmed
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.store.suppression import SendRefusal, record_refusals
from digest.store.tables import deliveries
from digest.web.app import create_app

from .conftest import FIXTURES
from .smtp_sink import Recorder

KEY = "signup-test-key-of-at-least-32-characters"
START = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
SITE = "https://news.example.org"


class Clock:
    """The time the app judges tokens and limits by; tests move it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def site_settings(project: Path, database_url: str, **values: Any) -> Settings:
    """The settings of a site at SITE, mail to the project's outbox, and ``values``."""
    return load_settings(
        database_url=database_url,
        public_url=SITE,
        secret_key=KEY,
        outbox_dir=project / "var" / "outbox",
        **values,
    )


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    return site_settings(project, database_url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.database_url) as opened:
        yield opened


@pytest.fixture
def client(settings: Settings, store: Store, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store, clock=clock)) as test_client:
        yield test_client


def mails(settings: Settings) -> list[EmailMessage]:
    folder = settings.outbox_dir / "new"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage, kind: str) -> str:
    """The path of the message's /``kind``/TOKEN link, from its text part."""
    found = re.search(rf"{SITE}(/{kind}/[A-Za-z0-9._-]+)", text_of(message))
    assert found is not None, f"no /{kind}/ link in the message"
    return found[1]


def sign_up(client: TestClient, clock: Clock, email: str, *, name: str = "", **extra: str) -> str:
    """Load the form, wait as a person would, post it; the answer's text."""
    page = client.get("/subscribe")
    assert page.status_code == 200
    token = re.search(rf'name="{TOKEN_FIELD}" value="([^"]+)"', page.text)
    assert token is not None
    clock.advance(seconds=5)
    data = {"email": email, "name": name, TOKEN_FIELD: token[1], HONEYPOT_FIELD: ""} | extra
    answer = client.post("/subscribe", data=data)
    assert answer.status_code == 200, answer.text
    return answer.text


def add_seed(settings: Settings, name: str) -> None:
    (settings.seeds_dir / name).write_bytes((FIXTURES / name).read_bytes())


def status_of(store: Store, email: str) -> SubscriberStatus | None:
    subscriber = store.subscribers.find(email)
    return subscriber.status if subscriber is not None else None


def test_sign_up_confirm_and_receive_the_next_issue(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    sign_up(client, clock, "ann@example.org", name="Ann")

    assert status_of(store, "ann@example.org") is SubscriberStatus.PENDING
    [confirmation] = mails(settings)
    assert confirmation["To"].addresses[0].addr_spec == "ann@example.org"
    assert "List-Unsubscribe" not in confirmation  # not a list message
    assert confirmation.get_body(("html",)) is not None
    assert "style=" in str(confirmation.get_body(("html",)).get_content())  # type: ignore[union-attr]
    path = link_in(confirmation, "confirm")

    shown = client.get(path)  # what a link scanner does
    assert shown.status_code == 200
    assert "Confirm" in shown.text
    assert status_of(store, "ann@example.org") is SubscriberStatus.PENDING

    clock.advance(hours=3)
    confirmed = client.post(path)
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    assert subscriber.confirmed_at == clock.now
    [consent] = store.consent.of(subscriber.id)
    assert consent.method == "form"
    assert consent.confirmed_at == clock.now
    assert consent.created_at == START + dt.timedelta(seconds=5)
    assert consent.text is not None
    assert "The Digest" in consent.text
    assert consent.ip == "testclient"
    assert consent.user_agent == "testclient"
    # Posted again, the link confirms nothing more.
    assert "already subscribed" in client.post(path).text

    asyncio.run(sending.send_day(settings, store, clock.now.date()))
    issue = mails(settings)[-1]
    assert issue["To"].addresses[0].addr_spec == "ann@example.org"
    assert issue["To"].addresses[0].display_name == "Ann"
    assert "/preferences/" in text_of(issue)


def test_the_answer_never_tells_whether_an_address_is_on_the_list(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    store.subscribers.add("active@example.org", None, now=START)
    store.subscribers.add("gone@example.org", None, now=START)
    store.subscribers.set_status("gone@example.org", SubscriberStatus.BOUNCED, now=START)
    answers = {
        email: sign_up(client, clock, email)
        for email in (
            "new@example.org",
            "active@example.org",
            "gone@example.org",
        )
    }
    answers["new again"] = sign_up(client, clock, "new@example.org")  # pending, too soon

    assert len(set(answers.values())) == 1
    assert [m["To"].addresses[0].addr_spec for m in mails(settings)] == ["new@example.org"]
    assert status_of(store, "gone@example.org") is SubscriberStatus.BOUNCED
    gone = store.subscribers.find("gone@example.org")
    assert gone is not None
    assert [e.kind for e in store.consent.history(gone.id)][-1] == "signup-refused"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("honeypot", "honeypot"),
        ("too fast", "too-fast"),
        ("old form", "expired"),
        ("forged", "no-token"),
    ],
)
def test_bots_are_refused_with_the_same_page_and_nothing_kept(
    settings: Settings,
    store: Store,
    client: TestClient,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    case: str,
    reason: str,
) -> None:
    person = sign_up(client, clock, "person@example.org")
    token = form_token(KEY, clock.now, "0" * 64)
    data = {"email": "bot@example.org", TOKEN_FIELD: token, HONEYPOT_FIELD: ""}
    if case == "honeypot":
        clock.advance(seconds=10)
        data[HONEYPOT_FIELD] = "https://spam.example"
    elif case == "too fast":
        clock.advance(seconds=1)
    elif case == "old form":
        clock.advance(days=1, seconds=1)
    else:
        data[TOKEN_FIELD] = token[:-3] + "AAA"
    with caplog.at_level(logging.INFO):
        answer = client.post("/subscribe", data=data)

    assert answer.status_code == 200
    assert answer.text == person
    assert status_of(store, "bot@example.org") is None
    assert len(mails(settings)) == 1
    assert f"signup not confirmed by mail: bot ({reason})" in caplog.text
    assert "bot@example.org" not in caplog.text


def test_a_form_pasted_elsewhere_asks_once_more_on_a_form_with_a_token(
    store: Store, client: TestClient
) -> None:
    answer = client.post("/subscribe", data={"email": "ann@example.org", "name": "Ann"})

    assert answer.status_code == 200
    assert 'value="ann@example.org"' in answer.text
    assert "press Subscribe to continue" in answer.text
    assert status_of(store, "ann@example.org") is None


def test_a_malformed_address_is_said_and_kept_nowhere(
    store: Store, client: TestClient, clock: Clock
) -> None:
    page = client.get("/subscribe")
    token = re.search(rf'name="{TOKEN_FIELD}" value="([^"]+)"', page.text)
    assert token is not None
    clock.advance(seconds=5)
    answer = client.post("/subscribe", data={"email": "ann@", TOKEN_FIELD: token[1]})

    assert answer.status_code == 400
    assert "not a valid address" in answer.text
    assert store.subscribers.find("ann@") is None


def test_rate_limits_per_ip_and_per_address_follow_the_clock(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    for number in range(settings.signup.per_ip_per_hour + 1):
        sign_up(client, clock, f"reader{number}@example.org")
    limited = f"reader{settings.signup.per_ip_per_hour}@example.org"
    assert status_of(store, limited) is None
    assert len(mails(settings)) == settings.signup.per_ip_per_hour

    clock.advance(hours=1)
    sign_up(client, clock, limited)
    assert status_of(store, limited) is SubscriberStatus.PENDING


def test_a_pending_address_is_sent_the_confirmation_again_once_an_hour(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    sign_up(client, clock, "ann@example.org")
    sign_up(client, clock, "ann@example.org")
    assert len(mails(settings)) == 1
    clock.advance(hours=1)
    sign_up(client, clock, "ann@example.org")
    assert len(mails(settings)) == 2
    # Either link confirms.
    assert client.post(link_in(mails(settings)[0], "confirm")).status_code == 200
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE


def test_bad_and_expired_confirmation_links_get_400_and_change_nothing(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    sign_up(client, clock, "ann@example.org")
    path = link_in(mails(settings)[0], "confirm")
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    other_list = subscriber_token(
        KEY,
        Purpose.CONFIRM,
        subscriber_id=subscriber.id,
        list_id="other.example.org",
        email=subscriber.email,
        issued_at=clock.now,
    )
    preferences = subscriber_token(
        KEY,
        Purpose.PREFERENCES,
        subscriber_id=subscriber.id,
        list_id=path and "the-digest.localhost",
        email=subscriber.email,
    )
    for bad in (path[:-4] + "AAAA", f"/confirm/{other_list}", f"/confirm/{preferences}"):
        assert client.get(bad).status_code == 400
        assert client.post(bad).status_code == 400
    clock.advance(hours=settings.signup.confirm_hours, seconds=1)
    assert client.get(path).status_code == 400
    expired = client.post(path)
    assert expired.status_code == 400
    assert "expired" in expired.text
    assert status_of(store, "ann@example.org") is SubscriberStatus.PENDING


def test_signups_never_confirmed_are_removed_after_pending_days(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    sign_up(client, clock, "late@example.org")
    clock.advance(days=settings.signup.pending_days - 1)
    sign_up(client, clock, "recent@example.org")
    clock.advance(days=1, seconds=1)

    assert remove_unconfirmed(settings, store, now=clock.now) == 1
    assert status_of(store, "late@example.org") is None
    assert status_of(store, "recent@example.org") is SubscriberStatus.PENDING


def test_an_unsubscribed_reader_comes_back_by_confirming_again(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    store.subscribers.add("ann@example.org", None, now=START)
    store.subscribers.set_status("ann@example.org", SubscriberStatus.UNSUBSCRIBED, now=START)
    sign_up(client, clock, "ann@example.org")
    assert status_of(store, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED

    client.post(link_in(mails(settings)[0], "confirm"))
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    assert [c.method for c in store.consent.of(subscriber.id)] == ["cli", "form"]


def test_a_welcome_mail_follows_the_confirmation_when_asked_for(
    project: Path, database_url: str, clock: Clock
) -> None:
    settings = site_settings(project, database_url, signup={"welcome": True})
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store, clock=clock)) as client,
    ):
        sign_up(client, clock, "ann@example.org")
        client.post(link_in(mails(settings)[0], "confirm"))
    welcome = mails(settings)[1]
    assert welcome["Subject"] == "Welcome to The Digest"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link_in(welcome, "preferences")


@pytest.fixture
def reader(settings: Settings, store: Store, client: TestClient, clock: Clock) -> str:
    """The preference page's path of a confirmed reader, from the issue they received."""
    sign_up(client, clock, "ann@example.org", name="Ann")
    client.post(link_in(mails(settings)[0], "confirm"))
    asyncio.run(sending.send_day(settings, store, clock.now.date()))
    return link_in(mails(settings)[-1], "preferences")


def test_the_preference_page_changes_nothing_on_get(
    store: Store, client: TestClient, reader: str
) -> None:
    page = client.get(reader)
    assert page.status_code == 200
    assert 'value="Ann"' in page.text
    assert "ann@example.org" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE


def test_pause_skips_the_sends_until_the_day_and_then_they_resume(
    settings: Settings, store: Store, client: TestClient, clock: Clock, reader: str
) -> None:
    today = clock.now.date()
    until = today + dt.timedelta(days=3)
    answer = client.post(reader, data={"action": "pause", "until": until.isoformat()})
    assert answer.status_code == 200
    assert "Paused" in answer.text

    sent = len(mails(settings))
    # Something new to send each day.
    add_seed(settings, "lead_byline.txt")
    plan = sending.plan_send(settings, store, today + dt.timedelta(days=1))
    assert (plan.nothing_new, plan.would_send) == (False, 0)
    asyncio.run(sending.send_day(settings, store, today + dt.timedelta(days=1)))
    assert len(mails(settings)) == sent
    add_seed(settings, "dated_byline.txt")
    asyncio.run(sending.send_day(settings, store, until))
    assert len(mails(settings)) == sent + 1

    for bad in (today.isoformat(), (today + dt.timedelta(days=400)).isoformat(), "soon"):
        assert client.post(reader, data={"action": "pause", "until": bad}).status_code == 400


def test_rename_unsubscribe_and_resubscribe_from_the_page(
    store: Store, client: TestClient, reader: str
) -> None:
    assert client.post(reader, data={"action": "name", "name": "Ann B."}).status_code == 200
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    assert subscriber.name == "Ann B."
    assert client.post(reader, data={"action": "name", "name": "a@b"}).status_code == 400

    assert "Unsubscribed" in client.post(reader, data={"action": "unsubscribe"}).text
    assert status_of(store, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert "Resubscribe" in client.get(reader).text
    assert "Welcome back" in client.post(reader, data={"action": "resubscribe"}).text
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE
    kinds = [(e.kind, e.cause) for e in store.consent.history(subscriber.id)]
    assert ("status", "resubscribed from the preferences page") in kinds
    assert ("status", "the preferences page") in kinds


def test_download_my_data_gives_everything_held(
    store: Store, client: TestClient, reader: str
) -> None:
    answer = client.post(reader, data={"action": "export"})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith("attachment")
    data = json.loads(answer.text)
    assert data["subscriber"]["email"] == "ann@example.org"
    assert data["consents"][0]["method"] == "form"
    assert data["consents"][0]["ip"] == "testclient"
    assert [d["status"] for d in data["deliveries"]] == ["sent"]
    assert [e["kind"] for e in data["history"]][:2] == ["joined", "confirmed"]


def test_delete_me_erases_everything_and_the_address_cannot_come_back(
    settings: Settings,
    store: Store,
    client: TestClient,
    clock: Clock,
    reader: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asking = client.post(reader, data={"action": "erase"})
    assert "Delete everything?" in asking.text
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE

    with caplog.at_level(logging.INFO):
        done = client.post(reader, data={"action": "erase-confirmed"})
    assert "Your data is deleted" in done.text
    assert status_of(store, "ann@example.org") is None
    assert store.deliveries.to_address("ann@example.org") == []
    assert store.erasures.erased_at([keyed_hash(KEY, "ann@example.org", purpose="address")])
    assert "ann@example.org" not in caplog.text
    assert "erased at the request of the reader" in caplog.text
    # The old links do nothing now; signing up again sends nothing.
    assert client.get(reader).status_code == 400
    before = len(mails(settings))
    clock.advance(hours=2)
    sign_up(client, clock, "ann@example.org")
    assert len(mails(settings)) == before
    assert status_of(store, "ann@example.org") is None


def test_the_limit_per_address_holds(
    settings: Settings,
    client: TestClient,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = settings.signup.per_address_per_hour
    with caplog.at_level(logging.INFO, logger="digest.readers.signup"):
        # Within the limit per IP (5): the address's own limit (3) is what refuses.
        for _ in range(limit + 1):
            sign_up(client, clock, "ann@example.org")
    outcomes = [r.getMessage().split(": ", 1)[1] for r in caplog.records]
    assert outcomes == ["too-soon"] * (limit - 1) + ["rate-limited (3 an hour per address)"]
    clock.advance(hours=1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="digest.readers.signup"):
        sign_up(client, clock, "ann@example.org")
    assert caplog.records == []  # sent again
    assert len(mails(settings)) == 2


def test_only_a_keyed_hash_of_the_ip_is_kept_when_asked(
    project: Path, database_url: str, clock: Clock
) -> None:
    settings = site_settings(project, database_url, privacy={"store_ip": False})
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store, clock=clock)) as client,
    ):
        sign_up(client, clock, "ann@example.org")
        subscriber = store.subscribers.find("ann@example.org")
        assert subscriber is not None
        [consent] = store.consent.of(subscriber.id)
    assert consent.ip is None
    assert consent.ip_hash == keyed_hash(KEY, "testclient", purpose="ip")


def test_bad_preference_links_get_400_and_change_nothing(
    store: Store, client: TestClient, reader: str
) -> None:
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    token = reader.removeprefix("/preferences/")
    unsubscribe = subscriber_token(
        KEY,
        Purpose.UNSUBSCRIBE,
        subscriber_id=subscriber.id,
        list_id="the-digest.localhost",
        email=subscriber.email,
    )
    other_list = subscriber_token(
        KEY,
        Purpose.PREFERENCES,
        subscriber_id=subscriber.id,
        list_id="other.example.org",
        email=subscriber.email,
    )
    other_key = subscriber_token(
        KEY[::-1],
        Purpose.PREFERENCES,
        subscriber_id=subscriber.id,
        list_id="the-digest.localhost",
        email=subscriber.email,
    )
    for bad in (token[:-2] + "xx", unsubscribe, other_list, other_key):
        assert client.get(f"/preferences/{bad}").status_code == 400
        answer = client.post(f"/preferences/{bad}", data={"action": "unsubscribe"})
        assert answer.status_code == 400
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE
    assert client.post(reader, data={"action": "nonsense"}).status_code == 400


def test_without_a_public_url_there_is_no_signup(project: Path, database_url: str) -> None:
    settings = load_settings(database_url=database_url, secret_key=KEY)
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store)) as client,
    ):
        assert client.get("/subscribe").status_code == 404
        assert client.get("/preferences/x").status_code == 404


def test_the_unsubscribed_page_offers_the_way_back_and_the_archive_the_way_in(
    settings: Settings, store: Store, client: TestClient, reader: str
) -> None:
    issue = mails(settings)[-1]
    one_click = str(issue["List-Unsubscribe"]).split(">")[0].lstrip("<").removeprefix(SITE)
    answer = client.post(one_click, data={"List-Unsubscribe": "One-Click"})
    assert "Unsubscribed" in answer.text
    assert f'href="{SITE}{reader}"' in answer.text
    assert "Resubscribe" in client.get(reader).text
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    assert store.consent.history(subscriber.id)[-1].cause == "the unsubscribe link in an issue"
    assert 'href="/subscribe"' in client.get("/issues").text


def test_an_old_confirmation_link_does_not_undo_an_unsubscribe(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    sign_up(client, clock, "ann@example.org")
    path = link_in(mails(settings)[0], "confirm")
    client.post(path)
    clock.advance(hours=1)
    store.subscribers.set_status("ann@example.org", SubscriberStatus.UNSUBSCRIBED, now=clock.now)
    clock.advance(hours=1)

    assert client.get(path).status_code == 400
    assert client.post(path).status_code == 400
    assert status_of(store, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_confirming_marks_only_the_signup_it_confirms(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    store.subscribers.add("ann@example.org", None, now=START)
    store.subscribers.set_status("ann@example.org", SubscriberStatus.UNSUBSCRIBED, now=START)
    clock.advance(hours=1)
    sign_up(client, clock, "ann@example.org")
    client.post(link_in(mails(settings)[0], "confirm"))
    subscriber = store.subscribers.find("ann@example.org")
    assert subscriber is not None
    assert [(c.method, c.confirmed_at) for c in store.consent.of(subscriber.id)] == [
        ("cli", None),
        ("form", clock.now),
    ]


def test_the_consent_kept_is_the_wording_the_form_showed(
    project: Path, database_url: str, clock: Clock
) -> None:
    before = {"consent_text": "Old wording for {newsletter_name}."}
    after = {"consent_text": "New wording."}
    with Store.open(database_url) as store:
        with TestClient(
            create_app(site_settings(project, database_url, signup=before), store, clock=clock)
        ) as old:
            page = old.get("/subscribe")
        assert "Old wording for The Digest." in page.text
        token = re.search(rf'name="{TOKEN_FIELD}" value="([^"]+)"', page.text)
        assert token is not None
        clock.advance(seconds=30)
        with TestClient(
            create_app(site_settings(project, database_url, signup=after), store, clock=clock)
        ) as new:
            new.post("/subscribe", data={"email": "ann@example.org", TOKEN_FIELD: token[1]})
        subscriber = store.subscribers.find("ann@example.org")
        assert subscriber is not None
        [consent] = store.consent.of(subscriber.id)
    assert consent.text == "Old wording for The Digest."


def test_a_signup_for_an_address_that_bounced_before_it_was_removed_keeps_nothing(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    store.subscribers.add("gone@example.org", None, now=START)
    asyncio.run(sending.send_day(settings, store, START.date()))
    issue_id = store.issues.id_of(START.date())
    assert issue_id is not None
    subscriber = store.subscribers.find("gone@example.org")
    assert subscriber is not None
    with store.writing() as connection:
        delivery_id = connection.scalar(
            select(deliveries.c.id).where(deliveries.c.issue_id == issue_id)
        )
        assert delivery_id is not None
        refusal = SendRefusal(
            delivery_id=delivery_id, subscriber_id=subscriber.id, error="550 5.1.1 no such user"
        )
        record_refusals(connection, issue_id, [refusal], now=START)
    assert store.subscribers.remove("gone@example.org")
    sent = len(mails(settings))

    sign_up(client, clock, "gone@example.org", name="Someone Else")

    assert status_of(store, "gone@example.org") is None
    assert len(mails(settings)) == sent


def test_pause_days_are_the_schedules_days(project: Path, database_url: str, clock: Clock) -> None:
    # UTC+14: already tomorrow there.
    settings = site_settings(project, database_url, schedule={"timezone": "Pacific/Kiritimati"})
    clock.now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store, clock=clock)) as client,
    ):
        sign_up(client, clock, "ann@example.org")
        client.post(link_in(mails(settings)[0], "confirm"))
        subscriber = store.subscribers.find("ann@example.org")
        assert subscriber is not None
        token = subscriber_token(
            KEY,
            Purpose.PREFERENCES,
            subscriber_id=subscriber.id,
            list_id="the-digest.localhost",
            email=subscriber.email,
        )
        page = f"/preferences/{token}"
        assert 'min="2026-11-25"' in client.get(page).text
        refused = client.post(page, data={"action": "pause", "until": "2026-11-24"})
        assert refused.status_code == 400
        assert client.post(page, data={"action": "pause", "until": "2026-11-25"}).status_code == 200


def test_a_resent_confirmation_keeps_the_signup_for_pending_days_more(
    settings: Settings, store: Store, client: TestClient, clock: Clock
) -> None:
    sign_up(client, clock, "ann@example.org")
    clock.advance(days=settings.signup.pending_days - 1)
    sign_up(client, clock, "ann@example.org")  # sent again
    clock.advance(days=2)
    assert remove_unconfirmed(settings, store, now=clock.now) == 0
    clock.advance(days=settings.signup.pending_days)
    assert remove_unconfirmed(settings, store, now=clock.now) == 1


class QuotesTheRecipient(Recorder):
    """Refuses every recipient with a reply that names it, as Postfix does."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


@pytest.mark.parametrize("smtp_server", [QuotesTheRecipient], indirect=True)
def test_a_confirmation_the_relay_refuses_is_logged_without_the_address(
    project: Path,
    database_url: str,
    clock: Clock,
    smtp_server: tuple[QuotesTheRecipient, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, port = smtp_server
    settings = load_settings(
        database_url=database_url,
        public_url=SITE,
        secret_key=KEY,
        smtp={"host": "127.0.0.1", "port": port, "security": "none", "retry_attempts": 1},
    )
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store, clock=clock)) as client,
        caplog.at_level(logging.INFO),
    ):
        sign_up(client, clock, "ann@example.org")
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("digest"))
    assert "confirmation mail not sent: 550 5.1.1 <<address>>: Recipient address rejected" in ours
    assert "ann@example.org" not in ours
