"""Several `digest send --worker` processes share one issue through PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from digest import pipeline
from digest.cli import cli
from digest.delivery.ledger import DeliveryResult, Ledger, PendingDelivery
from digest.delivery.sender import SendLoop
from digest.delivery.totals import SendTotals
from digest.email.message import MessageTemplate
from digest.email.render import Renderer
from digest.errors import StoreError
from digest.options import message_options, render_options
from digest.settings import Settings, SmtpSettings, load_settings
from digest.store import Store, deliveries

from .conftest import REPO
from .smtp_sink import Sink, SmtpServer

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[tuple[Sink, int]]:
    handler = Sink(getattr(request, "param", 0.0))
    with SmtpServer(handler) as server:
        yield handler, server.port


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    return load_settings(database_url=database_url)


# Several workers need PostgreSQL: these tests take only its half of `database_url`.
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def subscribe(settings: Settings, count: int) -> list[str]:
    emails = [f"reader{n}@example.org" for n in range(count)]
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([(email, None) for email in emails], now=NOW)
    return emails


def worker(project: Path, settings: Settings, port: int, **extra: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__CONCURRENCY": "4",
        "DIGEST_SECRET_KEY": "worker-test-key-of-at-least-32-characters",
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--worker", "--date", DAY.isoformat()],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def freeze_issue(settings: Settings) -> None:
    """Create the issue first, as the first worker to arrive would."""
    with Store.open(settings.database_url) as store:
        pipeline.build_issue(settings, store, DAY, now=NOW)


def sent_count(settings: Settings) -> int:
    with Store.open(settings.database_url) as store:
        issue_id = store.issues.id_of(DAY)
        return Ledger(store, issue_id).counts().sent if issue_id is not None else 0


class SinkProcess:
    """An aiosmtpd sink in a process of its own (tests/smtp_sink.py)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_sink", str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("ready "), f"the sink did not start: {line!r}"
        self.port = int(line.split()[1])  # the port the sink bound itself

    def stop(self) -> list[str]:
        """Stop it; whom it received messages for."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.out.read_text().split() if self.out.exists() else []


@pytest.fixture
def sinks(project: Path) -> Iterator[list[SinkProcess]]:
    """Three sinks, one per worker, so receiving does not hold the senders back."""
    started = [SinkProcess(project / f"sink{number}.txt") for number in range(3)]
    yield started
    for sink in started:
        sink.stop()


@ON_POSTGRESQL
def test_three_workers_send_each_subscriber_exactly_one_copy(
    settings: Settings,
    project: Path,
    sinks: list[SinkProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Enough for the three to overlap for several seconds, and for the test to end well
    # inside its time limit on a small machine.
    emails = subscribe(settings, 3_000)

    processes = [worker(project, settings, sink.port) for sink in sinks]
    outputs = [process.communicate(timeout=300) for process in processes]
    received = Counter(address for sink in sinks for address in sink.stop())

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "sent before" in out
    assert received == Counter(emails)  # every subscriber, once
    monkeypatch.setenv("DIGEST_DATABASE_URL", settings.database_url)
    status = CliRunner().invoke(cli, ["status", "--date", DAY.isoformat(), "--json"])
    assert status.exit_code == 0, status.stderr
    figures = json.loads(status.stdout)
    assert (figures["sent"], figures["pending"], figures["claimed"]) == (len(emails), 0, 0)
    assert len(figures["workers"]) == 3
    assert sum(w["sent"] for w in figures["workers"]) == len(emails)
    assert all(w["sent"] > 0 for w in figures["workers"])  # the work was shared


@ON_POSTGRESQL
@pytest.mark.parametrize("sink", [0.01], indirect=True)
def test_a_killed_workers_claims_are_taken_over_when_its_lease_runs_out(
    settings: Settings, project: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    emails = subscribe(settings, 1_500)
    freeze_issue(settings)
    lease = {"DIGEST_CLAIM_LEASE_SECONDS": "2"}

    doomed = worker(project, settings, port, **lease)
    deadline = time.monotonic() + 60
    while sent_count(settings) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    others = [worker(project, settings, port, **lease) for _ in range(2)]
    time.sleep(0.5)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=30)
    outputs = [process.communicate(timeout=300) for process in others]

    for process, (_, err) in zip(others, outputs, strict=True):
        assert process.returncode == 0, err
    received = Counter(handler.recipients)
    assert set(received) == set(emails)  # nothing lost
    # At most one copy per connection the killed worker had open was sent twice.
    assert sum(received.values()) - len(emails) <= 4
    assert sent_count(settings) == len(emails)


@ON_POSTGRESQL
def test_a_plain_send_refuses_to_start_beside_workers(settings: Settings, project: Path) -> None:
    subscribe(settings, 10)
    freeze_issue(settings)

    with Store.open(settings.database_url) as store:
        issue_id = store.issues.id_of(DAY)
        assert issue_id is not None
        with store.send_lock(issue_id, shared=True), store.send_lock(issue_id, shared=True):
            # Workers share the issue; a plain send must not run beside them.
            plain = CliRunner().invoke(
                cli,
                ["send", "--date", DAY.isoformat()],
                env={"DIGEST_DATABASE_URL": settings.database_url},
            )
    assert plain.exit_code == 1
    assert "another digest send of this issue is running" in plain.stderr


def test_on_sqlite_a_worker_sends_alone_and_says_so(project: Path) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "add", "ann@example.org"])
    assert result.exit_code == 0

    result = CliRunner().invoke(cli, ["send", "--worker", "--date", DAY.isoformat()])

    assert result.exit_code == 0, result.stderr
    assert "on SQLite a worker is the only sender" in result.stderr
    assert "1 sent" in result.stdout


def claims_setup(database_url: str, count: int) -> tuple[Store, int]:
    store = Store.open(database_url)
    store.subscribers.import_rows([(f"reader{n}@example.org", None) for n in range(count)], now=NOW)
    settings = load_settings(database_url=database_url)
    pipeline.build_issue(settings, store, DAY, now=NOW)
    issue_id = store.issues.id_of(DAY)
    assert issue_id is not None
    Ledger(store, issue_id).enqueue(now=NOW)
    return store, issue_id


def age_claims(store: Store, worker: str, by: dt.timedelta) -> None:
    """As if ``by`` had passed since ``worker`` last claimed or renewed: leases run out sooner."""
    with store.writing() as connection:
        held = connection.execute(
            select(deliveries.c.id, deliveries.c.claimed_until).where(
                deliveries.c.claimed_by == worker, deliveries.c.claimed_until.is_not(None)
            )
        ).all()
        for row in held:
            connection.execute(
                update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(claimed_until=row.claimed_until - by)
            )


def test_a_live_workers_claims_are_renewed_and_a_dead_ones_lapse(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 3)
    lease = dt.timedelta(seconds=10)
    alive, dead, other = (Ledger(store, issue_id, worker=name) for name in ("a", "d", "o"))
    try:
        assert len(alive.claim(1, lease=lease)) == 1
        assert len(dead.claim(1, lease=lease)) == 1
        for name in ("a", "d"):
            age_claims(store, name, dt.timedelta(seconds=8))
        alive.renew(lease=lease)
        for name in ("a", "d"):
            age_claims(store, name, dt.timedelta(seconds=4))

        taken = other.claim(10, lease=lease)

        # The free row and the dead worker's lapsed one; not the renewed one.
        assert len(taken) == 2
        assert other.counts().claimed == 3
        assert {w.worker: w.claimed for w in other.by_worker()} == {"a": 1, "o": 2}
    finally:
        store.close()


def test_a_transient_failure_waits_for_a_run_that_starts_after_it(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 1)
    lease = dt.timedelta(minutes=5)
    first, second = Ledger(store, issue_id, worker="1"), Ledger(store, issue_id, worker="2")
    try:
        started = first.clock()
        (delivery,) = first.claim(1, lease=lease, since=started)
        assert first.record(
            [DeliveryResult(delivery_id=delivery.id, error="451 later", permanent=False)]
        ) == {delivery.id}

        # Workers of the same run leave it: it would only bounce between them.
        assert first.claim(1, lease=lease, since=started) == []
        assert second.claim(1, lease=lease, since=started) == []
        assert not second.held_by_others()
        # The next run takes it.
        time.sleep(0.01)  # past the millisecond SQLite's clock counts in
        later = second.clock()
        assert len(second.claim(1, lease=lease, since=later)) == 1
    finally:
        store.close()


def test_a_late_result_does_not_overwrite_the_one_recorded_after_a_take_over(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 1)
    lease = dt.timedelta(seconds=10)
    stalled, taker = Ledger(store, issue_id, worker="stalled"), Ledger(store, issue_id, worker="t")
    try:
        (delivery,) = stalled.claim(1, lease=lease)
        age_claims(store, "stalled", 2 * lease)  # it stalled past its lease
        (taken,) = taker.claim(1, lease=lease)
        sent = DeliveryResult(delivery_id=taken.id, message_id="<taker@news.example.org>")
        assert taker.record([sent]) == {taken.id}

        # The stalled worker comes back with its transient failure, and with a copy.
        late = [
            DeliveryResult(delivery_id=delivery.id, error="451 late"),
            DeliveryResult(delivery_id=delivery.id, message_id="<late@news.example.org>"),
        ]
        assert stalled.record(late[:1]) == set()
        assert stalled.record(late[1:]) == set()

        counts = taker.counts()
        assert (counts.sent, counts.pending, counts.claimed) == (1, 0, 0)
        with store.reading() as connection:
            assert connection.execute(select(deliveries.c.message_id)).scalar_one() == (
                "<taker@news.example.org>"
            )
        # Nothing is left for a next run to send a third copy of.
        assert taker.claim(10, lease=lease, take_over=True) == []
    finally:
        store.close()


KEY = "worker-test-key-of-at-least-32-characters"


class StallsOnce:
    """A transport whose first copy holds up the whole process until ``resume`` is set.

    It blocks the event loop, as a paused process (SIGSTOP, a swap storm) would: the
    worker's lease renewals stop too, and its claims run out.
    """

    name = "stalls"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.started = threading.Event()
        self.resume = threading.Event()

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        if not self.started.is_set():
            self.started.set()
            self.resume.wait(timeout=30)
        self.sent.append(recipient)

    async def close(self) -> None:
        return None


def send_loop(
    store: Store,
    issue_id: int,
    transport: StallsOnce,
    worker: str,
    *,
    concurrency: int = 1,
    **options: Any,
) -> SendLoop:
    """A worker's send loop over the issue of ``DAY``, one connection unless told, no take-over."""
    settings = load_settings(database_url=store.engine.url.render_as_string(False))
    issue = store.issues.get(DAY)
    assert issue is not None
    rendered = Renderer(settings.templates_dir).render(issue, render_options(settings))
    return SendLoop(
        ledger=Ledger(store, issue_id, worker=worker),
        template=MessageTemplate.build(
            rendered, message_options(settings), secret_key=KEY, now=NOW
        ),
        transport=transport,
        sender="digest@news.example.org",
        smtp=SmtpSettings(retry_attempts=1),
        concurrency=concurrency,
        take_over=False,
        **options,
    )


