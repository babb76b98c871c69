"""``digest schedule``: when it fires, what it does with missed runs, and a real run end to end."""

from __future__ import annotations

import asyncio
import configparser
import datetime as dt
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import create_engine, text

from digest import pipeline, sending
from digest.delivery.ledger import Ledger
from digest.errors import CheckFailed, ConfigError, DigestError
from digest.models import Issue, SubscriberStatus
from digest.schedule import JOB_ID, JOBS_TABLE, Scheduler, trigger
from digest.settings import (
    CheckSettings,
    ScheduleSettings,
    Settings,
    SmtpSettings,
    load_settings,
)
from digest.store import Store
from tests.conftest import REPO
from tests.dns_server import DnsServer
from tests.smtp_sink import Recorder, Slow, closed_port

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)
ADDRESSES = [f"reader{n}@example.org" for n in range(5)]


def fire_times(schedule: ScheduleSettings, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The scheduler's send times after ``after``, computed as APScheduler 3 computes them.

    Its loop (``BaseScheduler._process_jobs``) asks the job's trigger for the next run from
    the run it has just made, at the time it made it; so does this, with the trigger the
    scheduler stores.
    """
    when = trigger(schedule)
    runs: list[dt.datetime] = []
    fire = when.get_next_fire_time(None, after)
    while fire is not None and len(runs) < count:
        runs.append(fire)
        fire = when.get_next_fire_time(fire, fire)
    return runs


def utc_hours(schedule: ScheduleSettings, after: dt.datetime, count: int) -> list[str]:
    return [
        run.astimezone(dt.UTC).strftime("%m-%d %H:%M") for run in fire_times(schedule, after, count)
    ]


def local_days(schedule: ScheduleSettings, after: dt.datetime, count: int) -> list[dt.date]:
    return [run.astimezone(schedule.zone).date() for run in fire_times(schedule, after, count)]


def test_seven_oclock_local_follows_daylight_saving_both_ways() -> None:
    london = ScheduleSettings(cron="0 7 * * *", timezone="Europe/London")

    spring = utc_hours(london, dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 2)
    autumn = utc_hours(london, dt.datetime(2026, 10, 24, 0, tzinfo=dt.UTC), 2)

    assert spring == ["03-29 06:00", "03-30 06:00"]  # BST begins on the 29th
    assert autumn == ["10-24 06:00", "10-25 07:00"]  # and ends on the 25th


def test_a_time_that_does_not_exist_or_repeats_still_sends_once_that_day() -> None:
    early = ScheduleSettings(cron="30 1 * * *", timezone="Europe/London")

    spring = fire_times(early, dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 2)
    autumn = local_days(early, dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), 2)

    # 01:30 does not exist on 29 March: that day's send goes at 02:30 BST (01:30 UTC).
    assert [run.astimezone(early.zone).date() for run in spring] == [
        dt.date(2026, 3, 29),
        dt.date(2026, 3, 30),
    ]
    assert spring[0].astimezone(dt.UTC) == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    # 01:30 happens twice on 25 October (BST, then GMT): the send runs at the first only.
    assert autumn == [dt.date(2026, 10, 25), dt.date(2026, 10, 26)]


def test_on_the_night_clocks_go_back_each_time_of_the_repeated_hour_fires_once() -> None:
    twice_an_hour = ScheduleSettings(cron="0,30 1 * * *", timezone="Europe/London")

    runs = utc_hours(twice_an_hour, dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), 4)

    # 01:00 and 01:30 BST; not again at 01:00 and 01:30 GMT an hour later.
    assert runs == ["10-25 00:00", "10-25 00:30", "10-26 01:00", "10-26 01:30"]


def test_a_first_run_in_the_repeated_hour_is_not_skipped() -> None:
    early = ScheduleSettings(cron="30 1 * * *", timezone="Europe/London")

    # Started at 01:10 GMT, the second pass of the hour: 01:30 is still to come today.
    runs = utc_hours(early, dt.datetime(2026, 10, 25, 1, 10, tzinfo=dt.UTC), 2)

    assert runs == ["10-25 01:30", "10-26 01:30"]


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
    runs = fire_times(schedule, dt.datetime(2026, 11, 23, 0, tzinfo=dt.UTC), 14)
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
        store.subscribers.import_rows([(address, None) for address in ADDRESSES], now=NOW)
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
    outcomes: list[sending.SendReport | DigestError] = []

    async def go() -> None:
        done = asyncio.Event()

        def ran(outcome: sending.SendReport | DigestError) -> None:
            outcomes.append(outcome)
            done.set()

        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
            scheduler = Scheduler(settings, store, on_run=ran)
            await run_until(scheduler, done)

    asyncio.run(go())

    assert len(outcomes) == 1
    report = outcomes[0]
    assert isinstance(report, sending.SendReport)
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


@pytest.mark.timeout(120)
def test_a_second_scheduler_with_another_schedule_is_refused_unless_it_replaces(
    settings: Settings, project: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")}
    running = subprocess.Popen(
        [sys.executable, "-m", "digest", "schedule"],
        cwd=project,
        env=env | {"DIGEST_DATABASE_URL": settings.database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    other = settings.model_copy(update={"schedule": ScheduleSettings(cron="30 5 * * *")})

    def start(settings: Settings, *, replace: bool = False) -> None:
        async def go() -> None:
            stop = asyncio.Event()
            stop.set()
            with Store.open(settings.database_url) as store:
                await Scheduler(settings, store, replace=replace).run(stop)

        asyncio.run(go())

    try:
        wait_for_log(running, "scheduled '0 7 * * *' in UTC")
        with pytest.raises(ConfigError) as refused:
            start(other)
        start(settings)  # the same schedule is no conflict: a --worker may join
        start(other, replace=True)
    finally:
        stop(running)

    message = str(refused.value)
    assert message.startswith("another digest schedule is running on this database with ")
    assert "hour='7', minute='0'" in message
    assert message.endswith(
        "this one wants '30 5 * * *' in UTC: stop the other first, or start this one with --replace"
    )

    async def stored_next_run() -> dt.datetime | None:
        with Store.open(settings.database_url) as store:
            jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
            jobs.start(AsyncIOScheduler(), "default")
            job = jobs.lookup_job(JOB_ID)
            return job.next_run_time if job else None

    next_run = asyncio.run(stored_next_run())
    assert next_run is not None
    assert (next_run.hour, next_run.minute) == (5, 30)  # replaced


def test_a_scheduler_alone_may_change_the_schedule(settings: Settings) -> None:
    # Nobody else is running: a changed cron is the operator's, no --replace needed.
    async def go() -> None:
        with Store.open(settings.database_url) as store:
            for cron in ("0 7 * * *", "30 5 * * *"):
                stop = asyncio.Event()
                stop.set()
                changed = settings.model_copy(update={"schedule": ScheduleSettings(cron=cron)})
                await Scheduler(changed, store).run(stop)

    asyncio.run(go())


def test_a_stored_job_from_an_older_trigger_keeps_its_next_run(settings: Settings) -> None:
    due = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)

    async def go() -> tuple[object, dt.datetime | None]:
        with Store.open(settings.database_url) as store:
            jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
            raw = AsyncIOScheduler(jobstores={"default": jobs})
            raw.start(paused=True)
            # As an older digest stored it: APScheduler's plain cron trigger, same fields.
            plain = CronTrigger(
                minute="0",
                hour="7",
                day="*",
                month="*",
                day_of_week="*",
                timezone=settings.schedule.zone,
            )
            raw.add_job(
                "digest.schedule:scheduled_send", trigger=plain, id=JOB_ID, next_run_time=due
            )
            raw.shutdown(wait=False)
            stop = asyncio.Event()
            stop.set()
            await Scheduler(settings, store).run(stop)
            jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
            jobs.start(AsyncIOScheduler(), "default")
            job = jobs.lookup_job(JOB_ID)
            assert job is not None
            return job.trigger, job.next_run_time

    stored, next_run = asyncio.run(go())

    assert type(stored) is type(trigger(settings.schedule))
    assert next_run == due


class RefusesUntilTold(Recorder):
    """Refuses the sender (a 5xx that halts a send) until ``accepting`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.accepting = False

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if not self.accepting:
            return "553 5.1.8 Sender address rejected: Domain not found"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


def relay_settings(settings: Settings, port: int, **schedule: Any) -> Settings:
    """``settings`` sending through the relay on ``port``, with ``schedule`` overrides."""
    return load_settings(
        database_url=settings.database_url,
        outbox_dir=settings.outbox_dir,
        secret_key="schedule-test-key-of-at-least-32-characters",
        public_url="https://news.example.org",
        from_address="digest@news.example.org",
        # These tests are about the schedule: the check before each send has its own below.
        schedule=ScheduleSettings(
            misfire_grace_seconds=3600, **({"check_before_send": False} | schedule)
        ),
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            concurrency=2,
            retry_attempts=1,
            retry_delay=0,
            retry_max_delay=0,
            failure_threshold=3,
            timeout=5,
        ),
    )


Outcome = sending.SendReport | DigestError


async def run_scheduler_until(
    settings: Settings, enough: Any, *, due: dt.datetime | None = None
) -> list[tuple[float, Outcome]]:
    """Run a scheduler until ``enough(outcomes)``; each run's outcome with its time."""
    outcomes: list[tuple[float, Outcome]] = []
    done = asyncio.Event()

    def ran(outcome: Outcome) -> None:
        outcomes.append((time.monotonic(), outcome))
        if enough(outcomes):
            done.set()

    with Store.open(settings.database_url) as store:
        await set_next_run(
            store, settings, due or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        )
        await run_until(Scheduler(settings, store, on_run=ran), done)
    return outcomes


def job_ids(settings: Settings) -> list[str]:
    with Store.open(settings.database_url) as store:
        jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
        jobs.start(AsyncIOScheduler(), "default")
        return sorted(job.id for job in jobs.get_all_jobs())


@pytest.mark.parametrize("smtp_server", [RefusesUntilTold], indirect=True)
def test_a_halted_send_is_retried_after_retry_minutes(
    settings: Settings, smtp_server: tuple[RefusesUntilTold, int], caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = smtp_server
    fast = relay_settings(settings, port, retry_minutes=0.02, retry_limit=3)  # 1.2 s

    def enough(outcomes: list[tuple[float, Outcome]]) -> bool:
        handler.accepting = True  # the relay is fixed after the first attempt
        return isinstance(outcomes[-1][1], sending.SendReport)

    with caplog.at_level(logging.INFO, logger="digest.schedule"):
        outcomes = asyncio.run(run_scheduler_until(fast, enough))

    (halted_at, halted), (retried_at, report) = outcomes
    assert isinstance(halted, sending.SendHalted)
    assert isinstance(report, sending.SendReport)
    assert (report.sent, report.already_sent) == (len(ADDRESSES), 0)
    assert retried_at - halted_at >= 1.1
    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == sorted(ADDRESSES)
    today = pipeline.today(fast).isoformat()
    assert f"the send of {today} stopped; retry 1 of 3 at " in caplog.text
    assert f"retry 1 of 3 of the send of {today}" in caplog.text
    assert job_ids(fast) == [JOB_ID]


def test_retries_stop_at_retry_limit(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with closed_port() as port, caplog.at_level(logging.INFO, logger="digest.schedule"):
        down = relay_settings(settings, port, retry_minutes=0.01, retry_limit=2)
        outcomes = asyncio.run(run_scheduler_until(down, lambda outcomes: len(outcomes) == 3))

    assert all(
        isinstance(outcome, sending.SendHalted | sending.SendStopped) for _, outcome in outcomes
    )
    today = pipeline.today(down).isoformat()
    assert f"retry 2 of 2 of the send of {today}" in caplog.text
    assert f"the send of {today} stopped after 2 retries (schedule.retry_limit)" in caplog.text
    assert job_ids(down) == [JOB_ID]  # no further retry waits
    assert outbox_count(down) == 0


def test_a_send_whose_check_fails_sends_nothing_says_why_and_is_made_when_it_passes(
    settings: Settings, smtp_server: tuple[Recorder, int], caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = smtp_server
    domain = "news.digest-schedule-tests.net"
    zone: dict[str, list[str]] = {domain: []}  # no SPF record yet
    sent_while_failing: list[object] = []
    with DnsServer(zone) as dns:
        checked = relay_settings(settings, port, check_before_send=True, retry_minutes=0.02)
        checked = checked.model_copy(
            update={
                "from_address": f"digest@{domain}",
                "public_url": f"https://{domain}",
                "postal_address": "1 Test Street, Testtown",
                "check": CheckSettings(nameservers=dns.nameservers),
            }
        )

        def enough(outcomes: list[tuple[float, Outcome]]) -> bool:
            if len(outcomes) == 1:
                sent_while_failing.extend(handler.messages)
            dns.zone[domain] = ["v=spf1 ip4:127.0.0.1 -all"]  # the operator publishes SPF
            return isinstance(outcomes[-1][1], sending.SendReport)

        with caplog.at_level(logging.INFO, logger="digest.schedule"):
            outcomes = asyncio.run(run_scheduler_until(checked, enough))

    (_, refused), (_, report) = outcomes
    assert sent_while_failing == []
    assert isinstance(refused, CheckFailed)
    assert str(refused) == (
        f"the check before the send of {pipeline.today(checked).isoformat()} failed: dns.spf"
    )
    assert isinstance(report, sending.SendReport)
    assert report.sent == len(ADDRESSES)
    assert sorted(rcpt[0] for _, rcpt, _ in handler.messages) == sorted(ADDRESSES)
    today = pipeline.today(checked).isoformat()
    assert f"check before the send of {today}: FAIL  dns.spf: no SPF record at {domain}" in (
        caplog.text
    )
    assert f"the send of {today} did not start: the check found 1 FAIL (dns.spf)" in caplog.text
    assert f"the send of {today} stopped; retry 1 of 8 at " in caplog.text


def enqueue_issue(settings: Settings, store: Store, day: dt.date) -> None:
    """An issue for ``day`` whose send was started and left: every copy still pending."""
    article = pipeline.load_seeds(settings).articles[0]
    store.issues.save(Issue(date=day, articles=(article,)), created_at=NOW)
    issue_id = store.issues.id_of(day)
    assert issue_id is not None
    Ledger(store, issue_id).enqueue(now=NOW)


def pending_copies(settings: Settings, day: dt.date) -> int:
    with Store.open(settings.database_url) as store:
        issue_id = store.issues.id_of(day)
        assert issue_id is not None
        return Ledger(store, issue_id).counts().pending


def test_recent_issues_left_pending_are_finished_at_start_and_before_each_run(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    today = pipeline.today(settings)
    ago = {days: today - dt.timedelta(days=days) for days in (1, 2, 3)}
    with Store.open(settings.database_url) as store:
        enqueue_issue(settings, store, ago[1])
        enqueue_issue(settings, store, ago[3])  # older than schedule.catch_up_days (2)
    outcomes: list[Outcome] = []

    async def wait_for(count: int) -> None:
        deadline = time.monotonic() + 20
        while len(outcomes) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(outcomes) >= count, outcomes

    async def go() -> None:
        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) + dt.timedelta(hours=6))
            scheduler = Scheduler(settings, store, on_run=outcomes.append)
            stop = asyncio.Event()
            running = asyncio.ensure_future(scheduler.run(stop))
            try:
                await wait_for(1)  # the catch-up at start
                # Left pending after the start: the next run finishes it before its own.
                enqueue_issue(settings, store, ago[2])
                assert scheduler._scheduler is not None
                scheduler._scheduler.modify_job(JOB_ID, next_run_time=dt.datetime.now(dt.UTC))
                await wait_for(3)
            finally:
                stop.set()
                await running

    with caplog.at_level(logging.INFO, logger="digest.schedule"):
        asyncio.run(go())

    reports = [outcome for outcome in outcomes if isinstance(outcome, sending.SendReport)]
    assert [report.date for report in reports] == [ago[1], ago[2], today]
    assert [report.sent for report in reports[:2]] == [len(ADDRESSES), len(ADDRESSES)]
    assert reports[2].nothing_new  # the only seed went out in the earlier issues
    assert f"resuming the send of {ago[1].isoformat()}: 5 copies pending" in caplog.text
    assert f"resuming the send of {ago[2].isoformat()}: 5 copies pending" in caplog.text
    assert pending_copies(settings, ago[3]) == len(ADDRESSES)
    assert outbox_count(settings) == 2 * len(ADDRESSES)


def test_a_send_killed_before_its_copies_were_queued_is_finished_at_start(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Killed after it began, between freezing the issue's rendering and queueing its
    # copies: nothing is pending, but the send had begun, and nobody has the issue yet.
    yesterday = pipeline.today(settings) - dt.timedelta(days=1)
    with Store.open(settings.database_url) as store:
        article = pipeline.load_seeds(settings).articles[0]
        store.issues.save(Issue(date=yesterday, articles=(article,)), created_at=NOW)
        store.issues.mark_send_started(yesterday, at=NOW)
        store.issues.freeze_rendering(
            yesterday, subject="Frozen", html="<p>Frozen</p>", text="Frozen"
        )
    outcomes: list[Outcome] = []

    async def go() -> None:
        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) + dt.timedelta(hours=6))
            scheduler = Scheduler(settings, store, on_run=outcomes.append)
            stop = asyncio.Event()
            running = asyncio.ensure_future(scheduler.run(stop))
            try:
                deadline = time.monotonic() + 20
                while not outcomes and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await running

    with caplog.at_level(logging.INFO, logger="digest.schedule"):
        asyncio.run(go())

    reports = [outcome for outcome in outcomes if isinstance(outcome, sending.SendReport)]
    assert [(report.date, report.sent) for report in reports] == [(yesterday, len(ADDRESSES))]
    assert f"resuming the send of {yesterday.isoformat()}: no copy was queued" in caplog.text
    assert outbox_count(settings) == len(ADDRESSES)


def start_and_catch_up(
    settings: Settings, caplog: pytest.LogCaptureFixture, *, runs: int = 1
) -> list[Outcome]:
    """Start a scheduler whose daily run is hours away; stop it after the catch-up at start.

    That is once ``runs`` sends were made, or once it found nothing to finish.
    """
    outcomes: list[Outcome] = []

    async def go() -> None:
        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) + dt.timedelta(hours=6))
            scheduler = Scheduler(settings, store, on_run=outcomes.append)
            stop = asyncio.Event()
            running = asyncio.ensure_future(scheduler.run(stop))
            try:
                deadline = time.monotonic() + 20
                while (
                    len(outcomes) < runs
                    and "is left unfinished" not in caplog.text
                    and time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await running

    with caplog.at_level(logging.INFO, logger="digest.schedule"):
        asyncio.run(go())
    return outcomes


def test_an_issue_sent_while_nobody_was_subscribed_is_not_sent_to_later_subscribers(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    yesterday = pipeline.today(settings) - dt.timedelta(days=1)
    with Store.open(settings.database_url) as store:
        for address in ADDRESSES:
            store.subscribers.set_status(address, SubscriberStatus.UNSUBSCRIBED, now=NOW)
        report = asyncio.run(sending.send_day(settings, store, yesterday))
        assert (report.nothing_new, report.sent) == (False, 0)
        store.subscribers.add("later@example.org", None, now=NOW)

    outcomes = start_and_catch_up(settings, caplog)

    assert outcomes == []
    assert "no send of the last 2 days is left unfinished" in caplog.text
    assert outbox_count(settings) == 0


def test_a_send_killed_before_its_rendering_was_frozen_is_finished_at_start(
    settings: Settings, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The issue is saved, then the send stops before its rendering is frozen (here a
    # template that does not parse; a kill at that moment leaves the same).
    yesterday = pipeline.today(settings) - dt.timedelta(days=1)
    broken = project / "broken-templates"
    broken.mkdir()
    (broken / "digest.html.j2").write_text("{% if %}\n")
    unparsable = settings.model_copy(update={"templates_dir": broken})
    with Store.open(settings.database_url) as store:
        with pytest.raises(DigestError, match=r"digest\.html\.j2"):
            asyncio.run(sending.send_day(unparsable, store, yesterday))
        assert store.issues.id_of(yesterday) is not None
        assert store.issues.rendering(yesterday) is None

    outcomes = start_and_catch_up(settings, caplog)

    reports = [outcome for outcome in outcomes if isinstance(outcome, sending.SendReport)]
    assert [(report.date, report.sent) for report in reports] == [(yesterday, len(ADDRESSES))]
    assert f"resuming the send of {yesterday.isoformat()}: no copy was queued" in caplog.text
    assert outbox_count(settings) == len(ADDRESSES)


def rename_tables(database_url: str, names: dict[str, str]) -> None:
    """Rename tables from another session: to digest, as if its database had gone."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for name, to in names.items():
                connection.execute(text(f"ALTER TABLE {name} RENAME TO {to}"))
    finally:
        engine.dispose()


GONE = {"deliveries": "deliveries_gone", JOBS_TABLE: f"{JOBS_TABLE}_gone"}
BACK = {to: name for name, to in GONE.items()}


class LosesTheDatabase(Recorder):
    """Accepts every message; at the first, the ledger's and the scheduler's tables go."""

    database_url = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply: str = await super().handle_DATA(server, session, envelope)
        if len(self.messages) == 1:
            await asyncio.to_thread(rename_tables, self.database_url, GONE)
        return reply


@pytest.mark.parametrize("smtp_server", [LosesTheDatabase], indirect=True)
def test_a_send_halted_by_the_database_is_logged_and_the_catch_up_goes_on(
    settings: Settings, smtp_server: tuple[LosesTheDatabase, int], caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = smtp_server
    handler.database_url = settings.database_url
    relay = relay_settings(settings, port, retry_minutes=0.02)
    today = pipeline.today(relay)
    ago = {days: today - dt.timedelta(days=days) for days in (1, 2)}
    with Store.open(relay.database_url) as store:
        enqueue_issue(relay, store, ago[2])
        enqueue_issue(relay, store, ago[1])
    outcomes: list[Outcome] = []
    done = asyncio.Event()

    def ran(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 1:
            rename_tables(relay.database_url, BACK)  # the database is back
        else:
            done.set()

    async def go() -> None:
        with Store.open(relay.database_url) as store:
            await set_next_run(store, relay, dt.datetime.now(dt.UTC) + dt.timedelta(hours=6))
            await run_until(Scheduler(relay, store, on_run=ran), done)

    with caplog.at_level(logging.INFO):
        asyncio.run(go())

    halted, report = outcomes
    assert isinstance(halted, sending.SendHalted)
    assert isinstance(report, sending.SendReport)
    assert (report.date, report.sent) == (ago[1], len(ADDRESSES))
    assert (
        f"the send of {ago[2].isoformat()} stopped, and its retry could not be scheduled"
        in caplog.text
    )
    # One line each, no traceback: the log is the scheduler's only output.
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


def test_a_retry_that_comes_due_past_catch_up_days_sends_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    old = pipeline.today(settings) - dt.timedelta(days=3)  # schedule.catch_up_days is 2
    with Store.open(settings.database_url) as store:
        enqueue_issue(settings, store, old)

    def skipped_or_sent(outcomes: list[Outcome]) -> bool:
        return bool(outcomes) or "skipped" in caplog.text

    outcomes: list[Outcome] = []

    async def go() -> None:
        with Store.open(settings.database_url) as store:
            await set_next_run(store, settings, dt.datetime.now(dt.UTC) + dt.timedelta(hours=6))
            jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
            raw = AsyncIOScheduler(jobstores={"default": jobs})
            raw.start(paused=True)
            # Stored when that day's send stopped; digest was down from then until now.
            raw.add_job(
                "digest.schedule:retry_send",
                trigger=DateTrigger(run_date=dt.datetime.now(dt.UTC) - dt.timedelta(days=3)),
                args=[old.isoformat(), 1],
                id=f"retry-{old.isoformat()}",
                misfire_grace_time=None,
            )
            raw.shutdown(wait=False)
            scheduler = Scheduler(settings, store, on_run=outcomes.append)
            stop = asyncio.Event()
            running = asyncio.ensure_future(scheduler.run(stop))
            try:
                deadline = time.monotonic() + 20
                while not skipped_or_sent(outcomes) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await running

    with caplog.at_level(logging.INFO, logger="digest.schedule"):
        asyncio.run(go())

    assert outcomes == []
    assert f"retry 1 of the send of {old.isoformat()} skipped" in caplog.text
    assert pending_copies(settings, old) == len(ADDRESSES)
    assert outbox_count(settings) == 0
    assert job_ids(settings) == [JOB_ID]


# End to end: `digest schedule` as a process, against a real SMTP server.


def schedule_process(
    project: Path, port: int, database_url: str, *options: str, **extra: str
) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SECRET_KEY": "schedule-test-key-of-at-least-32-characters",
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        "DIGEST_SCHEDULE__CHECK_BEFORE_SEND": "false",
        **extra,
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
    """Read the process's log (stderr) until a line with ``text``; what was read.

    The pipe is read a byte at a time, past Python's buffering: what this call did not
    need is left in the pipe for the next call (or :func:`stop`) to read.
    """
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    seen: list[str] = []
    line = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Never block past the deadline on a process that has nothing more to say.
        ready, _, _ = select.select([descriptor], [], [], deadline - time.monotonic())
        if not ready:
            break
        byte = os.read(descriptor, 1)
        if not byte:
            break  # the process closed its log: it ended
        line += byte
        if byte == b"\n":
            seen.append(line.decode())
            line.clear()
            if text in seen[-1]:
                return "".join(seen)
    raise AssertionError(f"{text!r} not logged in {timeout} s; log:\n{''.join(seen)}{line!r}")


def served_url(log: str) -> str:
    """The address digest says, in ``log``, it serves on."""
    running = re.search(r"serving on (http://127\.0\.0\.1:\d+)", log)
    assert running, log
    return running[1]


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


def subscribe_more(settings: Settings, count: int) -> list[str]:
    """``count`` more subscribers; every address subscribed now."""
    more = [f"more{n}@example.org" for n in range(count)]
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([(address, None) for address in more], now=NOW)
    return ADDRESSES + more


def wait_until_received(
    handler: Recorder, addresses: list[str], process: subprocess.Popen[str], timeout: float = 60
) -> None:
    """Wait until the server has a copy for every address (or the process ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if {rcpt[0] for _, rcpt, _ in handler.messages} >= set(addresses):
            return
        time.sleep(0.05)
    received = len({rcpt[0] for _, rcpt, _ in handler.messages})
    raise AssertionError(f"{received} of {len(addresses)} addresses received in {timeout} s")


class Gated(Recorder):
    """Takes three messages, then holds each of the others until ``gate`` is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        while len(self.messages) >= 3 and not self.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("smtp_server", [Gated], indirect=True)
@pytest.mark.parametrize("options", [(), ("--worker",)], ids=["plain", "workers"])
def test_two_schedulers_on_one_database_deliver_each_copy_once(
    settings: Settings,
    project: Path,
    options: tuple[str, ...],
    smtp_server: tuple[Gated, int],
) -> None:
    everyone = subscribe_more(settings, 25)
    handler, port = smtp_server
    day = pipeline.today(settings).isoformat()
    due_in(settings, 2)
    first = schedule_process(project, port, settings.database_url, *options)
    deadline = time.monotonic() + 60
    while len(handler.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The first is held in the middle of the day's send. The second is made due now too:
    # it takes up the same issue at start (the send left unfinished) and when due.
    due_in(settings, 0)
    second = schedule_process(project, port, settings.database_url, *options)
    second_log = wait_for_log(second, f"resuming the send of {day}")
    handler.gate.set()
    wait_until_received(handler, everyone, first)
    second_log += wait_for_log(second, f"scheduled send for {day}")  # the catch-up's
    second_log += wait_for_log(second, f"scheduled send for {day}")  # the due run's
    time.sleep(1)  # time for a second copy to arrive, were one sent
    first_log = stop(first)
    second_log += stop(second)

    assert f"scheduled send for {day}" in first_log
    assert second_log.count(f"scheduled send for {day}") >= 2
    assert Counter(rcpt[0] for _, rcpt, _ in handler.messages) == Counter(everyone)


@pytest.mark.parametrize("smtp_server", [Slow], indirect=True)
def test_a_scheduler_killed_in_the_middle_of_a_send_finishes_the_day_on_restart(
    settings: Settings, project: Path, smtp_server: tuple[Recorder, int]
) -> None:
    everyone = subscribe_more(settings, 40)
    handler, port = smtp_server
    two_connections = {"DIGEST_SMTP__CONCURRENCY": "2"}
    due_in(settings, 2)
    first = schedule_process(project, port, settings.database_url, **two_connections)
    deadline = time.monotonic() + 60
    while len(handler.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    killed_at = len(handler.messages)
    assert 10 <= killed_at < len(everyone)

    # Restarted: the stored next run is tomorrow's, yet today's issue is finished now.
    second = schedule_process(project, port, settings.database_url, **two_connections)
    log = wait_for_log(second, "resuming the send of")
    wait_until_received(handler, everyone, second)
    log += wait_for_log(second, "scheduled send for")
    log += stop(second)

    today = pipeline.today(settings).isoformat()
    assert re.search(rf"resuming the send of {today}: \d+ copies pending", log)
    received = Counter(rcpt[0] for _, rcpt, _ in handler.messages)
    assert set(received) == set(everyone)  # nothing lost
    # At most one copy per connection the killed process had open went out twice.
    assert sum(received.values()) - len(everyone) <= 2
    with Store.open(settings.database_url) as store:
        issue_id = store.issues.id_of(pipeline.today(settings))
        assert issue_id is not None
        assert Ledger(store, issue_id).counts().sent == len(everyone)


def test_schedule_with_serve_runs_both_and_stops_on_sigterm(
    settings: Settings, project: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_SECRET_KEY": "schedule-test-key-of-at-least-32-characters",
    }
    # Port 0: the server binds a port of its own and logs which (no race for a free one).
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "schedule", "--serve", "--port", "0"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = served_url(wait_for_log(process, "serving on"))
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
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
        store.subscribers.import_rows([(f"more{n}@example.org", None) for n in range(40)], now=NOW)
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
        issue_id = store.issues.id_of(pipeline.today(settings))
        assert issue_id is not None
        assert Ledger(store, issue_id).counts().sent == len(handler.messages) < 45
