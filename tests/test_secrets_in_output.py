"""No secret in what digest prints or logs: no database password, no unsubscribe token."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import threading
import time
import urllib.request
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest import sending
from digest.cli.service import web_server
from digest.errors import StoreError
from digest.settings import Settings, load_settings
from digest.store import Store, SubscriberRecords
from digest.web.app import create_app, hide_tokens

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "secrets-test-key-of-at-least-32-characters"
ONE_CLICK = b"List-Unsubscribe=One-Click"


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(
        database_url=f"sqlite:///{project / 'var' / 'digest.db'}",
        public_url="https://news.example.org",
        secret_key=KEY,
    )


@pytest.fixture
def links(settings: Settings) -> list[str]:
    """Each subscriber's unsubscribe path, as their copy has it."""
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows(
            [("ann@example.org", None), ("bo@example.org", None)], now=NOW
        )
        asyncio.run(sending.send_day(settings, store, DAY))
    found = []
    for path in (settings.outbox_dir / "new").iterdir():
        parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        url = str(parsed["List-Unsubscribe"]).split(">")[0].lstrip("<")
        found.append(url.removeprefix("https://news.example.org"))
    assert len(found) == 2
    return found


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def test_the_access_log_of_digest_serve_shows_no_token(
    settings: Settings, links: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    listening = socket.create_server(("127.0.0.1", 0))  # ours, so no race for a port
    port = listening.getsockname()[1]
    with Store.open(settings.database_url) as store:
        server = web_server(settings, store, "127.0.0.1", port)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listening])))
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.started
            base = f"http://127.0.0.1:{port}"
            page = urllib.request.urlopen(f"{base}{links[0]}?from=mail", timeout=10)
            done = urllib.request.urlopen(f"{base}{links[1]}", data=ONE_CLICK, timeout=10)
            assert (page.status, done.status) == (200, 200)
        finally:
            server.should_exit = True
            thread.join(10)
            listening.close()

    logged = "".join(capfd.readouterr())
    for path in links:
        assert token_of(path) not in logged
    assert '"GET /unsubscribe/…?from=mail HTTP/1.1" 200' in logged
    assert '"POST /unsubscribe/… HTTP/1.1" 200' in logged


def test_a_crash_is_logged_without_the_token(
    settings: Settings,
    links: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(self: SubscriberRecords, subscriber_id: int, *, now: dt.datetime) -> bool:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(SubscriberRecords, "unsubscribe", broken)
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store), raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="digest.web.app"),
    ):
        response = client.post(links[0], content=ONE_CLICK, headers=FORM)

    assert response.status_code == 500
    assert "POST /unsubscribe/… failed: RuntimeError: the disk is on fire" in caplog.text
    assert token_of(links[0]) not in caplog.text


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("GET /unsubscribe/abc.def HTTP/1.1", "GET /unsubscribe/… HTTP/1.1"),
        ("/news/unsubscribe/abc.def?x=1", "/news/unsubscribe/…?x=1"),
        ("/unsubscribe", "/unsubscribe"),
        ("/unsubscribe/", "/unsubscribe/"),
        ("/issues/2026-11-23", "/issues/2026-11-23"),
    ],
)
def test_hide_tokens(line: str, shown: str) -> None:
    assert hide_tokens(line) == shown


def test_a_database_error_never_shows_a_password_given_in_the_query() -> None:
    # libpq takes the password as a query parameter too; the error happens before connecting.
    url = "postgresql+psycopg://digest@127.0.0.1:5432/test?password=not-shown-pw&sslmode=bogus"

    with pytest.raises(StoreError) as caught:
        Store.open(url)

    assert "not-shown-pw" not in str(caught.value)
    assert "password=***" in str(caught.value)
