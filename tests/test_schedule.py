"""``digest schedule``: when it fires, what it does with missed runs, and a real run end to end."""

from __future__ import annotations

import asyncio
import configparser
import datetime as dt
import logging
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from digest import pipeline
from digest.errors import ConfigError, DigestError
from digest.ledger import Ledger
from digest.schedule import JOB_ID, JOBS_TABLE, Scheduler, next_runs
from digest.settings import ScheduleSettings, Settings, load_settings
from digest.store import Store
from tests.conftest import REPO
from tests.test_smtp import Recorder, Slow, free_port

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)
ADDRESSES = [f"reader{n}@example.org" for n in range(5)]


def utc_hours(schedule: ScheduleSettings, after: dt.datetime, count: int) -> list[str]:
    return [
        run.astimezone(dt.UTC).strftime("%m-%d %H:%M") for run in next_runs(schedule, after, count)
    ]


def test_seven_oclock_local_follows_daylight_saving_both_ways() -> None:
    london = ScheduleSettings(cron="0 7 * * *", timezone="Europe/London")

    spring = utc_hours(london, dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 2)
    autumn = utc_hours(london, dt.datetime(2026, 10, 24, 0, tzinfo=dt.UTC), 2)

    assert spring == ["03-29 06:00", "03-30 06:00"]  # BST begins on the 29th
    assert autumn == ["10-24 06:00", "10-25 07:00"]  # and ends on the 25th


def test_a_time_that_does_not_exist_or_repeats_still_sends_once_that_day() -> None:
    early = ScheduleSettings(cron="30 1 * * *", timezone="Europe/London")

    spring = next_runs(early, dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 2)
    autumn = next_runs(early, dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), 2)

    # 01:30 does not exist on 29 March and happens twice on 25 October: one run each day.
    assert [run.date() for run in spring] == [dt.date(2026, 3, 29), dt.date(2026, 3, 30)]
    assert [run.date() for run in autumn] == [dt.date(2026, 10, 25), dt.date(2026, 10, 26)]


def test_the_schedule_is_checked_when_settings_load(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SCHEDULE__CRON", "0 7 * *")

    with pytest.raises(ConfigError, match=r"DIGEST_SCHEDULE__CRON.*five crontab fields"):
        load_settings()


@pytest.mark.parametrize(
    ("weekday", "expected"),
    [
        ("1", ["Mon"]),
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0,6", ["Sat", "Sun"]),
        ("5-7", ["Fri", "Sat", "Sun"]),
        ("7-7", ["Sun"]),
        ("0-6/3", ["Sun", "Wed", "Sat"]),
        ("*/2", ["Tue", "Thu", "Sat", "Sun"]),
        ("mon-wed", ["Mon", "Tue", "Wed"]),
        ("SUN", ["Sun"]),
    ],
)
def test_weekdays_are_numbered_as_cron_numbers_them(weekday: str, expected: list[str]) -> None:
    schedule = ScheduleSettings(cron=f"0 7 * * {weekday}")

    # Two weeks from a Monday: every weekday named comes up.
    runs = next_runs(schedule, dt.datetime(2026, 11, 23, 0, tzinfo=dt.UTC), 14)
    seen = {run.strftime("%a") for run in runs if run < dt.datetime(2026, 11, 30, tzinfo=dt.UTC)}

    assert sorted(seen) == sorted(expected)


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 7 1 * 1", "not both"),
        ("0 7 * * 8", "out of range"),
        ("0 7 * * 5-1", "runs backwards"),
        ("0 7 * * 7-2", "runs backwards"),
        ("61 7 * * *", "minute"),
        ("0 7 * * funday", "not a number or a day name"),
    ],
)
def test_bad_crontabs_say_what_is_wrong(cron: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ScheduleSettings(cron=cron)


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    settings = load_settings(
        database_url=database_url,
        outbox_dir=project / "var" / "outbox",
        schedule=ScheduleSettings(misfire_grace_seconds=3600),
    )
    with Store.open(database_url) as store:
        store.import_subscribers([(address, None) for address in ADDRESSES], now=NOW)
    return settings


async def set_next_run(store: Store, settings: Settings, when: dt.datetime) -> None:
    """As if the last scheduler had stopped with the send due at ``when``."""
    stop = asyncio.Event()
    stop.set()
    await Scheduler(settings, store).run(stop)  # stores the job, and stops at once
    jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
    raw = AsyncIOScheduler(jobstores={"default": jobs})
    raw.start(paused=True)
    raw.modify_job(JOB_ID, next_run_time=when)
    raw.shutdown(wait=False)


def outbox_count(settings: Settings) -> int:
    folder = settings.outbox_dir / "new"
    return len(list(folder.iterdir())) if folder.exists() else 0


async def run_until(scheduler: Scheduler, done: asyncio.Event, timeout: float = 20) -> None:
    stop = asyncio.Event()

    async def stop_when_done() -> None:
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            stop.set()

    waiter = asyncio.ensure_future(stop_when_done())
    await scheduler.run(stop)
    await waiter


def test_a_run_missed_within_the_grace_is_made_on_restart(settings: Settings) -> None:
    outcomes: list[pipeline.SendReport | DigestError] = []

    async def go() -> None:
        done = asyncio.Event()

        def ran(outcome: pipeline.SendReport | DigestError) -> None:
            outcomes.append(outcome)
            done.set()

        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
            scheduler = Scheduler(settings, store, on_run=ran)
            await run_until(scheduler, done)

    asyncio.run(go())

    assert len(outcomes) == 1
    report = outcomes[0]
    assert isinstance(report, pipeline.SendReport)
    assert report.sent == len(ADDRESSES)
    assert outbox_count(settings) == len(ADDRESSES)


def test_a_run_missed_beyond_the_grace_is_skipped_and_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[object] = []
    next_run: list[dt.datetime | None] = []

    async def go() -> None:
        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
            scheduler = Scheduler(settings, store, on_run=outcomes.append)
            stop = asyncio.Event()
            running = asyncio.ensure_future(scheduler.run(stop))
            deadline = time.monotonic() + 20
            while "was skipped" not in caplog.text and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            next_run.append(scheduler.next_run_time())
            stop.set()
            await running

    with caplog.at_level(logging.WARNING, logger="digest.schedule"):
        asyncio.run(go())

    assert outcomes == []
    assert outbox_count(settings) == 0
    assert "was skipped: digest was not running then" in caplog.text
    assert "schedule.misfire_grace_seconds" in caplog.text
    assert next_run[0] is not None
    assert next_run[0] > dt.datetime.now(dt.UTC)


def test_a_restart_keeps_the_stored_next_run_and_a_new_cron_replaces_it(
    settings: Settings,
) -> None:
    async def next_run_after_start(settings: Settings) -> dt.datetime | None:
        stop = asyncio.Event()
        stop.set()
        with Store.open(settings.database_url) as store:
            scheduler = Scheduler(settings, store)
            await scheduler.run(stop)
            jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
            jobs.start(AsyncIOScheduler(), "default")
            job = jobs.lookup_job(JOB_ID)
            return job.next_run_time if job else None

    first = asyncio.run(next_run_after_start(settings))
    again = asyncio.run(next_run_after_start(settings))
    changed = settings.model_copy(
        update={"schedule": ScheduleSettings(cron="15 9 * * 1", timezone="Europe/Paris")}
    )
    moved = asyncio.run(next_run_after_start(changed))

    assert first is not None
    assert again == first
    assert moved is not None
    local = moved.astimezone(changed.schedule.zone)
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 15)


