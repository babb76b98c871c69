"""``/admin/issues/DATE``: an issue's copies and failures by reason, one address's copy,
the copy as sent in a sandboxed frame, the page refreshing itself while a send runs, and
hostile text (an article's markup, a query's) staying text."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from starlette.testclient import TestClient

from digest import pipeline, sending
from digest.clock import utc_now
from digest.delivery.ledger import Ledger
from digest.models import Issue
from digest.settings import Settings, SmtpSettings
from digest.store import Store
from digest.web.app import create_app

from .admin_client import SITE, START, Clock, admin_settings, cells, log_in
from .conftest import FIXTURES
from .smtp_sink import Recorder, SmtpServer

DAY = dt.date(2026, 11, 23)


class Refusing(Recorder):
    """A relay that knows no "gone" mailbox and finds every "full" one full."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("gone"):
            return "550 5.1.1 No such user here"
        if address.startswith("full"):
            return "552 5.2.2 Mailbox full"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


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


@pytest.mark.timeout(60)
def test_an_issue_page_shows_its_copies_failures_by_reason_and_one_address(
    project: Path, database_url: str, store: Store
) -> None:
    addresses = ["ann", "bob", "gone1", "gone2", "full1"]
    with SmtpServer(Refusing()) as relay:
        settings = admin_settings(
            project,
            database_url,
            public_url="https://news.example.org",
            from_address="digest@news.example.org",
            postal_address="1 High Street, Exampleton",
            smtp=SmtpSettings(host="127.0.0.1", port=relay.port, security="none"),
        )
        store.subscribers.import_rows(
            [(f"{name}@example.org", None) for name in addresses], now=START
        )
        report = asyncio.run(sending.send_day(settings, store, DAY))
    assert (report.sent, report.failed) == (2, 3)
    # Long after the send: nothing under way.
    clock = Clock()
    clock.now = utc_now() + dt.timedelta(minutes=5)
    with TestClient(create_app(settings, store, clock=clock), base_url=SITE) as test:
        assert log_in(test) == 303
        answer = test.get("/admin/issues/2026-11-23", params={"email": "Gone1@example.org"})
        invalid = test.get("/admin/issues/2026-11-23", params={"email": "not an address"})
        other = test.get("/admin/issues/2026-11-23", params={"email": "nobody@example.org"})
        missing = test.get("/admin/issues/2026-11-24")
        nonsense = test.get("/admin/issues/yesterday")

    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert "refresh" not in answer.headers
    page = lxml.html.document_fromstring(answer.text)
    progress = page.find(".//progress")
    assert (progress.get("value"), progress.get("max")) == ("5", "5")
    rows = cells(page)
    # sent, failed, being sent, waiting, in the last minute
    assert ["2", "3", "0", "0", "0"] in rows
    # Failures grouped by reason, most first.
    reasons = [row for row in rows if len(row) == 3]
    assert [row[:2] for row in reasons] == [["2", "failed"], ["1", "failed"]]
    assert "5.1.1" in reasons[0][2]
    assert "5.2.2" in reasons[1][2]
    # The one address asked for (whatever its case): its copy of this issue.
    [copy] = [row for row in rows if row and row[0].casefold() == "gone1@example.org"]
    assert copy[1:3] == ["failed", "1"]
    assert "5.1.1" in copy[4]
    # The copy as sent, in a sandboxed frame, without anyone's own parts.
    [frame] = page.findall(".//iframe")
    assert frame.get("sandbox") == ""
    sent = lxml.html.document_fromstring(frame.get("srcdoc"))
    assert sent.find(".//title") is not None
    assert "ann@example.org" not in frame.get("srcdoc")
    assert invalid.status_code == 200
    assert "is not a valid address" in invalid.text
    assert "No copy of this issue went or is waiting to go to nobody@example.org" in other.text
    assert missing.status_code == 404
    assert "No issue of 2026-11-24" in missing.text
    assert nonsense.status_code == 404


def test_the_issue_page_refreshes_itself_while_a_send_runs(
    settings: Settings, store: Store
) -> None:
    store.subscribers.import_rows([(f"r{n}@example.org", None) for n in range(3)], now=START)
    article = pipeline.load_seeds(settings).articles[0]
    store.issues.save(Issue(date=DAY, articles=(article,)), created_at=START)
    issue_id = store.issues.id_of(DAY)
    assert issue_id is not None
    ledger = Ledger(store, issue_id, worker="sender-1")
    ledger.enqueue(now=START)
    clock = Clock()
    clock.now = utc_now()

    def issue_page(**params: str) -> Any:
        with TestClient(create_app(settings, store, clock=clock), base_url=SITE) as test:
            assert log_in(test) == 303
            return test.get("/admin/issues/2026-11-23", params=params)

    # Queued, none taken yet: waiting, not under way.
    waiting = issue_page()
    assert "refresh" not in waiting.headers
    assert "A send is under way" not in waiting.text
    # Two taken by a sender: under way, and the page reloads itself until told not to.
    assert len(ledger.claim(2, lease=dt.timedelta(minutes=5))) == 2
    live = issue_page()
    still = issue_page(live="0")
    assert live.headers["refresh"] == "5"
    assert "Stop refreshing" in live.text
    assert ["0", "0", "2", "1", "0"] in cells(lxml.html.document_fromstring(live.text))
    assert "refresh" not in still.headers
    assert "Refresh every 5 seconds" in still.text


def test_hostile_text_in_an_issue_or_a_query_stays_text(
    project: Path, settings: Settings, store: Store
) -> None:
    # An issue whose headline and text carry markup, and an address query that tries to.
    for seed in (project / "seeds").iterdir():
        seed.unlink()
    (project / "seeds" / "markup.txt").write_bytes((FIXTURES / "markup.txt").read_bytes())
    store.subscribers.add("ann@example.org", None, now=START)
    asyncio.run(sending.send_day(settings, store, DAY))
    with TestClient(create_app(settings, store, clock=Clock()), base_url=SITE) as test:
        assert log_in(test) == 303
        answer = test.get(
            "/admin/issues/2026-11-23", params={"email": '"><script>alert(1)</script>'}
        )
        confirm = test.get(
            "/admin/subscribers/remove", params={"email": '"><script>alert(1)</script>'}
        )
    page = lxml.html.document_fromstring(answer.text)
    assert page.xpath("//script") == []
    [frame] = page.xpath("//iframe")
    copy = lxml.html.document_fromstring(frame.get("srcdoc"))
    assert copy.xpath("//script") == []
    assert "Web developers warn of <script>" in copy.text_content()
    assert "is not a valid address" in page.text_content()
    assert lxml.html.document_fromstring(confirm.text).xpath("//script") == []