def test_a_worker_that_stalled_past_its_lease_leaves_the_copies_to_the_one_that_took_over(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 5)
    transport = StallsOnce()
    stalled = send_loop(store, issue_id, transport, "stalled", lease=dt.timedelta(seconds=0.5))
    taker = Ledger(store, issue_id, worker="taker")

    def take_over_while_stalled() -> None:
        try:
            assert transport.started.wait(30)
            deadline = time.monotonic() + 30
            taken: list[PendingDelivery] = []
            # The free ones at once, the stalled worker's when its leases run out.
            while len(taken) < 5:
                assert time.monotonic() < deadline
                taken += taker.claim(10, lease=dt.timedelta(minutes=5))
                time.sleep(0.05)
            taker.record(
                [
                    DeliveryResult(delivery_id=d.id, message_id=f"<taker-{d.id}@example.org>")
                    for d in taken
                ]
            )
        finally:
            transport.resume.set()

    thread = threading.Thread(target=take_over_while_stalled)
    thread.start()
    try:
        totals: SendTotals = asyncio.run(stalled.run())
    finally:
        thread.join()
    try:
        # Only the copy in flight when it stalled went out twice; it is not counted.
        assert len(transport.sent) == 1
        assert (totals.sent, totals.failed, totals.halted) == (0, 0, None)
        with store.reading() as connection:
            rows = connection.execute(select(deliveries.c.status, deliveries.c.message_id)).all()
        assert len(rows) == 5
        assert all(row.status == "sent" for row in rows)
        assert all(row.message_id.startswith("<taker-") for row in rows)
    finally:
        store.close()


