"""The daily send on a schedule: APScheduler 3.x in the foreground, its job kept in the database.

The job's state (its next run time) lives in the same database as the issues, so a
restart picks up where the last process stopped: a run missed while digest was down is
made if it comes back within the grace period, and skipped, with a log line, if later.
Two schedulers started by mistake against one database both fire, but the ledger and the
send lock let each subscriber get the issue once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from digest import pipeline
from digest.crontab import cron_trigger
from digest.errors import DigestError
from digest.settings import ScheduleSettings, Settings
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = ["JOBS_TABLE", "JOB_ID", "Scheduler", "next_runs", "scheduled_send", "trigger"]

JOB_ID = "daily-send"
# APScheduler creates and owns this table, beside digest's own.
JOBS_TABLE = "apscheduler_jobs"


def trigger(schedule: ScheduleSettings) -> CronTrigger:
    """The configured crontab, read in the configured time zone."""
    return cron_trigger(schedule.cron, schedule.zone)


def next_runs(schedule: ScheduleSettings, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next ``count`` send times strictly after ``after``, in the configured zone.

    A local time that happens twice (clocks going back) may fire twice; both runs send
    the same day's issue, so the second finds everyone sent already.
    """
    when = trigger(schedule)
    runs: list[dt.datetime] = []
    now = after
    while len(runs) < count:
        fire = when.get_next_fire_time(None, now + dt.timedelta(seconds=1))
        if fire is None:
            break
        if fire > now:
            runs.append(fire)
            now = fire
        else:
            # Never go backwards (APScheduler can around a repeated hour).
            now += dt.timedelta(minutes=1)
    return runs


@dataclass
class _Running:
    """The process's scheduler state that the job function, found by reference, must reach."""

    settings: Settings
    # The scheduler's own store: its job and the issues live in the same database.
    store: Store
    # Each run sends as one of several workers (``digest schedule --worker``).
    worker: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sends: set[asyncio.Task[Any]] = field(default_factory=set)
    # When the run under way was due: its date is the issue's, even if it starts late.
    due: dt.datetime | None = None
    # Called with each run's report or error (tests listen here).
    on_run: Callable[[pipeline.SendReport | DigestError], None] | None = None


_running: _Running | None = None


async def scheduled_send() -> None:
    """The job: today's issue to every active subscriber, as ``digest send`` does it.

    It runs with the settings ``digest schedule`` started with; the job stored in the
    database holds only a reference to this function.
    """
    running = _running
    if running is None:
        log.error("scheduled send: no scheduler is running in this process")
        return
    task = asyncio.current_task()
    if task is not None:
        running.sends.add(task)
    due, running.due = running.due, None
    try:
        outcome = await _send(running, due)
    finally:
        if task is not None:
            running.sends.discard(task)
    if running.on_run is not None:
        running.on_run(outcome)


async def _send(running: _Running, due: dt.datetime | None) -> pipeline.SendReport | DigestError:
    settings = running.settings
    # A run made late (within the grace) sends the issue of the day it was due, even if
    # midnight has passed since.
    day = pipeline.today(settings, due)
    try:
        if pipeline.uses_preview_key(settings):
            log.warning("DIGEST_SECRET_KEY is not set; the outbox copies carry preview-key links")
        report = await pipeline.send_day(
            settings, running.store, day, stop=running.stop, worker=running.worker
        )
    except pipeline.SendInterrupted as exc:
        log.warning("scheduled send for %s stopped early: %s", day.isoformat(), exc)
        return exc
    except DigestError as exc:
        # The log is the scheduler's only output: one line, no traceback.
        log.error("scheduled send for %s failed: %s", day.isoformat(), exc)
        return exc
    if report.nothing_new:
        log.info("scheduled send for %s: nothing new to send", day.isoformat())
    else:
        log.info(
            "scheduled send for %s to %s: %d sent, %d failed, %d to retry, %d sent before",
            day.isoformat(),
            pipeline.destination(settings),
            report.sent,
            report.failed,
            report.deferred,
            report.already_sent,
        )
    if report.deferred:
        # The next scheduled run sends the next day's issue, not this one's leftovers.
        log.warning(
            "%d copies of %s are still pending after transient failures: "
            "`digest send --date %s` retries them",
            report.deferred,
            day.isoformat(),
            day.isoformat(),
        )
    for failure in report.failures:
        log.warning("skipped %s: %s", failure.source, failure.reason)
    return report


