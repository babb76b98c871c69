"""The scheduled jobs: the daily send (and the recent days' unfinished ones first), its
retries, the check before each send through a relay, and reading the bounce mailbox.

Each job runs with the settings and store of the :class:`~digest.schedule.Scheduler`
running in this process (one per process), which it finds with :func:`current`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy.exc import SQLAlchemyError

from digest import alerts, checks, pipeline, sending
from digest.bounces.mailbox import configured_source, shown_source
from digest.bounces.process import ProcessReport, process_mailbox
from digest.clock import utc_now
from digest.delivery import transport as transports
from digest.errors import CheckFailed, DigestError, StoreError
from digest.readers.signup import remove_unconfirmed
from digest.settings import Settings
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = [
    "BOUNCES_JOB_ID",
    "JOBS_TABLE",
    "JOB_ID",
    "RETRY_JOB_PREFIX",
    "SIGNUPS_JOB_ID",
    "Running",
    "attach",
    "catch_up_at_start",
    "current",
    "detach",
    "poll_bounces",
    "remove_unconfirmed_signups",
    "retry_send",
    "scheduled_send",
    "shown_time",
]

JOB_ID = "daily-send"
# A retry of one day's send is a one-off job of its own, named after the day.
RETRY_JOB_PREFIX = "retry-"
# Reading bounces.source every bounces.poll_minutes (kept in memory, not in the database).
BOUNCES_JOB_ID = "read-bounces"
# Removing signups never confirmed, every hour (in memory too).
SIGNUPS_JOB_ID = "remove-unconfirmed-signups"
# APScheduler creates and owns this table, beside digest's own.
JOBS_TABLE = "apscheduler_jobs"


@dataclass
class Running:
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


_running: Running | None = None


def attach(running: Running) -> None:
    """Make ``running`` what the jobs of this process run with."""
    global _running
    _running = running


def detach() -> None:
    """No scheduler runs in this process any more."""
    global _running
    _running = None


def current() -> Running | None:
    """What the jobs of this process run with, if a scheduler runs."""
    return _running


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
    if running.stop.is_set():
        return
    try:
        async with _waited_for(running):
            report = await asyncio.to_thread(_read_bounces, running.settings, running.store, source)
    except DigestError as exc:
        # The mailbox or the database: logged, and read again at the next poll.
        log.error("reading bounces from %s failed: %s", shown_source(source), exc)
        return
    await _alert(alerts.after_bounces(running.settings, running.store))
    # Messages left unread on purpose (none of ours) are read again each time: only what
    # is new is worth a line.
    if report.messages > report.already_read:
        log.info(
            "read %d messages from %s: %s",
            report.messages - report.already_read,
            shown_source(source),
            ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items()))
            or "no events",
        )


async def remove_unconfirmed_signups() -> None:
    """The signup job: addresses never confirmed within ``signup.pending_days`` removed."""
    running = _running
    if running is None or running.stop.is_set():
        return
    async with _waited_for(running):
        try:
            await asyncio.to_thread(
                remove_unconfirmed, running.settings, running.store, now=utc_now()
            )
        except StoreError as exc:
            log.error("removing unconfirmed signups failed: %s", exc)


@asynccontextmanager
async def _waited_for(running: Running) -> AsyncIterator[None]:
    """Held around a job's work in a thread: a stop waits for it before the database closes."""
    task = asyncio.current_task()
    if task is not None:
        running.sends.add(task)
    try:
        yield
    finally:
        if task is not None:
            running.sends.discard(task)


def _read_bounces(settings: Settings, store: Store, source: str) -> ProcessReport:
    with configured_source(settings, source) as mailbox:
        return process_mailbox(settings, store, mailbox)


async def catch_up_at_start(running: Running) -> None:
    """At start: finish the sends of today and the recent days that were left unfinished."""
    today = pipeline.today(running.settings)
    days = running.settings.schedule.catch_up_days
    async with _sending(running):
        if not await _catch_up(running, first=today - dt.timedelta(days=days), last=today):
            log.info("no send of the last %d days is left unfinished", days)


@asynccontextmanager
async def _sending(running: Running) -> AsyncIterator[None]:
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


async def _catch_up(running: Running, *, first: dt.date, last: dt.date) -> int:
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
    running: Running, day: dt.date, *, resume: bool = False, attempt: int = 0
) -> sending.SendReport | DigestError:
    """One send of the issue for ``day``, logged; a send that stopped is retried later.

    With ``resume`` only the copies already pending go out (see :func:`sending.send_issue`).
    Otherwise a send through a relay is checked first (``schedule.check_before_send``).
    """
    skipped = await _skipped(running, day)
    if skipped is not None:
        if running.on_run is not None:
            running.on_run(skipped)
        return skipped
    refused = None if resume else await _check_before_send(running, day)
    outcome = refused or await _send_logged(running, day, resume=resume)
    if isinstance(outcome, sending.SendHalted) and not outcome.retry:
        log.error(
            "the send of %s is left stopped for a person to look at: %s", day.isoformat(), outcome
        )
    elif isinstance(outcome, sending.SendHalted | sending.SendStopped | CheckFailed):
        _retry_later(running, day, attempt, fresh=refused is not None)
    await _alert(alerts.after_send(running.settings, running.store, day, outcome))
    if running.on_run is not None:
        running.on_run(outcome)
    return outcome


async def _skipped(running: Running, day: dt.date) -> sending.SendReport | None:
    """A report saying so when the operator skipped the send of ``day`` at /admin."""
    try:
        when = await asyncio.to_thread(running.store.operator.skipped_at, day)
    except StoreError as exc:
        # The send itself will meet the same database and say what is wrong.
        log.error("cannot read whether the send of %s was skipped: %s", day.isoformat(), exc)
        return None
    if when is None:
        return None
    log.warning(
        "the send of %s was skipped at /admin (at %s): nothing sent; resume it there, or "
        "`digest send --date %s` sends it by hand",
        day.isoformat(),
        shown_time(when.astimezone(running.settings.schedule.zone)),
        day.isoformat(),
    )
    return sending.SendReport(date=day, skipped=True)


async def _check_before_send(running: Running, day: dt.date) -> CheckFailed | None:
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
    running: Running, day: dt.date, *, resume: bool
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


async def _alert(telling: Awaitable[list[alerts.Alert]]) -> None:
    """Tell the operator; an alert that cannot be made is logged, never stops a job."""
    try:
        await telling
    except Exception:
        log.exception("an alert could not be made")


def _retry_later(running: Running, day: dt.date, attempt: int, *, fresh: bool = False) -> None:
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
        shown_time(at.astimezone(schedule.zone)),
    )


def _left_for(settings: Settings, day: dt.date) -> str:
    """Who finishes the copies of ``day`` left pending, for a log line."""
    by_hand = f"`digest send --date {day.isoformat()}` sends them"
    days = settings.schedule.catch_up_days
    if days == 0:
        return by_hand
    return f"a run within {days} days (schedule.catch_up_days) finishes them, or {by_hand}"


def shown_time(when: dt.datetime | None) -> str:
    """A run time for a log line, in its own zone: ``2026-12-07 07:00 CET``."""
    return when.strftime("%Y-%m-%d %H:%M %Z") if when is not None else "never"
