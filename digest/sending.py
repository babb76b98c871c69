"""A send from start to end: the transport, the issue frozen, its deliveries queued, the
send loop run and its report; and the two runs that send nothing for real, the dry run
and test copies.

Set-up and accounting read files and the database for seconds on a big list: they run in
worker threads, so the event loop goes on serving the web side meanwhile
(``digest schedule --serve``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial

from digest.audience.listid import list_id_for_send
from digest.audience.verp import ReturnPath
from digest.clock import utc_now
from digest.delivery.ledger import Ledger
from digest.delivery.mailer import Transport
from digest.delivery.retries import with_retries
from digest.delivery.sender import SendLoop
from digest.delivery.totals import SendTotals
from digest.delivery.transport import transport_for
from digest.email.message import MessageTemplate
from digest.errors import DeliveryFailed, DigestError, StoreError
from digest.models import Issue, LoadFailure, Subscriber, SubscriberStatus
from digest.options import dkim_key, list_naming, message_options
from digest.pipeline import (
    IssueBuild,
    build_issue,
    frozen_rendering,
    rendering,
    unsent_template,
)
from digest.settings import Settings
from digest.store import Store
from digest.store.deliveries import DeliveryCounts, ErrorCount
from digest.store.tables import OUTBOX

log = logging.getLogger(__name__)

__all__ = [
    "SendHalted",
    "SendInterrupted",
    "SendReport",
    "SendStopped",
    "plan_send",
    "send_day",
    "send_issue",
    "send_test_copies",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class SendReport:
    """What one send did."""

    date: dt.date
    sent: int = 0
    failed: int = 0
    # Copies of the issue still pending after this run (transient failures, or left by a
    # stop), whichever run queued them: the next run sends them.
    still_pending: int = 0
    # Deliveries recorded by an earlier run, left alone by this one.
    already_sent: int = 0
    # With --dry-run: the copies a send would make now.
    would_send: int = 0
    nothing_new: bool = False
    # A scheduled run of a day the operator skipped at /admin: nothing was done.
    skipped: bool = False
    failures: tuple[LoadFailure, ...] = ()
    # Why the copies left failed or wait, most first: the reasons the ledger kept.
    errors: tuple[ErrorCount, ...] = ()


async def send_issue(
    settings: Settings,
    store: Store,
    date: dt.date,
    transport: Transport,
    *,
    secret_key: str,
    now: dt.datetime | None = None,
    concurrency: int = 8,
    stop: asyncio.Event | None = None,
    on_delivery: Callable[[], None] | None = None,
    worker: bool = False,
    resume: bool = False,
) -> SendReport:
    """Send the issue for ``date`` to every active subscriber not yet sent it.

    The issue and its rendering are frozen at the first send; every delivery is recorded
    as it completes, so a second run, or one after a crash, sends only what is left.
    Once ``stop`` is set no new copy starts; those under way finish and are recorded,
    and :class:`SendInterrupted` says what was done. ``on_delivery`` is called after
    each delivery attempted and recorded (for a progress display).

    A plain send is the only one of its issue: a second is refused. With ``worker``, on
    PostgreSQL, any number of processes send the issue together, each claiming batches
    of deliveries; on SQLite a worker is still the only sender.

    With ``resume`` only a send already started is finished: the copies still pending
    go out, nobody is added (a subscriber since then does not get an old issue), and no
    issue is made for a date that has none.
    """
    started = now or utc_now()
    # Loading the seeds, picking and freezing read files and the database for seconds:
    # off the loop, which may be serving the web side at the same time.
    opened = await asyncio.to_thread(_open_send, settings, store, date, started, resume)
    if isinstance(opened, SendReport):
        return opened
    built, issue_id = opened
    shared = worker and store.engine.dialect.name == "postgresql"
    async with _entered_off_loop(store.send_lock(issue_id, shared=shared)):
        return await _send_frozen(
            settings,
            store,
            built,
            issue_id,
            transport,
            secret_key=secret_key,
            started=started,
            concurrency=concurrency,
            stop=stop,
            on_delivery=on_delivery,
            # Alone with the issue, a send may take over claims left by dead processes
            # at once; workers sharing it wait for the leases to run out.
            take_over=not shared,
            enqueue=not resume,
        )


def _open_send(
    settings: Settings, store: Store, date: dt.date, started: dt.datetime, resume: bool
) -> tuple[IssueBuild, int] | SendReport:
    """The issue to send and its id, marked as sending; or the report of why there is none."""
    if resume and store.issues.id_of(date) is None:
        return SendReport(date=date, nothing_new=True)
    built = build_issue(settings, store, date, now=started, for_send=not resume)
    if built.issue.is_empty:
        return SendReport(date=date, nothing_new=True, failures=built.failures)
    if not resume and not built.created:
        # Before anything else of the send is written: killed at any later step, the send
        # is found unfinished and made again. (A new issue was saved so marked.)
        store.issues.mark_send_started(date, at=started)
    issue_id = store.issues.id_of(date)
    assert issue_id is not None
    return built, issue_id


@asynccontextmanager
async def _entered_off_loop(context: AbstractContextManager[None]) -> AsyncIterator[None]:
    """``context`` entered and left in a worker thread (a lock that talks to the database)."""
    await asyncio.to_thread(context.__enter__)
    try:
        yield
    except BaseException as exc:
        if not await asyncio.to_thread(context.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(context.__exit__, None, None, None)


async def _send_frozen(
    settings: Settings,
    store: Store,
    built: IssueBuild,
    issue_id: int,
    transport: Transport,
    *,
    secret_key: str,
    started: dt.datetime,
    concurrency: int,
    stop: asyncio.Event | None,
    on_delivery: Callable[[], None] | None,
    take_over: bool,
    enqueue: bool,
) -> SendReport:
    date = built.issue.date
    ledger = Ledger(store, issue_id, via=transport.name)
    # Rendering, freezing and enqueueing take seconds on a big list: off the loop, which
    # may be serving the web side at the same time (digest schedule --serve).
    template, before = await asyncio.to_thread(
        _prepare_send,
        settings,
        store,
        built.issue,
        ledger,
        secret_key=secret_key,
        started=started,
        enqueue=enqueue,
    )
    totals = await SendLoop(
        ledger=ledger,
        template=template,
        transport=transport,
        sender=settings.from_address,
        smtp=settings.smtp,
        return_path=(
            ReturnPath(bounce_address=settings.bounce_address, secret_key=secret_key)
            if settings.bounce_address
            else None
        ),
        max_refused_rate=settings.bounces.max_rate,
        concurrency=concurrency,
        lease=dt.timedelta(seconds=settings.claim_lease_seconds),
        take_over=take_over,
        stop=stop,
        on_delivery=on_delivery,
    ).run()
    # In a thread, as the set-up: counting a big issue's deliveries takes a while.
    still_pending, errors = await asyncio.to_thread(_what_is_left, ledger, before, totals)
    report = SendReport(
        date=date,
        sent=totals.sent,
        failed=totals.failed,
        still_pending=still_pending,
        already_sent=before.sent,
        failures=built.failures,
        errors=errors,
    )
    if totals.halted is not None:
        if totals.halted_by_refusals:
            # Until `digest send` is run again by a person, no catch-up resumes it.
            await asyncio.to_thread(store.issues.hold, date, totals.halted, at=utc_now())
        raise SendHalted(report, totals.halted, retry=not totals.halted_by_refusals)
    if totals.tripped:
        raise SendStopped(report, settings.smtp.failure_threshold)
    if totals.interrupted:
        raise SendInterrupted(report)
    return report


def _prepare_send(
    settings: Settings,
    store: Store,
    issue: Issue,
    ledger: Ledger,
    *,
    secret_key: str,
    started: dt.datetime,
    enqueue: bool,
) -> tuple[MessageTemplate, DeliveryCounts]:
    """The issue's message template, its deliveries queued; and the counts before the run."""
    rendered = frozen_rendering(settings, store, issue)
    if ledger.via != OUTBOX:
        # Copies that only reached the outbox (trying digest out) are owed for real.
        requeued = ledger.requeue_outbox_copies()
        if requeued:
            # Once, when going live: worth the operator's eye, whatever the log level.
            log.warning(
                "%d copies of this issue went only to the local outbox: sent for real now",
                requeued,
            )
    if enqueue:
        ledger.enqueue(now=started)
    else:
        # Nobody is added, but a subscriber added again since gets back the copy their
        # address still has pending.
        ledger.reattach()
    before = ledger.counts()
    # Kept at the first send.
    ident = list_id_for_send(list_naming(settings), store.list_ids, now=started)
    template = MessageTemplate.build(
        rendered,
        message_options(settings, list_id=ident),
        secret_key=secret_key,
        now=started,
        dkim=dkim_key(settings),
    )
    return template, before


