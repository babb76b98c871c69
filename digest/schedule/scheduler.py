"""The scheduler itself: APScheduler 3.x on this process's event loop, the daily job kept
in the database, and the stop that lets a send under way finish."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digest import sending
from digest.clock import utc_now
from digest.crontab import LocalCronTrigger, cron_trigger
from digest.errors import ConfigError, DigestError
from digest.schedule.jobs import (
    BOUNCES_JOB_ID,
    JOB_ID,
    JOBS_TABLE,
    SIGNUPS_JOB_ID,
    Running,
    attach,
    catch_up_at_start,
    current,
    detach,
    poll_bounces,
    remove_unconfirmed_signups,
    scheduled_send,
    shown_time,
)
from digest.settings import ScheduleSettings, Settings
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = ["Scheduler", "trigger"]


def trigger(schedule: ScheduleSettings) -> LocalCronTrigger:
    """The configured crontab, read in the configured time zone (once per local time)."""
    return cron_trigger(schedule.cron, schedule.zone)


class Scheduler:
    """``digest schedule``: runs the daily send until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        worker: bool = False,
        replace: bool = False,
        on_run: Callable[[sending.SendReport | DigestError], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_run = on_run
        self.worker = worker
        # Whether a schedule that differs from the one another running scheduler keeps
        # may replace it (--replace).
        self.replace = replace
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
        asks it to finish, when the scheduler stops. While another scheduler runs on the
        same database with another schedule, this one refuses to start (a
        :class:`ConfigError`) unless made with ``replace``.
        """
        with self.store.scheduler_presence() as others:
            await self._run(stop, others, also=also, stop_also=stop_also)

    async def _run(
        self,
        stop: asyncio.Event,
        others: bool,
        *,
        also: Awaitable[None] | None,
        stop_also: Callable[[], None] | None,
    ) -> None:
        running = Running(
            settings=self.settings, store=self.store, worker=self.worker, on_run=self.on_run
        )
        attach(running)
        try:
            scheduler = running.scheduler = self._start(others)
        except BaseException:
            detach()
            raise
        if not stop.is_set():
            # Counted as a send from now on, so a stop waits for it even before it starts.
            running.sends.add(asyncio.ensure_future(catch_up_at_start(running)))
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
            detach()
        if beside is not None and not beside.cancelled() and beside.exception() is not None:
            beside.result()  # an error in the server ends the process with it

    def next_run_time(self) -> dt.datetime | None:
        """When the send runs next, in the configured zone (None before :meth:`run`)."""
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job is not None else None

    def _start(self, others: bool) -> AsyncIOScheduler:
        schedule = self.settings.schedule
        scheduler = AsyncIOScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE),
                "memory": MemoryJobStore(),
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
            if not _same_schedule(job.trigger, wanted) and others and not self.replace:
                scheduler.shutdown(wait=False)
                raise ConfigError(
                    f"another digest schedule is running on this database with another "
                    f"schedule ({_described(job.trigger)}); this one wants "
                    f"{schedule.cron!r} in {schedule.timezone}: stop the other first, or "
                    "start this one with --replace"
                )
            scheduler.modify_job(JOB_ID, **options)
            if not _same_schedule(job.trigger, wanted):
                log.info("the schedule changed to %r: the next run follows it", schedule.cron)
                scheduler.reschedule_job(JOB_ID, trigger=wanted)
            elif type(job.trigger) is not type(wanted):
                # Stored by an older digest: the same times, but fired twice on the night
                # clocks go back. Replaced, the next run time kept.
                scheduler.modify_job(JOB_ID, trigger=wanted)
        if self.settings.bounces.source:
            # Kept in memory: a poll missed while digest was down is simply the next one.
            scheduler.add_job(
                poll_bounces,
                trigger=IntervalTrigger(minutes=self.settings.bounces.poll_minutes),
                id=BOUNCES_JOB_ID,
                name="reading bounces",
                jobstore="memory",
                next_run_time=utc_now(),
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )
        # Hourly, kept in memory: signups never confirmed are removed a little after their
        # signup.pending_days, whenever digest was down.
        scheduler.add_job(
            remove_unconfirmed_signups,
            trigger=IntervalTrigger(hours=1),
            id=SIGNUPS_JOB_ID,
            name="removing unconfirmed signups",
            jobstore="memory",
            next_run_time=utc_now(),
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )
        scheduler.resume()
        log.info(
            "scheduled %r in %s; next send at %s",
            schedule.cron,
            schedule.timezone,
            shown_time(self.next_run_time()),
        )
        return scheduler

    def _submitted(self, event: JobSubmissionEvent) -> None:
        # Dispatched before the job's coroutine first runs: it reads this.
        running = current()
        if running is not None and event.job_id == JOB_ID and event.scheduled_run_times:
            running.due = event.scheduled_run_times[-1]

    def _missed(self, event: JobExecutionEvent) -> None:
        if event.job_id != JOB_ID:
            return
        grace = dt.timedelta(seconds=self.settings.schedule.misfire_grace_seconds)
        log.warning(
            "the send due at %s was skipped: digest was not running then, and came back "
            "more than %s later (schedule.misfire_grace_seconds); next send at %s",
            shown_time(event.scheduled_run_time),
            grace,
            shown_time(self.next_run_time()),
        )


def _same_schedule(stored: Any, wanted: LocalCronTrigger) -> bool:
    """True when the stored trigger fires at the wanted times (its class aside)."""
    return str(stored) == str(wanted) and repr(getattr(stored, "timezone", None)) == repr(
        wanted.timezone
    )


def _described(stored: Any) -> str:
    """A stored trigger as APScheduler writes it, with its zone."""
    return f"{stored} in {getattr(stored, 'timezone', 'UTC')}"
