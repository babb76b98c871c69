"""Several `digest send --worker` processes share one issue through PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from digest import pipeline
from digest.cli import cli
from digest.ledger import DeliveryResult, Ledger
from digest.settings import Settings, load_settings
from digest.store import Store

from .conftest import REPO
from .test_smtp import free_port

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


class Sink:
    """Accepts every message and keeps only whom it was for (30,000 bodies would not fit)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.recipients: list[str] = []
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[tuple[Sink, int]]:
    handler = Sink(getattr(request, "param", 0.0))
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    return load_settings(database_url=database_url)


# Several workers need PostgreSQL: these tests take only its half of `database_url`.
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def subscribe(settings: Settings, count: int) -> list[str]:
    emails = [f"reader{n}@example.org" for n in range(count)]
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(email, None) for email in emails], now=NOW)
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
        issue_id = store.issue_id(DAY)
        return Ledger(store, issue_id).counts().sent if issue_id is not None else 0


class SinkProcess:
    """An aiosmtpd sink in a process of its own (tests/smtp_sink.py)."""

    def __init__(self, out: Path) -> None:
        self.port, self.out = free_port(), out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_sink", str(self.port), str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

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
    emails = subscribe(settings, 30_000)

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
    assert (figures["sent"], figures["pending"], figures["claimed"]) == (30_000, 0, 0)
    assert len(figures["workers"]) == 3
    assert sum(w["sent"] for w in figures["workers"]) == 30_000
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
        issue_id = store.issue_id(DAY)
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
    store.import_subscribers([(f"reader{n}@example.org", None) for n in range(count)], now=NOW)
    settings = load_settings(database_url=database_url)
    pipeline.build_issue(settings, store, DAY, now=NOW)
    issue_id = store.issue_id(DAY)
    assert issue_id is not None
    Ledger(store, issue_id).enqueue(now=NOW)
    return store, issue_id


def test_a_live_workers_claims_are_renewed_and_a_dead_ones_lapse(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 3)
    lease = dt.timedelta(seconds=10)
    alive, dead, other = (Ledger(store, issue_id, worker=name) for name in ("a", "d", "o"))
    try:
        assert len(alive.claim(1, lease=lease, now=NOW)) == 1
        assert len(dead.claim(1, lease=lease, now=NOW)) == 1
        alive.renew(lease=lease, now=NOW + dt.timedelta(seconds=8))

        later = NOW + dt.timedelta(seconds=12)
        taken = other.claim(10, lease=lease, now=later)

        # The free row and the dead worker's lapsed one; not the renewed one.
        assert len(taken) == 2
        assert other.counts(now=later).claimed == 3
        assert {w.worker: w.claimed for w in other.by_worker(now=later)} == {"a": 1, "o": 2}
    finally:
        store.close()


def test_a_transient_failure_waits_for_a_run_that_starts_after_it(
    project: Path, database_url: str
) -> None:
    store, issue_id = claims_setup(database_url, 1)
    lease = dt.timedelta(minutes=5)
    started = NOW
    first, second = Ledger(store, issue_id, worker="1"), Ledger(store, issue_id, worker="2")
    try:
        (delivery,) = first.claim(1, lease=lease, now=NOW, since=started)
        failed_at = NOW + dt.timedelta(seconds=5)
        first.record(
            [DeliveryResult(delivery_id=delivery.id, error="451 later", permanent=False)],
            now=failed_at,
        )

        # Workers of the same run leave it: it would only bounce between them.
        again = failed_at + dt.timedelta(seconds=1)
        assert first.claim(1, lease=lease, now=again, since=started) == []
        assert second.claim(1, lease=lease, now=again, since=started) == []
        assert not second.held_by_others(now=again)
        # The next run takes it.
        later = failed_at + dt.timedelta(minutes=1)
        assert len(second.claim(1, lease=lease, now=later, since=later)) == 1
    finally:
        store.close()