def _what_is_left(
    ledger: Ledger, before: DeliveryCounts, totals: SendTotals
) -> tuple[int, tuple[ErrorCount, ...]]:
    """The copies left pending after a run, and why copies failed or wait, by reason.

    When the run was halted, the database may be what halted it: then what it had pending
    less what this run finished stands in, without reasons, so the reason for the halt is
    what is reported.
    """
    try:
        return ledger.counts().pending, tuple(ledger.errors())
    except StoreError as exc:
        if totals.halted is None:
            raise
        log.warning("could not count the copies left pending: %s", exc)
        left = before.pending + before.claimed - totals.sent - totals.failed
        return max(0, left), ()


class SendHalted(DigestError):
    """Something that would fail every copy stopped the send; what was sent is recorded.

    ``retry``: whether trying again later by itself makes sense (a relay down), or a
    person should look first (too many copies refused for good).
    """

    def __init__(self, report: SendReport, reason: str, *, retry: bool = True) -> None:
        super().__init__(
            f"stopped: {reason}; {report.sent} sent, {report.failed} failed, "
            f"{report.still_pending} left for the next run"
        )
        self.report = report
        self.retry = retry


class SendInterrupted(DigestError):
    """The send was asked to stop; what was under way finished and is recorded."""

    def __init__(self, report: SendReport, message: str | None = None) -> None:
        super().__init__(
            message
            or f"interrupted: {report.sent} sent, {report.failed} failed, "
            f"{report.still_pending} left for the next run"
        )
        self.report = report


