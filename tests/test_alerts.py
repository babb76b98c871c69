"""Alerts to the operator: a scheduled send that stops against a relay going down gives one
mail (through a second aiosmtpd, the alert relay) and one webhook POST (to a local HTTP
server), with the reason in both, once a day; nothing new for days on end gives one too."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from digest import alerts, sending
from digest.models import BounceKind
from digest.schedule import jobs
from digest.settings import Settings, SmtpSettings, load_settings
from digest.store import Store
from digest.store.suppression import SoftRule, TracedEvent

from .smtp_sink import Closing, Recorder, SmtpServer

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "alerts-test-key-of-at-least-32-characters"
HOOK_TOKEN = "T000-hook-token-of-the-tests"


class Hook:
    """A chat webhook on 127.0.0.1: keeps each POST's path and JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[tuple[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.posts.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{HOOK_TOKEN}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    with Hook() as running:
        yield running


def settings_for(
    project: Path, database_url: str, relay: int, alert_relay: int, url: str
) -> Settings:
    return load_settings(
        database_url=database_url,
        public_url="https://news.example.org",
        secret_key=KEY,
        from_address="digest@news.example.org",
        postal_address="1 High Street, Exampleton",
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=relay,
            security="none",
            concurrency=1,
            retry_delay=30.0,
            failure_threshold=3,
        ),
        schedule={"check_before_send": False},
        alerts={
            "email": "editor@example.org",
            "relay": f"127.0.0.1:{alert_relay}",
            "webhook_url": url,
        },
    )


@pytest.mark.timeout(60)
def test_a_send_that_stops_is_told_by_mail_and_webhook_once_a_day(
    project: Path, database_url: str, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    told = Recorder()
    with SmtpServer(Closing()) as relay, SmtpServer(told) as alert_relay:
        settings = settings_for(project, database_url, relay.port, alert_relay.port, hook.url)
        with Store.open(database_url) as store:
            store.subscribers.import_rows(
                [(f"reader{n}@example.org", None) for n in range(10)], now=NOW
            )

            async def two_runs() -> list[object]:
                running = jobs.Running(settings=settings, store=store)
                first = await jobs._send(running, DAY)
                second = await jobs._send(running, DAY, resume=True, attempt=1)
                return [first, second]

            outcomes = asyncio.run(two_runs())

    assert all(isinstance(outcome, sending.SendStopped) for outcome in outcomes)
    # One mail, through the alert relay, saying why.
    [(sender, recipients, data)] = told.messages
    assert (sender, recipients) == ("digest@news.example.org", ["editor@example.org"])
    mail = message_from_bytes(data, policy=policy.default)
    assert mail["Subject"] == "[The Digest] The send of 2026-11-23 stopped"
    assert mail["Auto-Submitted"] == "auto-generated"
    body = mail.get_content()
    assert "stopped after 3 failures in a row" in body
    assert "the server closed the connection" in body
    # One POST, as Slack and Mattermost take it, with the same reason.
    [(path, payload)] = hook.posts
    assert path == f"/hooks/{HOOK_TOKEN}"
    assert set(payload) == {"text"}
    assert "The send of 2026-11-23 stopped" in payload["text"]
    assert "the server closed the connection" in payload["text"]
    # The webhook's token is a secret: never logged.
    assert HOOK_TOKEN not in caplog.text


def test_nothing_new_for_days_is_told_once(project: Path, database_url: str, hook: Hook) -> None:
    settings = load_settings(
        database_url=database_url,
        outbox_dir=project / "var" / "outbox",
        alerts={"email": "editor@example.org", "webhook_url": hook.url, "empty_days": 3},
    )
    quiet = sending.SendReport(date=DAY, nothing_new=True)
    with Store.open(database_url) as store:
        # An issue went out two days ago: not yet three days without one.
        store.subscribers.add("reader@example.org", None, now=NOW)
        asyncio.run(sending.send_day(settings, store, DAY - dt.timedelta(days=2)))
        told = asyncio.run(alerts.after_send(settings, store, DAY, quiet, now=NOW))
        assert told == []
        later = DAY + dt.timedelta(days=1)
        first = asyncio.run(alerts.after_send(settings, store, later, quiet, now=NOW))
        again = asyncio.run(alerts.after_send(settings, store, later, quiet, now=NOW))

    assert [alert.title for alert in first] == ["Nothing new to send for 3 days"]
    assert "the last was 2026-11-21" in first[0].detail
    # Made again, but told once that day: the mail (to the outbox here) and the POST.
    assert [alert.cause for alert in again] == ["nothing-new"]
    assert len(hook.posts) == 1
    mails = list((settings.outbox_dir / "new").iterdir())
    subjects = [
        message_from_bytes(path.read_bytes(), policy=policy.default)["Subject"] for path in mails
    ]
    assert subjects.count("[The Digest] Nothing new to send for 3 days") == 1


def test_an_interrupted_send_is_not_an_alert(project: Path, database_url: str) -> None:
    settings = load_settings(database_url=database_url, alerts={"email": "editor@example.org"})
    interrupted = sending.SendInterrupted(sending.SendReport(date=DAY))
    with Store.open(database_url) as store:
        assert asyncio.run(alerts.after_send(settings, store, DAY, interrupted, now=NOW)) == []


def test_a_webhook_that_fails_is_logged_without_its_token(
    project: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Hook(status=500) as failing:
        settings = load_settings(database_url=database_url, alerts={"webhook_url": failing.url})
        alert = alerts.Alert(cause="send-stopped", title="The send stopped", detail="why")
        with Store.open(database_url) as store, caplog.at_level(logging.ERROR):
            assert asyncio.run(alerts.send_alert(settings, store, alert, now=NOW))
    assert "the alert webhook answered 500" in caplog.text
    assert HOOK_TOKEN not in caplog.text


def test_complaints_past_their_rate_are_told_once(
    project: Path, database_url: str, hook: Hook
) -> None:
    with SmtpServer(Recorder()) as relay, Store.open(database_url) as store:
        # Copies that really went (through a relay) are what a rate is of.
        settings = load_settings(
            database_url=database_url,
            secret_key=KEY,
            public_url="https://news.example.org",
            postal_address="1 High Street, Exampleton",
            from_address="digest@news.example.org",
            smtp=SmtpSettings(host="127.0.0.1", port=relay.port, security="none"),
            alerts={"webhook_url": hook.url, "complaint_rate": 0.1},
        )
        store.subscribers.import_rows([(f"reader{n}@example.org", None) for n in range(5)], now=NOW)
        asyncio.run(sending.send_day(settings, store, DAY))
        issue_id = store.issues.id_of(DAY)
        assert asyncio.run(alerts.after_bounces(settings, store, now=NOW)) == []
        complainer = store.subscribers.find("reader0@example.org")
        assert complainer is not None
        store.returns.record(
            digest="arf-1",
            message_id=None,
            form="arf",
            source="test",
            problem=None,
            events=[
                TracedEvent(
                    kind=BounceKind.COMPLAINT,
                    email_key="reader0@example.org",
                    status=None,
                    reason="abuse",
                    issue_id=issue_id,
                    subscriber_id=complainer.id,
                    matched_by="token",
                )
            ],
            now=NOW,
            soft=SoftRule(limit=3, days=30),
        )
        first = asyncio.run(alerts.after_bounces(settings, store, now=NOW))
        asyncio.run(alerts.after_bounces(settings, store, now=NOW))

    assert [alert.title for alert in first] == ["The issue of 2026-11-23: complaints at 20.00%"]
    [(_, payload)] = hook.posts
    assert "1 complaints for 5 copies sent (20.00%, over 10.00%)" in payload["text"]
