"""``/admin``'s actions: unsubscribe, resubscribe and remove an address, each confirmed; a
test copy; skipping and resuming the next scheduled send (through the job, in the
schedule's zone); each a POST with the CSRF token, kept in the actions log, which an
erasure reaches. (An issue's page: ``tests/test_admin_issue.py``.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import mailbox
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest import sending
from digest.cli import cli
from digest.errors import InputError
from digest.models import SubscriberStatus
from digest.readers import operator
from digest.readers.erasure import erase
from digest.readers.record import held_about
from digest.schedule import jobs
from digest.settings import Settings
from digest.store import Store
from digest.store.operator import ERASED
from digest.web.app import create_app

from .admin_client import (
    KEY,
    SITE,
    START,
    Clock,
    admin_settings,
    cells,
    csrf_of,
    log_in,
    status_of,
)

DAY = dt.date(2026, 11, 23)


@pytest.fixture
def store(project: Path, database_url: str) -> Iterator[Store]:
    with Store.open(database_url) as opened:
        yield opened


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    return admin_settings(project, database_url)


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store, clock=Clock()), base_url=SITE) as test:
        assert log_in(test) == 303
        yield test


def test_unsubscribe_resubscribe_and_remove_are_confirmed_posted_and_logged(
    client: TestClient, settings: Settings, store: Store
) -> None:
    store.subscribers.add("ann@example.org", "Ann", now=START)
    asyncio.run(sending.send_day(settings, store, DAY))
    token = csrf_of(client)
    ask = client.get("/admin/subscribers/unsubscribe", params={"email": "ann@example.org"})
    assert ask.status_code == 200
    assert "Unsubscribe ann@example.org?" in ask.text
    # Refused without the session's token, and nothing changes.
    for data in ({"email": "ann@example.org"}, {"email": "ann@example.org", "csrf": "forged"}):
        refused = client.post("/admin/subscribers/unsubscribe", data=data, follow_redirects=False)
        assert refused.status_code == 403
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE

    def post(action: str, **more: str) -> Any:
        data = {"email": "ann@example.org", "csrf": token, **more}
        return client.post(f"/admin/subscribers/{action}", data=data, follow_redirects=False)

    done = post("unsubscribe")
    assert done.status_code == 303
    assert done.headers["cache-control"] == "no-store"
    assert (
        done.headers["location"] == "/admin/subscribers?email=ann%40example.org&done=unsubscribed"
    )
    assert "Unsubscribed ann@example.org." in client.get(done.headers["location"]).text
    assert status_of(store, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert post("resubscribe").status_code == 303
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE
    # A suppressed address comes back only when the operator ticks that they are sure.
    store.subscribers.set_status("ann@example.org", SubscriberStatus.BOUNCED, now=START)
    ask = client.get("/admin/subscribers/resubscribe", params={"email": "ann@example.org"})
    assert 'name="force"' in ask.text
    assert "It is suppressed" in ask.text
    unforced = post("resubscribe")
    assert unforced.status_code == 409
    problem = lxml.html.document_fromstring(unforced.text).find_class("problem")[0]
    assert 'tick "I am sure" if you are sure' in problem.text_content()
    assert status_of(store, "ann@example.org") is SubscriberStatus.BOUNCED
    assert post("resubscribe", force="yes").status_code == 303
    assert status_of(store, "ann@example.org") is SubscriberStatus.ACTIVE
    removed = post("remove")
    assert removed.status_code == 303
    assert store.subscribers.find("ann@example.org") is None
    after = client.get(removed.headers["location"])
    assert after.status_code == 200
    assert "Removed from the list: ann@example.org." in after.text
    # Its copy stays on record: added again, it is not sent the same issue twice.
    assert [copy.issue_date for copy in store.deliveries.to_address("ann@example.org")] == [DAY]
    # Each action is kept with its time and where it came from, newest first.
    actions = store.operator.recent(limit=10)
    assert [(action.action, action.target) for action in actions] == [
        ("remove", "ann@example.org"),
        ("resubscribe", "ann@example.org"),
        ("resubscribe", "ann@example.org"),
        ("unsubscribe", "ann@example.org"),
    ]
    assert all(action.at == START for action in actions)
    assert all(action.origin == "testclient" for action in actions)
    overview = lxml.html.document_fromstring(client.get("/admin").text)
    assert ["2026-11-23 09:00:00", "remove", "ann@example.org"] in [
        row[:3] for row in cells(overview)
    ]
    # Nobody there, or no such action.
    assert (
        client.get("/admin/subscribers/remove", params={"email": "ann@example.org"}).status_code
        == 404
    )
    assert (
        client.get("/admin/subscribers/delete", params={"email": "a@example.org"}).status_code
        == 404
    )


def test_a_changed_subscriber_history_says_it_was_the_operator(
    client: TestClient, store: Store
) -> None:
    store.subscribers.add("bob@example.org", None, now=START)
    data = {"email": "bob@example.org", "csrf": csrf_of(client)}
    assert client.post("/admin/subscribers/unsubscribe", data=data).status_code == 200
    page = client.get("/admin/subscribers", params={"email": "bob@example.org"}).text
    assert "/admin, by the operator" in page
    # What a reader is given of their own data names no operator's address.
    held = json.dumps(held_about(store, "bob@example.org", now=START))
    assert "/admin, by the operator" in held
    assert "testclient" not in held


def test_a_test_copy_of_todays_issue_goes_to_the_address_and_is_logged(
    client: TestClient, settings: Settings, store: Store
) -> None:
    token = csrf_of(client)
    assert client.post("/admin/test-copy", data={"email": "editor@example.org"}).status_code == 403
    bad = client.post("/admin/test-copy", data={"email": "editor at example", "csrf": token})
    assert bad.status_code == 400
    assert "is not a valid address" in bad.text
    sent = client.post("/admin/test-copy", data={"email": "editor@example.org", "csrf": token})
    assert sent.status_code == 200, sent.text
    assert "Test copy sent" in sent.text
    outbox = mailbox.Maildir(settings.outbox_dir, create=False)
    [copy] = [message_from_bytes(message.as_bytes(), policy=policy.default) for message in outbox]
    assert copy["To"] == "editor@example.org"
    assert copy["Subject"].startswith("[TEST]")
    # No ledger: the address is sent nothing of the issue for real.
    assert store.deliveries.to_address("editor@example.org") == []
    [action] = store.operator.recent(limit=5)
    assert (action.action, action.target) == ("test copy", "editor@example.org")
    assert action.detail.startswith("2026-11-23: sent to outbox")


@pytest.mark.timeout(60)
def test_a_skipped_send_is_not_made_by_the_schedule_until_resumed(
    client: TestClient, settings: Settings, store: Store
) -> None:
    store.subscribers.add("ann@example.org", None, now=START)
    overview = client.get("/admin").text
    # 09:00 UTC on the 23rd: the next send is at 07:00 on the 24th.
    assert 'name="day" value="2026-11-24"' in overview
    token = csrf_of(client)
    skip = client.post(
        "/admin/schedule/skip", data={"day": "2026-11-24", "csrf": token}, follow_redirects=False
    )
    assert skip.status_code == 303
    overview = client.get("/admin").text
    assert "skipped" in overview
    assert "Resume the send of Tuesday 24 November" in overview
    tomorrow = dt.date(2026, 11, 24)

    async def scheduled() -> sending.SendReport | Exception:
        return await jobs._send(jobs.Running(settings=settings, store=store), tomorrow)

    skipped = asyncio.run(scheduled())
    assert isinstance(skipped, sending.SendReport)
    assert skipped.skipped
    assert store.issues.id_of(tomorrow) is None
    resume = client.post(
        "/admin/schedule/resume", data={"day": "2026-11-24", "csrf": token}, follow_redirects=False
    )
    assert resume.status_code == 303
    assert store.operator.skipped_at(tomorrow) is None
    made = asyncio.run(scheduled())
    assert isinstance(made, sending.SendReport)
    assert made.sent == 1
    # A day gone by cannot be skipped; nor can something that is not a date.
    past = client.post("/admin/schedule/skip", data={"day": "2026-11-22", "csrf": token})
    assert past.status_code == 400
    assert "is past" in past.text
    assert (
        client.post("/admin/schedule/skip", data={"day": "soon", "csrf": token}).status_code == 400
    )
    assert [action.action for action in store.operator.recent(limit=5)] == [
        "resume send",
        "skip send",
    ]


@pytest.mark.timeout(60)
def test_a_day_skipped_in_the_schedules_zone_is_skipped_by_the_job_not_by_hand(
    project: Path, database_url: str, store: Store
) -> None:
    # 09:00 UTC on the 23rd is 22:00 on the 23rd in Auckland: the next send, at 07:00
    # there, is on the 24th there, while it is still the 23rd in UTC.
    settings = admin_settings(project, database_url, schedule={"timezone": "Pacific/Auckland"})
    store.subscribers.add("ann@example.org", None, now=START)
    with TestClient(create_app(settings, store, clock=Clock()), base_url=SITE) as test:
        assert log_in(test) == 303
        overview = test.get("/admin").text
        assert 'name="day" value="2026-11-24"' in overview
        skip = {"day": "2026-11-24", "csrf": csrf_of(test)}
        assert (
            test.post("/admin/schedule/skip", data=skip, follow_redirects=False).status_code == 303
        )
    auckland_day = dt.date(2026, 11, 24)
    outcomes: list[object] = []

    async def the_job() -> None:
        running = jobs.Running(settings=settings, store=store, on_run=outcomes.append)
        # As the scheduler sets it: due at 07:00 in Auckland, 18:00 UTC on the 23rd.
        running.due = dt.datetime(2026, 11, 23, 18, tzinfo=dt.UTC)
        jobs.attach(running)
        try:
            await jobs.scheduled_send()
        finally:
            jobs.detach()

    asyncio.run(the_job())
    [report] = outcomes
    assert isinstance(report, sending.SendReport)
    assert report.date == auckland_day
    assert report.skipped
    assert store.issues.id_of(auckland_day) is None
    # By hand, the operator still sends it.
    by_hand = CliRunner().invoke(
        cli, ["send", "--date", "2026-11-24"], env={"DIGEST_DATABASE_URL": database_url}
    )
    assert by_hand.exit_code == 0, by_hand.output
    assert "1 sent" in by_hand.output


def test_a_day_whose_send_began_cannot_be_skipped(
    client: TestClient, settings: Settings, store: Store
) -> None:
    store.subscribers.add("ann@example.org", None, now=START)
    asyncio.run(sending.send_day(settings, store, DAY))
    token = csrf_of(client)
    refused = client.post("/admin/schedule/skip", data={"day": "2026-11-23", "csrf": token})
    assert refused.status_code == 409
    assert "already began" in refused.text
    assert store.operator.skipped_at(DAY) is None


def test_erasing_an_address_takes_it_out_of_the_actions_log(
    client: TestClient, store: Store
) -> None:
    store.subscribers.add("Ann@example.org", None, now=START)
    data = {"email": "Ann@example.org", "csrf": csrf_of(client)}
    assert client.post("/admin/subscribers/unsubscribe", data=data).status_code == 200
    # Held about the address, as `digest subscribers show` gives it.
    held = held_about(store, "ann@example.org", now=START)
    assert [action["action"] for action in held["operator_actions"]] == ["unsubscribe"]
    assert erase(store, "ann@example.org", secret_key=KEY, now=START, by="the operator")
    [action] = store.operator.recent(limit=5)
    assert action.target == ERASED
    assert "ann@example.org" not in f"{action.target} {action.detail}".casefold()


def test_the_word_after_an_action_is_said_only_when_the_list_agrees(
    client: TestClient, store: Store
) -> None:
    store.subscribers.add("ann@example.org", None, now=START)
    for done in ("removed", "unsubscribed", "nonsense"):
        page = client.get("/admin/subscribers", params={"email": "ann@example.org", "done": done})
        assert page.status_code == 200
        assert 'class="notice"' not in page.text, done
    gone = client.get("/admin/subscribers", params={"email": "bob@example.org", "done": "removed"})
    assert gone.status_code == 200
    assert "Removed from the list: bob@example.org." in gone.text


def test_a_bounce_that_comes_in_while_the_operator_confirms_is_not_overridden(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.subscribers.add("ann@example.org", None, now=START)
    store.subscribers.set_status("ann@example.org", SubscriberStatus.UNSUBSCRIBED, now=START)
    seen = store.subscribers.find("ann@example.org")
    # The bounce lands after the status was read for the decision.
    store.subscribers.set_status("ann@example.org", SubscriberStatus.BOUNCED, now=START)
    real_find = store.subscribers.find
    calls = iter([seen])
    monkeypatch.setattr(
        store.subscribers, "find", lambda email: next(calls, None) or real_find(email)
    )
    with pytest.raises(InputError, match="became bounced meanwhile"):
        operator.resubscribe(store, "ann@example.org", via="test", by="test", now=START)
    assert status_of(store, "ann@example.org") is SubscriberStatus.BOUNCED


def test_resuming_a_day_whose_time_went_by_says_how_to_send_it(
    client: TestClient, store: Store
) -> None:
    token = csrf_of(client)
    # 09:00 on the 23rd: its 07:00 send went by while it was skipped.
    assert store.operator.skip(DAY, now=START)
    answer = client.post("/admin/schedule/resume", data={"day": "2026-11-23", "csrf": token})
    assert answer.status_code == 200
    assert "digest send --date 2026-11-23" in answer.text
    assert store.operator.skipped_at(DAY) is None
