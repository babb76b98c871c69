"""A copy that fails for now waits in the delay queue, not on its connection: against a
greylisting aiosmtpd, the connection takes the next copy at once, every copy goes exactly
once when its time comes, and a run stopped meanwhile keeps each waiting copy's attempts."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digest import sending
from digest.delivery.ledger import Ledger
from digest.delivery.mailer import SmtpTransport
from digest.delivery.retries import DelayQueue, retry_delay
from digest.settings import Settings, SmtpSettings, load_settings
from digest.store import Store

from .smtp_sink import Closing, Recorder, SmtpServer

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "delay-queue-test-key-of-at-least-32-characters"
READERS = [f"reader{n}@example.org" for n in range(6)]


class Greylist(Recorder):
    """Refuses each recipient's first RCPT with 451, as greylisting does; keeps the order of
    every RCPT and what it was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.log: list[tuple[str, int]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address not in self.seen:
            self.seen.add(address)
            self.log.append((address, 451))
            return "451 4.7.1 Greylisted, try again later"
        self.log.append((address, 250))
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def greylist() -> Iterator[tuple[Greylist, int]]:
    handler = Greylist()
    with SmtpServer(handler) as server:
        yield handler, server.port


def relay_settings(database_url: str, port: int, **smtp: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "concurrency": 1,
        "retry_attempts": 3,
        "retry_delay": 0.3,
        "retry_max_delay": 1.0,
    }
    return load_settings(
        database_url=database_url,
        public_url="https://news.example.org",
        from_address="digest@news.example.org",
        smtp=SmtpSettings(**(values | smtp)),
    )


def subscribe(settings: Settings) -> None:
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([(email, None) for email in READERS], now=NOW)


async def send(settings: Settings, *, stop: asyncio.Event | None = None) -> sending.SendReport:
    transport = SmtpTransport(settings.smtp)
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
                stop=stop,
            )
    finally:
        await transport.close()


@pytest.mark.timeout(60)
def test_a_greylisted_copy_does_not_hold_its_connection(
    project: Path, database_url: str, greylist: tuple[Greylist, int]
) -> None:
    handler, port = greylist
    settings = relay_settings(database_url, port)
    subscribe(settings)

    report = asyncio.run(send(settings))

    assert (report.sent, report.failed, report.still_pending) == (6, 0, 0)
    # One connection: while the first copy waited out its 451, it sent the first
    # attempt of every other copy instead of sitting idle.
    first_retry = next(index for index, (_, code) in enumerate(handler.log) if code == 250)
    assert [code for _, code in handler.log[:first_retry]] == [451] * 6
    assert sorted(address for address, code in handler.log if code == 250) == sorted(READERS)
    # Each delivered exactly once, on the same connection as the first attempts.
    assert sorted(rcpt for _, rcpts, _ in handler.messages for rcpt in rcpts) == sorted(READERS)
    assert handler.sessions == 1


@pytest.mark.timeout(60)
def test_copies_waiting_when_the_run_stops_keep_their_attempt_and_go_next_time(
    project: Path, database_url: str, greylist: tuple[Greylist, int]
) -> None:
    handler, port = greylist
    # A long wait: the run is stopped while every copy waits in the delay queue.
    settings = relay_settings(database_url, port, retry_delay=30.0, retry_max_delay=60.0)
    subscribe(settings)

    async def stopped_run() -> sending.SendReport:
        stop = asyncio.Event()

        async def stop_when_all_refused() -> None:
            while len(handler.log) < len(READERS):
                await asyncio.sleep(0.02)
            stop.set()

        stopper = asyncio.create_task(stop_when_all_refused())
        try:
            return await send(settings, stop=stop)
        except sending.SendInterrupted as interrupted:
            return interrupted.report
        finally:
            stopper.cancel()

    report = asyncio.run(stopped_run())

    assert (report.sent, report.still_pending) == (0, 6)
    with Store.open(settings.database_url) as store:
        issue_id = store.issues.id_of(DAY)
        assert issue_id is not None
        ledger = Ledger(store, issue_id)
        assert ledger.counts().pending == 6
        # The attempt is counted and its reason kept, for `digest status`.
        [(reason, count)] = [(error.error, error.count) for error in ledger.errors()]
        assert (reason, count) == ("451 4.7.1 Greylisted, try again later", 6)

    # The next run sends each of them once.
    again = asyncio.run(send(relay_settings(database_url, port)))
    assert again.sent == 6
    assert sorted(rcpt for _, rcpts, _ in handler.messages for rcpt in rcpts) == sorted(READERS)


def test_the_delay_queue_gives_items_when_due_in_order() -> None:
    delayed: DelayQueue[str] = DelayQueue()
    delayed.push("b", 2.0)
    delayed.push("a", 1.0)
    delayed.push("c", 2.0)

    assert delayed.next_due() == 1.0
    assert delayed.pop_due(0.5) == []
    assert delayed.pop_due(2.0) == ["a", "b", "c"]
    assert len(delayed) == 0
    assert delayed.next_due() is None
    delayed.push("d", 9.0)
    assert delayed.pop_all() == ["d"]


def test_the_wait_doubles_up_to_the_most_with_jitter() -> None:
    smtp = SmtpSettings(retry_delay=2.0, retry_max_delay=10.0)
    for attempts, low in ((1, 2.0), (2, 4.0), (3, 8.0)):
        waits = [retry_delay(smtp, attempts) for _ in range(50)]
        assert all(low <= wait <= min(low + 2.0, 10.0) for wait in waits)
    assert all(retry_delay(smtp, 9) == 10.0 for _ in range(10))


@pytest.mark.timeout(60)
def test_a_relay_going_down_stops_the_send_without_waiting_out_the_retries(
    project: Path, database_url: str
) -> None:
    """A relay's own failures count towards smtp.failure_threshold at once: the send stops
    after that many, not after every copy has waited out its retries, and claims no more
    copies meanwhile than it can keep waiting."""
    handler = Closing()
    with SmtpServer(handler) as server:
        settings = relay_settings(
            database_url,
            server.port,
            concurrency=2,
            retry_delay=30.0,
            retry_max_delay=60.0,
            failure_threshold=5,
        )
        with Store.open(settings.database_url) as store:
            store.subscribers.import_rows(
                [(f"reader{n}@example.org", None) for n in range(300)], now=NOW
            )

        with pytest.raises(sending.SendStopped, match="stopped after 5 failures in a row"):
            asyncio.run(send(settings))

    assert handler.mails < 20
    with Store.open(settings.database_url) as store:
        issue_id = store.issues.id_of(DAY)
        assert issue_id is not None
        assert Ledger(store, issue_id).counts().pending == 300