class Scheduler:
    """``digest schedule``: runs the daily send until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        worker: bool = False,
        on_run: Callable[[pipeline.SendReport | DigestError], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_run = on_run
        self.worker = worker
        self._scheduler: AsyncIOScheduler | None = None

    async def run(
        self,
        stop: asyncio.Event,
        *,
        also: Awaitable[None] | None = None,
        stop_also: Callable[[], None] | None = None,
    ) -> None:
        """Schedule the send; on ``stop``, let a send under way finish (bounded), then return.

        ``also`` runs beside the scheduler on the same loop (``--serve``); ``stop_also``
        asks it to finish, when the scheduler stops.
        """
        global _running
        _running = running = _Running(
            settings=self.settings, store=self.store, worker=self.worker, on_run=self.on_run
        )
        scheduler = self._start()
        beside = asyncio.ensure_future(also) if also is not None else None
        try:
            waiting = [asyncio.ensure_future(stop.wait())] + ([beside] if beside else [])
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in waiting:
                if task is not beside:
                    task.cancel()
        finally:
            # No new runs. A send under way starts no new copy and records what it has
            # sent. Shutting the scheduler down would cancel its job, so that comes after.
            scheduler.pause()
            running.stop.set()
            if running.sends:
                timeout = self.settings.schedule.stop_timeout_seconds
                log.info("waiting up to %d s for the send under way to finish", timeout)
                _, late = await asyncio.wait(running.sends, timeout=timeout)
                if late:
                    log.warning("the send under way did not finish in %d s: stopping it", timeout)
                    for task in late:
                        task.cancel()
                    await asyncio.wait(late)
            scheduler.shutdown(wait=False)
            if beside is not None and not beside.done():
                if stop_also is not None:
                    stop_also()
                await asyncio.wait([beside], timeout=10)
                if not beside.done():
                    beside.cancel()
                    await asyncio.wait([beside])
            _running = None
        if beside is not None and not beside.cancelled() and beside.exception() is not None:
            beside.result()  # an error in the server ends the process with it

    def next_run_time(self) -> dt.datetime | None:
        """When the send runs next, in the configured zone (None before :meth:`run`)."""
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job is not None else None

    def _start(self) -> AsyncIOScheduler:
        schedule = self.settings.schedule
        scheduler = AsyncIOScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE)
            },
            timezone=schedule.zone,
        )
        scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        # Paused first, so the stored job can be brought up to date before it may fire.
        scheduler.start(paused=True)
        self._scheduler = scheduler
        wanted = trigger(schedule)
        options: dict[str, Any] = {
            "func": scheduled_send,
            "args": [],
            "name": "the daily digest",
            # One send at a time, and several missed runs make one send, not a burst.
            "max_instances": 1,
            "coalesce": True,
            # APScheduler's default grace of one second would skip a send that starts a
            # second late.
            "misfire_grace_time": schedule.misfire_grace_seconds,
        }
        job = scheduler.get_job(JOB_ID)
        if job is None:
            scheduler.add_job(id=JOB_ID, trigger=wanted, **options)
        else:
            # Kept as stored, next run time included, so a run missed while digest was
            # down is still due now; only a changed schedule starts afresh.
            scheduler.modify_job(JOB_ID, **options)
            if repr(job.trigger) != repr(wanted):
                log.info("the schedule changed to %r: the next run follows it", schedule.cron)
                scheduler.reschedule_job(JOB_ID, trigger=wanted)
        scheduler.resume()
        log.info(
            "scheduled %r in %s; next send at %s",
            schedule.cron,
            schedule.timezone,
            _shown(self.next_run_time()),
        )
        return scheduler

    def _submitted(self, event: JobSubmissionEvent) -> None:
        # Dispatched before the job's coroutine first runs: it reads this.
        if _running is not None and event.scheduled_run_times:
            _running.due = event.scheduled_run_times[-1]

    def _missed(self, event: JobExecutionEvent) -> None:
        grace = dt.timedelta(seconds=self.settings.schedule.misfire_grace_seconds)
        log.warning(
            "the send due at %s was skipped: digest was not running then, and came back "
            "more than %s later (schedule.misfire_grace_seconds); next send at %s",
            _shown(event.scheduled_run_time),
            grace,
            _shown(self.next_run_time()),
        )


def _shown(when: dt.datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M %Z") if when is not None else "never"
