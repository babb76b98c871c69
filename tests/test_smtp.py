"""Sending over real SMTP: an aiosmtpd server on 127.0.0.1 with handlers that misbehave.

The servers and the handlers the others build on are in tests/smtp_sink.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from digest import sending
from digest.delivery.mailer import RelayPool, SmtpTransport
from digest.errors import RelayUnusable, TransientFailure
from digest.models import SubscriberStatus
from digest.settings import Settings, SmtpSettings, load_settings
from digest.store import Store
from tests.smtp_sink import Recorder, Slow, SmtpServer, closed_port

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "smtp-test-key-of-at-least-32-characters"


class NoSuchUser(Recorder):
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("gone"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class BusyOnce(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient not in self.refused:
            self.refused.add(recipient)
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


class DropsOnce(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.dropped:
            self.dropped = True
            server.transport.close()  # the connection goes in the middle of DATA
            return "451 gone"
        return await super().handle_DATA(server, session, envelope)


class ClosingOnce(Recorder):
    """Answers 421 (closing the connection) to the first message, then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if not self.closed:
            self.closed = True
            server.transport.close()
            return "421 4.3.2 Service shutting down, closing transmission channel"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


# Every test here runs twice: with MAIL, RCPT and DATA pipelined (the servers offer
# PIPELINING, tests/smtp_sink.py) and one by one through aiosmtplib (smtp.pipelining off).
PIPELINING: dict[str, bool] = {"pipelining": True}


@pytest.fixture(autouse=True, params=[True, False], ids=["pipelined", "one-by-one"])
def pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setitem(PIPELINING, "pipelining", request.param)
    return bool(request.param)


def settings_for(project: Path, port: int, **smtp: object) -> Settings:
    values: dict[str, object] = {
        "pipelining": PIPELINING["pipelining"],
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "concurrency": 2,
        "retry_delay": 0,
        "retry_max_delay": 0,
        "timeout": 5,
    }
    return load_settings(
        database_url=f"sqlite:///{project / 'var' / 'digest.db'}",
        public_url="https://news.example.org",
        from_address="digest@news.example.org",
        smtp=SmtpSettings(**(values | smtp)),
    )


def subscribe(settings: Settings, *emails: str) -> None:
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([(email, None) for email in emails], now=NOW)


def send(settings: Settings) -> sending.SendReport:
    async def run() -> sending.SendReport:
        transport = RelayPool(settings.smtp)
        try:
            with Store.open(settings.database_url) as store:
                return await sending.send_issue(
                    settings,
                    store,
                    DAY,
                    transport,
                    secret_key=KEY,
                    now=NOW,
                    concurrency=settings.smtp.concurrency,
                )
        finally:
            await transport.close()

    return asyncio.run(run())