@contextmanager
def rows_locked(database_url: str) -> Iterator[None]:
    """Every delivery locked by another session, as a busy database holds them for a moment.

    SQLite locks the whole database for writing; PostgreSQL the rows.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(url.database), isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
            connection.execute("COMMIT")
        finally:
            connection.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as locking:
            locking.execute(select(deliveries.c.id).with_for_update())
            yield
    finally:
        engine.dispose()


def test_a_worker_that_stalled_past_its_lease_sends_what_nobody_took_over(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 4)
    transport = StallsOnce()
    # Two connections: while one stalls with the first copy, the other holds the rest.
    lease = dt.timedelta(seconds=0.5)
    stalled = send_loop(store, issue_id, transport, "stalled", lease=lease, concurrency=2)

    def come_back_to_a_busy_database() -> None:
        try:
            assert transport.started.wait(30)
            time.sleep(2 * lease.total_seconds())  # every claim has run out
            # Busy as the worker comes back: its renewals cannot get through at once.
            with rows_locked(database_url):
                transport.resume.set()
                time.sleep(1)
        finally:
            transport.resume.set()

    thread = threading.Thread(target=come_back_to_a_busy_database)
    thread.start()
    try:
        totals: SendTotals = asyncio.run(stalled.run())
    finally:
        thread.join()
    try:
        # Nobody took its claims over: it still holds them, and sends each copy once.
        assert sorted(transport.sent) == [f"reader{n}@example.org" for n in range(4)]
        assert (totals.sent, totals.failed, totals.halted) == (4, 0, None)
        with store.reading() as connection:
            rows = connection.execute(select(deliveries.c.status, deliveries.c.claimed_by)).all()
        assert [tuple(row) for row in rows] == [("sent", "stalled")] * 4
    finally:
        store.close()


@contextmanager
def clock_ahead(monkeypatch: pytest.MonkeyPatch, by: dt.timedelta) -> Iterator[None]:
    """This process's clock runs ``by`` ahead, as far as the sending modules can tell."""

    class Ahead(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return dt.datetime.now(tz) + by

    shifted = types.SimpleNamespace(**{name: getattr(dt, name) for name in dir(dt)})
    shifted.datetime = Ahead
    with monkeypatch.context() as patched:
        for module in ("digest.delivery.sender", "digest.delivery.ledger", "digest.pipeline"):
            patched.setattr(f"{module}.dt", shifted)
        yield


def test_a_worker_whose_clock_runs_ahead_leaves_live_claims_alone(
    project: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, issue_id = claims_setup(database_url, 3)
    holder = Ledger(store, issue_id, worker="holder")
    lease = dt.timedelta(minutes=5)
    assert len(holder.claim(10, lease=lease)) == 3
    transport = StallsOnce()
    transport.started.set()  # no stall: it only records
    stop = asyncio.Event()

    async def look_for_work() -> SendTotals:
        # Long enough to claim, find the rows held, and look again.
        asyncio.get_running_loop().call_later(1.5, stop.set)
        return await send_loop(store, issue_id, transport, "ahead", lease=lease, stop=stop).run()

    try:
        with clock_ahead(monkeypatch, dt.timedelta(hours=2)):
            totals = asyncio.run(look_for_work())
        assert transport.sent == []
        assert totals.sent == 0
        assert {w.worker: w.claimed for w in holder.by_worker()} == {"holder": 3}
    finally:
        store.close()


class GaveWay(Exception):
    """A driver error as PostgreSQL reports a deadlock it broke by rolling one side back."""

    sqlstate = "40P01"


class Duplicate(Exception):
    sqlstate = "23505"


def failing_writes(
    store: Store, monkeypatch: pytest.MonkeyPatch, errors: list[Exception]
) -> list[int]:
    """``store``'s next writes raise ``errors`` (as store errors), in turn; counts writes."""
    writing, calls = store.writing, [0]

    @contextmanager
    def flaky() -> Iterator[Any]:
        calls[0] += 1
        if errors:
            cause = OperationalError("UPDATE deliveries ...", {}, errors.pop(0))
            raise StoreError("cannot write to the database: failed") from cause
        with writing() as connection:
            yield connection

    monkeypatch.setattr(store, "writing", flaky)
    return calls


def test_a_ledger_write_rolled_back_in_a_deadlock_is_made_again(
    project: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, issue_id = claims_setup(database_url, 2)
    ledger = Ledger(store, issue_id, worker="w")
    try:
        claimed = ledger.claim(2, lease=dt.timedelta(minutes=5))
        calls = failing_writes(store, monkeypatch, [GaveWay(), GaveWay()])

        recorded = ledger.record(
            [DeliveryResult(delivery_id=d.id, message_id=f"<{d.id}@example.org>") for d in claimed]
        )

        assert recorded == {d.id for d in claimed}
        assert calls == [3]
        assert ledger.counts().sent == 2
        # Any other error is not retried.
        calls = failing_writes(store, monkeypatch, [Duplicate()])
        with pytest.raises(StoreError):
            ledger.renew(lease=dt.timedelta(minutes=5))
        assert calls == [1]
    finally:
        store.close()


@ON_POSTGRESQL
def test_recording_and_renewing_at_once_never_deadlock(
    project: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, issue_id = claims_setup(database_url, 300)
    ledger = Ledger(store, issue_id, worker="w")
    lease = dt.timedelta(minutes=5)
    errors: list[Exception] = []
    ids = sorted(d.id for d in ledger.claim(300, lease=lease))

    def record(chunk: list[int], round_: int) -> None:
        try:
            # Results come back in any order; here, the reverse of the renewer's.
            for start in range(0, len(chunk), 50):
                ledger.record(
                    [
                        DeliveryResult(delivery_id=i, message_id=f"<{round_}.{i}@example.org>")
                        for i in chunk[start : start + 50]
                    ]
                )
        except StoreError as exc:
            errors.append(exc)

    def renew() -> None:
        try:
            for _ in range(10):
                ledger.renew(lease=lease)
        except StoreError as exc:
            errors.append(exc)

    try:
        for round_ in range(25):
            # Every delivery pending again, under this worker's claim.
            with store.writing() as connection:
                connection.execute(
                    update(deliveries).values(
                        status="pending",
                        message_id=None,
                        claimed_by="w",
                        claimed_until=dt.datetime.now(dt.UTC) + lease,
                    )
                )
            backwards = ids[::-1]
            threads = [
                threading.Thread(target=record, args=(backwards[0::2], round_)),
                threading.Thread(target=record, args=(backwards[1::2], round_)),
                threading.Thread(target=renew),
                threading.Thread(target=renew),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert ledger.counts().sent == 300
    finally:
        store.close()
    # Not even one write had to be made again: the writers lock rows in one order.
    assert "rolled back a ledger write" not in caplog.text