# End to end: `digest schedule` as a process, against a real SMTP server.


def schedule_process(
    project: Path, port: int, database_url: str, *options: str
) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SECRET_KEY": "schedule-test-key-of-at-least-32-characters",
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "schedule", *options],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def due_in(settings: Settings, seconds: float) -> None:
    async def go() -> None:
        with Store.open(settings.database_url) as store:
            await set_next_run(
                store, settings, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
            )

    asyncio.run(go())


def wait_for_log(process: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """Read the process's log (stderr) until ``text`` appears; all of it so far."""
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Never block past the deadline on a process that has nothing more to say.
        ready, _, _ = select.select([process.stderr], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} not logged in {timeout} s; log:\n{''.join(seen)}")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    return rest


def test_the_real_scheduler_sends_once_and_a_restart_sends_nothing_more(
    settings: Settings, project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    due_in(settings, 2)
    first = schedule_process(project, port, settings.database_url)
    log = wait_for_log(first, "scheduled send for")
    log += stop(first)
    assert "next send at" in log
    assert f"{len(ADDRESSES)} sent, 0 failed" in log
    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == sorted(ADDRESSES)

    # Restarted, and made due again: the same day's issue is sent to no one twice.
    due_in(settings, 2)
    second = schedule_process(project, port, settings.database_url)
    log = wait_for_log(second, "scheduled send for")
    stop(second)
    assert f"0 sent, 0 failed, 0 to retry, {len(ADDRESSES)} sent before" in log
    assert len(handler.messages) == len(ADDRESSES)


@pytest.mark.parametrize("options", [(), ("--worker",)], ids=["plain", "workers"])
def test_two_schedulers_on_one_database_deliver_each_copy_once(
    settings: Settings,
    project: Path,
    options: tuple[str, ...],
    smtp_server: tuple[Recorder, int],
) -> None:
    handler, port = smtp_server
    # Due once both have most likely started; one that starts after the other has
    # already sent sees tomorrow's run instead, which is as good.
    due_in(settings, 6)
    processes = [schedule_process(project, port, settings.database_url, *options) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(handler.messages) < len(ADDRESSES) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # time for a second copy to arrive, were one sent
    for process in processes:
        stop(process)

    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == sorted(ADDRESSES)


def test_schedule_with_serve_runs_both_and_stops_on_sigterm(
    settings: Settings, project: Path
) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_SECRET_KEY": "schedule-test-key-of-at-least-32-characters",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "schedule", "--serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_log(process, "Uvicorn running")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ok\n")
    finally:
        log = stop(process)
    assert "stopped" in log


def test_the_systemd_unit_runs_the_scheduler_and_outwaits_its_stop() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "config" / "digest.service")

    command = unit["Service"]["ExecStart"].split()
    assert command[0].endswith("/.venv/bin/digest")
    assert command[1:3] == ["schedule", "--serve"]
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    # systemd must not kill a send that is still finishing within its own timeout.
    default_stop = ScheduleSettings().stop_timeout_seconds
    assert int(unit["Service"]["TimeoutStopSec"]) > default_stop


@pytest.mark.parametrize("smtp_server", [Slow], indirect=True)
def test_sigterm_during_a_scheduled_send_lets_it_finish_recording(
    settings: Settings, project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    with Store.open(settings.database_url) as store:
        store.import_subscribers([(f"more{n}@example.org", None) for n in range(40)], now=NOW)
    handler, port = smtp_server
    due_in(settings, 2)
    process = schedule_process(project, port, settings.database_url)
    deadline = time.monotonic() + 60
    while len(handler.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    log = stop(process)

    assert "waiting up to 60 s for the send under way to finish" in log
    assert "stopped early: interrupted" in log
    # Everything the server accepted is recorded: a rerun sends none of it again.
    with Store.open(settings.database_url) as store:
        issue_id = store.issue_id(pipeline.today(settings))
        assert issue_id is not None
        assert Ledger(store, issue_id).counts().sent == len(handler.messages) < 45
