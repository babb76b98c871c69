"""The daily send on a schedule: APScheduler 3.x in the foreground, its job kept in the database.

The job's state (its next run time) lives in the same database as the issues, so a
restart picks up where the last process stopped: a run missed while digest was down is
made if it comes back within the grace period, and skipped, with a log line, if later.

APScheduler moves the stored next run to tomorrow as soon as a run starts, so a send
killed half way, or stopped by a relay that went down, would otherwise wait for the next
day. At start, and before each run, the scheduler therefore first finishes every recent
issue that still has copies pending (``schedule.catch_up_days``), and a send that stopped
is tried again ``schedule.retry_minutes`` later, the same day, up to
``schedule.retry_limit`` times. The ledger makes all of these send each copy once.
Two schedulers started by mistake against one database may both take up an issue; the
ledger and the send lock let each subscriber get it once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from digest import checks, pipeline, sending
from digest.bounces.mailbox import configured_source, shown_source
from digest.bounces.process import ProcessReport, process_mailbox
from digest.clock import utc_now
from digest.crontab import LocalCronTrigger, cron_trigger
from digest.delivery import transport as transports
from digest.errors import CheckFailed, ConfigError, DigestError, StoreError
from digest.settings import ScheduleSettings, Settings
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = [
    "BOUNCES_JOB_ID",
    "JOBS_TABLE",
    "JOB_ID",
    "RETRY_JOB_PREFIX",
    "Scheduler",
    "poll_bounces",
    "retry_send",
    "scheduled_send",
    "trigger",
]

JOB_ID = "daily-send"
# A retry of one day's send is a one-off job of its own, named after the day.
RETRY_JOB_PREFIX = "retry-"
# Reading bounces.source every bounces.poll_minutes (kept in memory, not in the database).
BOUNCES_JOB_ID = "read-bounces"
# APScheduler creates and owns this table, beside digest's own.
JOBS_TABLE = "apscheduler_jobs"


def trigger(schedule: ScheduleSettings) -> LocalCronTrigger:
    """The configured crontab, read in the configured time zone (once per local time)."""
    return cron_trigger(schedule.cron, schedule.zone)


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
    # One send at a time in this process: a catch-up, the day's run and a retry take turns.
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # When the run under way was due: its date is the issue's, even if it starts late.
    due: dt.datetime | None = None
    # Where retries are added, once the scheduler has started.
    scheduler: AsyncIOScheduler | None = None
    # Called with each send's report or error (tests listen here).
    on_run: Callable[[sending.SendReport | DigestError], None] | None = None


_running: _Running | None = None


async def scheduled_send() -> None:
    """The job: the recent days' unfinished sends, then today's issue to every active subscriber.

    Today's send is made as ``digest send`` makes it. It runs with the settings
    ``digest schedule`` started with; the job stored in the database holds only a
    reference to this function.
    """
    running = _running
    if running is None:
        log.error("scheduled send: no scheduler is running in this process")
        return
    # Read before waiting for a send under way: the next run's submission sets it again.
    due, running.due = running.due, None
    # A run made late (within the grace) sends the issue of the day it was due, even if
    # midnight has passed since.
    day = pipeline.today(running.settings, due)
    async with _sending(running):
        days = dt.timedelta(days=running.settings.schedule.catch_up_days)
        await _catch_up(running, first=day - days, last=day - dt.timedelta(days=1))
        if not running.stop.is_set():
            await _send(running, day)


async def retry_send(day: str, attempt: int, fresh: bool = False) -> None:
    """A retry job: the send of the issue of ``day`` (ISO date) that stopped, finished now.

    Only the copies already pending are sent; ``attempt`` counts the retries so far. With
    ``fresh`` (the check before the send failed, so nothing was queued) the whole send is
    made, checked again first. A
    retry that comes due after digest was down runs only if ``day`` is still one of the
    last ``schedule.catch_up_days`` days; an older issue is left alone, as a catch-up
    would leave it.
    """
    running = _running
    if running is None:
        log.error("retry of the send of %s: no scheduler is running in this process", day)
        return
    days = running.settings.schedule.catch_up_days
    if dt.date.fromisoformat(day) < pipeline.today(running.settings) - dt.timedelta(days=days):
        log.warning(
            "retry %d of the send of %s skipped: that day is past schedule.catch_up_days "
            "(%d); `digest send --date %s` sends what is left",
            attempt,
            day,
            days,
            day,
        )
        return
    async with _sending(running):
        if running.stop.is_set():
            return
        log.info(
            "retry %d of %d of the send of %s",
            attempt,
            running.settings.schedule.retry_limit,
            day,
        )
        await _send(running, dt.date.fromisoformat(day), resume=not fresh, attempt=attempt)


async def poll_bounces() -> None:
    """The bounce job: the unread messages of ``bounces.source`` read and applied."""
    running = _running
    if running is None:
        return
    source = running.settings.bounces.source
    assert source is not None
    try:
        report = await asyncio.to_thread(_read_bounces, running.settings, running.store, source)
    except DigestError as exc:
        # The mailbox or the database: logged, and read again at the next poll.
        log.error("reading bounces from %s failed: %s", shown_source(source), exc)
        return
    if report.messages:
        log.info(
            "read %d messages from %s: %s",
            report.messages,
            shown_source(source),
            ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items()))
            or "no events",
        )


def _read_bounces(settings: Settings, store: Store, source: str) -> ProcessReport:
    with configured_source(settings, source) as mailbox:
        return process_mailbox(settings, store, mailbox)


async def _catch_up_at_start(running: _Running) -> None:
    """At start: finish the sends of today and the recent days that were left unfinished."""
    today = pipeline.today(running.settings)
    days = running.settings.schedule.catch_up_days
    async with _sending(running):
        if not await _catch_up(running, first=today - dt.timedelta(days=days), last=today):
            log.info("no send of the last %d days is left unfinished", days)


@asynccontextmanager
async def _sending(running: _Running) -> AsyncIterator[None]:
    """Held around a send: a stop waits for it, and other sends here wait their turn."""
    task = asyncio.current_task()
    if task is not None:
        running.sends.add(task)
    try:
        async with running.turn:
            yield
    finally:
        if task is not None:
            running.sends.discard(task)


async def _catch_up(running: _Running, *, first: dt.date, last: dt.date) -> int:
    """Finish the sends of issues dated ``first`` to ``last`` with copies pending; how many."""
    if first > last:
        return 0
    try:
        unfinished = await asyncio.to_thread(
            running.store.deliveries.unfinished_issues, first=first, last=last
        )
    except StoreError as exc:
        log.error("cannot look for sends left unfinished: %s", exc)
        return 0
    for day, pending in unfinished:
        if running.stop.is_set():
            break
        if pending is None:
            # Stopped before its copies were queued: queue them now, as that day's send would.
            log.info("resuming the send of %s: no copy was queued", day.isoformat())
            await _send(running, day)
            continue
        log.info("resuming the send of %s: %d copies pending", day.isoformat(), pending)
        await _send(running, day, resume=True)
    return len(unfinished)


async def _send(
    running: _Running, day: dt.date, *, resume: bool = False, attempt: int = 0
) -> sending.SendReport | DigestError:
    """One send of the issue for ``day``, logged; a send that stopped is retried later.

    With ``resume`` only the copies already pending go out (see :func:`sending.send_issue`).
    Otherwise a send through a relay is checked first (``schedule.check_before_send``).
    """
    refused = None if resume else await _check_before_send(running, day)
    outcome = refused or await _send_logged(running, day, resume=resume)
    if isinstance(outcome, sending.SendHalted) and not outcome.retry:
        log.error(
            "the send of %s is left stopped for a person to look at: %s", day.isoformat(), outcome
        )
    elif isinstance(outcome, sending.SendHalted | sending.SendStopped | CheckFailed):
        _retry_later(running, day, attempt, fresh=refused is not None)
    if running.on_run is not None:
        running.on_run(outcome)
    return outcome


async def _check_before_send(running: _Running, day: dt.date) -> CheckFailed | None:
    """The checks of ``digest check`` before a send through a relay: a FAIL stops it.

    Each failing line is logged. A send to the local outbox is not checked: nothing
    leaves the machine, and the trial set-up would fail the settings checks.
    """
    settings = running.settings
    if not settings.schedule.check_before_send or not settings.smtp.relays:
        return None
    found = await checks.run_checks(settings, day, store=running.store)
    failing = [check for check in found if check.status == "FAIL"]
    for check in failing:
        log.error("check before the send of %s: %s", day.isoformat(), check.line())
    for check in found:
        if check.status == "warn":
            log.warning("check before the send of %s: %s", day.isoformat(), check.line())
    if not failing:
        return None
    names = ", ".join(check.name for check in failing)
    log.error(
        "the send of %s did not start: the check found %d FAIL (%s); `digest check` shows "
        "them, schedule.check_before_send = false turns the check off",
        day.isoformat(),
        len(failing),
        names,
    )
    return CheckFailed(f"the check before the send of {day.isoformat()} failed: {names}")


async def _send_logged(
    running: _Running, day: dt.date, *, resume: bool
) -> sending.SendReport | DigestError:
    settings = running.settings
    try:
        if transports.uses_preview_key(settings):
            log.warning("DIGEST_SECRET_KEY is not set; the outbox copies carry preview-key links")
        report = await sending.send_day(
            settings, running.store, day, stop=running.stop, worker=running.worker, resume=resume
        )
    except sending.SendInterrupted as exc:
        log.warning("scheduled send for %s stopped early: %s", day.isoformat(), exc)
        return exc
    except DigestError as exc:
        # Any failure of the day's send, whatever its kind (settings, seeds, templates,
        # the database, the relay), is the run's outcome: logged, and the scheduler goes
        # on. The log is its only output: one line, no traceback.
        log.error("scheduled send for %s failed: %s", day.isoformat(), exc)
        return exc
    if report.nothing_new:
        log.info("scheduled send for %s: nothing new to send", day.isoformat())
    else:
        log.info(
            "scheduled send for %s to %s: %d sent, %d failed, %d to retry, %d sent before",
            day.isoformat(),
            transports.destination(settings),
            report.sent,
            report.failed,
            report.still_pending,
            report.already_sent,
        )
    if report.still_pending:
        log.warning(
            "%d copies of %s are still pending after transient failures: %s",
            report.still_pending,
            day.isoformat(),
            _left_for(settings, day),
        )
    for failure in report.failures:
        log.warning("skipped %s: %s", failure.source, failure.reason)
    return report


def _retry_later(running: _Running, day: dt.date, attempt: int, *, fresh: bool = False) -> None:
    """After a send stopped (``attempt`` retries made): a one-off retry job, the same day.

    ``fresh``: nothing was queued (the check failed), so the retry makes the whole send.
    """
    schedule = running.settings.schedule
    if attempt >= schedule.retry_limit:
        log.error(
            "the send of %s stopped after %d retries (schedule.retry_limit): %s",
            day.isoformat(),
            attempt,
            _left_for(running.settings, day),
        )
        return
    now = utc_now()
    at = now + dt.timedelta(minutes=schedule.retry_minutes)
    if at.astimezone(schedule.zone).date() != now.astimezone(schedule.zone).date():
        log.warning(
            "the send of %s stopped, too late in the day for a retry: %s",
            day.isoformat(),
            _left_for(running.settings, day),
        )
        return
    if running.scheduler is None or running.stop.is_set():
        return
    try:
        running.scheduler.add_job(
            retry_send,
            trigger=DateTrigger(run_date=at),
            args=[day.isoformat(), attempt + 1, fresh],
            id=f"{RETRY_JOB_PREFIX}{day.isoformat()}",
            name=f"retry of the send of {day.isoformat()}",
            replace_existing=True,
            # Made whenever digest runs again, if still within schedule.catch_up_days
            # (see retry_send): the copies are still pending.
            misfire_grace_time=None,
            coalesce=True,
        )
    except SQLAlchemyError as exc:
        # The job is kept in the database, which may be what stopped the send: the
        # scheduler goes on (a catch-up its other days), and a later run finishes this one.
        log.error(
            "the send of %s stopped, and its retry could not be scheduled (%s): %s",
            day.isoformat(),
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0],
            _left_for(running.settings, day),
        )
        return
    log.warning(
        "the send of %s stopped; retry %d of %d at %s",
        day.isoformat(),
        attempt + 1,
        schedule.retry_limit,
        _shown(at.astimezone(schedule.zone)),
    )


def _left_for(settings: Settings, day: dt.date) -> str:
    """Who finishes the copies of ``day`` left pending, for a log line."""
    by_hand = f"`digest send --date {day.isoformat()}` sends them"
    days = settings.schedule.catch_up_days
    if days == 0:
        return by_hand
    return f"a run within {days} days (schedule.catch_up_days) finishes them, or {by_hand}"


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
        global _running
        _running = running = _Running(
            settings=self.settings, store=self.store, worker=self.worker, on_run=self.on_run
        )
        try:
            scheduler = running.scheduler = self._start(others)
        except BaseException:
            _running = None
            raise
        if not stop.is_set():
            # Counted as a send from now on, so a stop waits for it even before it starts.
            running.sends.add(asyncio.ensure_future(_catch_up_at_start(running)))
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
        if _running is not None and event.job_id == JOB_ID and event.scheduled_run_times:
            _running.due = event.scheduled_run_times[-1]

    def _missed(self, event: JobExecutionEvent) -> None:
        if event.job_id != JOB_ID:
            return
        grace = dt.timedelta(seconds=self.settings.schedule.misfire_grace_seconds)
        log.warning(
            "the send due at %s was skipped: digest was not running then, and came back "
            "more than %s later (schedule.misfire_grace_seconds); next send at %s",
            _shown(event.scheduled_run_time),
            grace,
            _shown(self.next_run_time()),
        )


def _same_schedule(stored: Any, wanted: LocalCronTrigger) -> bool:
    """True when the stored trigger fires at the wanted times (its class aside)."""
    return str(stored) == str(wanted) and repr(getattr(stored, "timezone", None)) == repr(
        wanted.timezone
    )


def _shown(when: dt.datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M %Z") if when is not None else "never"


def _described(stored: Any) -> str:
    """A stored trigger as APScheduler writes it, with its zone."""
    return f"{stored} in {getattr(stored, 'timezone', 'UTC')}"