def test_one_message_per_subscriber_over_reused_connections(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    emails = [f"reader{n}@example.org" for n in range(20)]
    subscribe(settings, *emails)

    report = send(settings)
    again = send(settings)

    assert (report.sent, report.failed, again.sent) == (20, 0, 0)
    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == sorted(emails)
    assert handler.sessions <= 2
    for sender, (recipient,), data in handler.messages:
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert sender == "digest@news.example.org"
        assert message.defects == []
        assert message["To"] == recipient
        url = message["List-Unsubscribe"].split(">")[0].lstrip("<")
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        assert text is not None
        assert html is not None
        assert url in text.get_content()
        assert url in html.get_content()


@pytest.mark.parametrize("smtp_server", [NoSuchUser], indirect=True)
def test_a_550_fails_at_once_and_bounces_the_subscriber(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    subscribe(settings, "gone@example.org", "here@example.org")

    report = send(settings)

    assert (report.sent, report.failed) == (1, 1)
    assert [rcpt for _, rcpt, _ in handler.messages] == [["here@example.org"]]
    with Store.open(settings.database_url) as store:
        gone = store.subscribers.find("gone@example.org")
    assert gone is not None
    assert gone.status is SubscriberStatus.BOUNCED


@pytest.mark.parametrize("smtp_server", [BusyOnce], indirect=True)
def test_a_451_is_retried(project: Path, smtp_server: tuple[Recorder, int]) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    subscribe(settings, "a@example.org", "b@example.org")

    report = send(settings)

    assert (report.sent, report.failed, report.still_pending) == (2, 0, 0)
    assert len(handler.messages) == 2


@pytest.mark.parametrize("smtp_server", [DropsOnce], indirect=True)
def test_a_dropped_connection_is_retried_on_a_new_one(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port, concurrency=1)
    subscribe(settings, "a@example.org", "b@example.org", "c@example.org")

    report = send(settings)

    assert report.sent == 3
    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
    ]
    assert handler.sessions == 2


@pytest.mark.parametrize("smtp_server", [ClosingOnce], indirect=True)
def test_a_421_is_retried_on_a_new_connection(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port, concurrency=1)
    subscribe(settings, "a@example.org", "b@example.org")

    report = send(settings)

    assert (report.sent, report.failed, report.still_pending) == (2, 0, 0)
    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == ["a@example.org", "b@example.org"]
    assert handler.sessions == 2


class SizeLimited(Recorder):
    """A relay that declares SIZE (RFC 1870) and keeps to it, counting every DATA it reads.

    aiosmtpd's own limit refuses an oversized DATA before any handler hears of it; this
    one is told of each, so a test can see whether a DATA was sent at all.
    """

    limit = 2000
    too_large = "552 5.3.4 Message size exceeds fixed maximum message size"

    def __init__(self) -> None:
        super().__init__()
        self.data_commands = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [*responses[:-1], f"250-SIZE {self.limit}", responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        declared = [option[len("SIZE=") :] for option in mail_options if option.startswith("SIZE=")]
        if any(int(size) > self.limit for size in declared):
            return self.too_large
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if len(envelope.content) > self.limit:
            return self.too_large
        return await super().handle_DATA(server, session, envelope)


# The limit is the handler's, not aiosmtpd's, so that a DATA sent reaches the handler.
@pytest.mark.parametrize("smtp_server", [(SizeLimited, {"data_size_limit": None})], indirect=True)
def test_a_copy_over_the_relays_size_limit_is_refused_before_it_is_sent(
    project: Path, smtp_server: tuple[SizeLimited, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    subscribe(settings, "a@example.org")

    # The size is declared with MAIL FROM (RFC 1870): the relay refuses before any DATA.
    with pytest.raises(sending.SendHalted, match="refused the message: 552"):
        send(settings)

    assert handler.data_commands == 0
    assert handler.messages == []


def test_nobody_listening_makes_the_relay_unusable(project: Path) -> None:
    with closed_port() as port:
        settings = settings_for(project, port, retry_attempts=1)
        transport = SmtpTransport(settings.smtp)

        with pytest.raises(
            RelayUnusable, match=rf"^127.0.0.1:{port}: connection refused \("
        ) as caught:
            asyncio.run(transport.send(b"x", sender="a@example.org", recipient="b@example.org"))

    # Not a copy's failure to retry: the send stops (see tests/test_relay_failures.py).
    assert not isinstance(caught.value, TransientFailure)
    assert isinstance(caught.value, ConnectionError)
    assert caught.value.reason == "connection refused"


def sending_process(project: Path, port: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")} | {
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__CONCURRENCY": "2",
        "DIGEST_SMTP__PIPELINING": str(PIPELINING["pipelining"]).lower(),
        "DIGEST_SECRET_KEY": KEY,
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--date", DAY.isoformat()],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_sent(database: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Wait (a minute at most) until ``count`` deliveries are recorded or the process ends."""
    deadline = time.monotonic() + 60
    while sent_so_far(database) < count and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)


def sent_so_far(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        try:
            return int(
                connection.execute(
                    "SELECT count(*) FROM deliveries WHERE status = 'sent'"
                ).fetchone()[0]
            )
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize("smtp_server", [Slow], indirect=True)
def test_after_sigkill_the_next_run_sends_only_what_is_left(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    emails = [f"reader{n}@example.org" for n in range(40)]
    subscribe(settings, *emails)
    database = project / "var" / "digest.db"

    first = sending_process(project, port)
    wait_until_sent(database, 10, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    killed_at = len(handler.messages)
    assert 10 <= killed_at < 40

    second = sending_process(project, port)
    _, err = second.communicate(timeout=120)

    assert second.returncode == 0, err
    received = sorted(rcpt[0] for _, rcpt, _ in handler.messages)
    assert sorted(set(received)) == sorted(emails)  # nothing lost
    # At most one copy per connection the killed process had open reached the server unrecorded.
    assert len(received) - len(emails) <= 2
    assert sent_so_far(database) == 40


@pytest.mark.parametrize("smtp_server", [Slow], indirect=True)
def test_sigterm_stops_cleanly_and_records_what_was_sent(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    subscribe(settings, *(f"reader{n}@example.org" for n in range(40)))
    database = project / "var" / "digest.db"

    process = sending_process(project, port)
    wait_until_sent(database, 5, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "Error: interrupted:" in err
    assert "left for the next run" in err
    # Everything the server accepted is recorded: nothing will be sent twice.
    assert sent_so_far(database) == len(handler.messages) < 40


class RefusesSender(Recorder):
    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        return "553 5.1.8 Sender address rejected: Domain not found"


@pytest.mark.parametrize("smtp_server", [RefusesSender], indirect=True)
def test_a_refused_sender_stops_the_send_and_blames_no_subscriber(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    _, port = smtp_server
    settings = settings_for(project, port)
    subscribe(settings, *(f"reader{n}@example.org" for n in range(5)))

    with pytest.raises(sending.SendHalted, match="refused the message: 553") as caught:
        send(settings)

    assert (
        caught.value.report.sent,
        caught.value.report.failed,
        caught.value.report.still_pending,
    ) == (
        0,
        0,
        5,
    )
    with Store.open(settings.database_url) as store:
        assert {s.status for s in store.subscribers.iterate()} == {SubscriberStatus.ACTIVE}


class Slower(Slow):
    delay = 0.25


@pytest.mark.parametrize("smtp_server", [Slower], indirect=True)
def test_two_overlapping_sends_deliver_once(
    project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    settings = settings_for(project, port)
    subscribe(settings, *(f"reader{n}@example.org" for n in range(30)))
    database = project / "var" / "digest.db"

    first = sending_process(project, port)
    wait_until_sent(database, 3, first)
    second = sending_process(project, port)
    _, second_err = second.communicate(timeout=60)
    _, first_err = first.communicate(timeout=120)

    assert first.returncode == 0, first_err
    assert second.returncode == 1
    assert "another digest send of this issue is running" in second_err
    assert len(handler.messages) == 30


class StartsRefusing(Recorder):
    """Takes the first message, then answers 421 and closes, as a relay going down does."""

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.messages:
            server.transport.close()
            return "421 4.3.2 Shutting down"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


@contextmanager
def two_relays(project: Path, good: Recorder, bad: Recorder | None) -> Iterator[Settings]:
    """Settings with two relays: ``good``, and ``bad`` (or, for None, a port nobody serves)."""
    with ExitStack() as running:
        ports = [
            running.enter_context(SmtpServer(handler)).port
            if handler is not None
            else running.enter_context(closed_port())
            for handler in (good, bad)
        ]
        yield settings_for(
            project,
            ports[0],
            hosts=f"127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}",
            retry_attempts=1,  # no second chance on the same relay: the other must take it
        )


@pytest.mark.parametrize(
    "bad_relay", [StartsRefusing, RefusesSender, None], ids=["starts-refusing", "553", "down"]
)
def test_with_two_relays_everything_goes_through_the_one_that_works(
    project: Path, bad_relay: type[Recorder] | None
) -> None:
    good = Recorder()
    bad = bad_relay() if bad_relay is not None else None
    emails = [f"reader{n}@example.org" for n in range(30)]
    with two_relays(project, good, bad) as settings:
        subscribe(settings, *emails)
        report = send(settings)

    delivered = [rcpt[0] for _, rcpt, _ in good.messages] + [
        rcpt[0] for _, rcpt, _ in (bad.messages if bad else [])
    ]
    assert (report.sent, report.failed, report.still_pending) == (30, 0, 0)
    assert sorted(delivered) == sorted(emails)  # each once
    assert len(good.messages) >= 29


def test_several_relays_are_read_from_one_setting() -> None:
    smtp = SmtpSettings(hosts="relay1.example.org:25, relay2.example.org", port=2525)

    assert smtp.relays == (("relay1.example.org", 25), ("relay2.example.org", 2525))
    assert SmtpSettings(host="one.example.org").relays == (("one.example.org", 587),)
    with pytest.raises(ValueError, match="host:port"):
        SmtpSettings(hosts="relay1.example.org:smtp")