class SendStopped(DigestError):
    """Too many transient failures in a row: the relay looks down, so the send stopped."""

    def __init__(self, report: SendReport, threshold: int) -> None:
        # The commonest reason, so the one line says why as well as what.
        why = f" ({report.errors[0].error})" if report.errors else " (is the relay down?)"
        super().__init__(
            f"stopped after {threshold} failures in a row{why}: "
            f"{report.sent} sent, {report.failed} failed, "
            f"{report.still_pending} left for the next run"
        )
        self.report = report


async def send_test_copies(
    settings: Settings,
    store: Store,
    date: dt.date,
    transport: Transport,
    addresses: Sequence[str],
    *,
    secret_key: str,
    now: dt.datetime | None = None,
    stop: asyncio.Event | None = None,
) -> SendReport:
    """Send "[TEST]" copies of the issue to ``addresses``; no ledger, nothing frozen.

    Once ``stop`` is set no further copy starts, and :class:`SendInterrupted` says so.
    """
    started = now or utc_now()
    # Off the loop: the pick reads the seeds and the database (the web side may share it).
    built, template = await asyncio.to_thread(
        _test_template, settings, store, date, secret_key=secret_key, now=started
    )
    if template is None:
        return SendReport(date=date, nothing_new=True, failures=built.failures)
    sent = failed = 0
    for done, address in enumerate(addresses):
        if stop is not None and stop.is_set():
            raise SendInterrupted(
                SendReport(date=date, sent=sent, failed=failed, failures=built.failures),
                f"interrupted: of {len(addresses)} test copies, {sent} sent, {failed} failed, "
                f"{len(addresses) - done} not sent",
            )
        copy = template.render(Subscriber(id=0, email=address))
        try:
            attempt = partial(transport.send, copy, sender=settings.from_address, recipient=address)
            await with_retries(settings.smtp, attempt)
        except DeliveryFailed as exc:
            log.warning("test copy not sent: %s", exc)
            failed += 1
        else:
            sent += 1
    return SendReport(date=date, sent=sent, failed=failed, failures=built.failures)


def _test_template(
    settings: Settings, store: Store, date: dt.date, *, secret_key: str, now: dt.datetime
) -> tuple[IssueBuild, MessageTemplate | None]:
    """The issue of ``date`` picked and rendered as a test copy (None: nothing new)."""
    built = build_issue(settings, store, date, freeze=False)
    if built.issue.is_empty:
        return built, None
    rendered = rendering(settings, store, built.issue)
    return built, unsent_template(
        settings, store, rendered, secret_key=secret_key, now=now, test=True
    )


async def send_day(
    settings: Settings,
    store: Store,
    date: dt.date,
    *,
    stop: asyncio.Event | None = None,
    on_delivery: Callable[[], None] | None = None,
    worker: bool = False,
    resume: bool = False,
) -> SendReport:
    """``send_issue`` through the configured transport, as ``digest send`` and schedules run it."""
    transport, secret_key = transport_for(settings)
    try:
        return await send_issue(
            settings,
            store,
            date,
            transport,
            secret_key=secret_key,
            # Each relay has its own connections: a worker for every one of them.
            concurrency=settings.smtp.concurrency * max(1, len(settings.smtp.relays)),
            stop=stop,
            on_delivery=on_delivery,
            worker=worker,
            resume=resume,
        )
    finally:
        await transport.close()


def plan_send(settings: Settings, store: Store, date: dt.date) -> SendReport:
    """What ``send_issue`` would do, without sending or storing anything (``--dry-run``).

    Every copy is built, as a send would, so a bad address, template or DKIM key shows
    up here.
    """
    dkim_key(settings)  # loaded and checked; the copies themselves need no signature
    built = build_issue(settings, store, date, freeze=False)
    if built.issue.is_empty:
        return SendReport(date=date, nothing_new=True, failures=built.failures)
    rendered = rendering(settings, store, built.issue)
    template = unsent_template(settings, store, rendered, now=utc_now())
    issue_id = store.issues.id_of(date)
    counts = Ledger(store, issue_id).counts() if issue_id is not None else None
    done = store.deliveries.finished_subscriber_ids(issue_id) if issue_id is not None else set()
    would_send = 0
    for subscriber in store.subscribers.iterate(status=SubscriberStatus.ACTIVE):
        paused = subscriber.paused_until is not None and subscriber.paused_until > date
        if subscriber.id not in done and not paused:
            template.render(subscriber)
            would_send += 1
    return SendReport(
        date=date,
        would_send=would_send,
        already_sent=counts.sent if counts else 0,
        failures=built.failures,
    )
