"""The send loop: a fixed pool of workers, one per relay connection, fed from the ledger.

Each worker sends one copy at a time and waits until that delivery is recorded before it
takes the next, so a crash leaves at most one copy per connection handed over but not
recorded. Results are written in groups: whatever finished while one group was being
written goes into the next transaction, so the database sees a transaction per group, not
per copy, and no connection waits for the others' slow copies
(:mod:`digest.delivery.recorder`).

A copy that fails for now (a 4xx: greylisting, a throttling relay) does not hold its
connection while it waits: it goes into a delay queue with the time it may go again
(:mod:`digest.delivery.retries`), and the worker takes the next copy at once. When the
time comes it goes back to the workers, on whichever connection is free, until
``smtp.retry_attempts`` attempts were made; then it stays pending for the next run. A
copy waiting there was refused, not handed over, so the promise above holds.

Before each copy a worker makes sure its claim on it is still its own: a process that
stalled past its lease leaves what it held to the worker that took it over, and a result
it brings back late is not recorded over that worker's. The database confirms each claim
when it is made and at each renewal; while that confirmation leaves at least a quarter of
the lease, the copy goes without asking again. Otherwise the worker extends the claim in
one statement that holds only while the delivery is still its own (``Ledger.extend_claim``):
between that check and the send nobody else can take it, and a claim that ran out while
nobody took it over is kept, not skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from digest.audience.verp import ReturnPath
from digest.delivery.ledger import DeliveryResult, Ledger, PendingDelivery
from digest.delivery.mailer import Transport
from digest.delivery.recorder import Recorder
from digest.delivery.retries import DelayQueue, retry_delay
from digest.delivery.totals import SendTotals
from digest.email.message import MessageTemplate
from digest.errors import (
    DeliveryFailed,
    MailboxUnknown,
    MessageError,
    PermanentFailure,
    RelayRefused,
    RelayUnavailable,
    StoreError,
)
from digest.settings import SmtpSettings

log = logging.getLogger(__name__)

__all__ = ["SendLoop"]

# The share of the lease a claim must still have, by this worker's own reckoning, to be
# sent on without extending it in the database first: a copy under way is then still
# covered by the claim when renewals are late.
_SAFE_SHARE_OF_LEASE = 0.25
# Copies claimed ahead per connection: a claim costs a statement, whatever its size, so a
# bigger batch costs less per copy (about half at 128 a batch than at 32, on SQLite); a
# batch waits in the queue well under a second against a fast relay, and its claims are
# renewed like the rest against a slow one.
_QUEUED_PER_CONNECTION = 16


class _Delayed(enum.Enum):
    """What _attempt gives for a copy put in the delay queue."""

    DELAYED = "delayed"


_DELAYED = _Delayed.DELAYED
# How often the delay queue looks whether the run must stop, while nothing is due.
_STOP_POLL = 0.25


@dataclass(slots=True)
class _Copy:
    """One delivery on its way: the attempts made so far, and the last one's failure."""

    delivery: PendingDelivery
    # The same Message-ID on every attempt: a relay that took an attempt it answered
    # with 4xx passes on at most a duplicate that readers' clients fold into one.
    message_id: str | None = None
    attempts: int = 0
    failure: DeliveryFailed | None = None


class SendLoop:
    """Sends an issue's pending deliveries through ``transport`` and records each result."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        template: MessageTemplate,
        transport: Transport,
        sender: str,
        smtp: SmtpSettings,
        return_path: ReturnPath | None = None,
        max_refused_rate: float | None = None,
        concurrency: int,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        take_over: bool = True,
        stop: asyncio.Event | None = None,
        on_delivery: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.template = template
        self.transport = transport
        self.sender = sender
        # With a bounce address, each copy's envelope sender names its delivery (VERP).
        self.return_path = return_path
        # Above this share of copies refused for good, the run stops (bounces.max_rate).
        self.max_refused_rate = max_refused_rate
        self.smtp = smtp
        self.concurrency = concurrency
        self.lease = lease
        self.take_over = take_over
        self._unsent: list[int] = []
        # For each delivery claimed, until when (monotonic) the claim is surely live: the
        # database set its lease after the moment the claim or renewal was sent.
        self._live_until: dict[int, float] = {}
        # Transient failures from this moment on (the database's time when the run
        # starts) wait for a later run (see Ledger.claim).
        self._since: dt.datetime | None = None
        self.stop = stop
        self.on_delivery = on_delivery
        self.totals = SendTotals()
        # Copies that failed for now, until they may go again.
        self._delayed: DelayQueue[_Copy] = DelayQueue()
        # Copies queued, being sent or delayed: the workers end only once it is zero.
        self._outstanding = 0
        self._settled = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """True once no new copy may start."""
        totals = self.totals
        return (
            totals.halted is not None
            or totals.tripped
            or (self.stop is not None and self.stop.is_set())
        )

    async def run(self) -> SendTotals:
        """Send until nothing is pending or the run must stop; returns the totals."""
        queue: asyncio.Queue[_Copy | None] = asyncio.Queue(
            maxsize=self.concurrency * _QUEUED_PER_CONNECTION
        )
        recorder = Recorder(self.ledger)
        recording = asyncio.create_task(recorder.run())
        renewing = asyncio.create_task(self._renew_claims())
        releasing = asyncio.create_task(self._release_delayed(queue))
        workers = [
            asyncio.create_task(self._worker(queue, recorder)) for _ in range(self.concurrency)
        ]
        try:
            try:
                await self._feed(queue)
            except StoreError as exc:
                # The ledger cannot be read: stop, but let the copies under way finish
                # and be recorded.
                self.totals.halted = str(exc)
            # Copies still under way or delayed may come back to the queue: the workers
            # end only once every one of them is settled.
            while self._outstanding:
                self._settled.clear()
                await self._settled.wait()
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            renewing.cancel()
            releasing.cancel()
            # Only when this run itself is cancelled are workers still running here.
            for worker in workers:
                worker.cancel()
            # Whatever was handed over is written, even then.
            recorder.close()
            await asyncio.shield(recording)
            if self._unsent:
                await self._release_unsent()
        totals = self.totals
        totals.interrupted = self.stop is not None and self.stop.is_set()
        return totals

    async def _release_unsent(self) -> None:
        """Claimed but never tried: free now for the next run, not after the lease.

        Best effort: when the database is what stopped the run, this fails too, and the
        run's own reason must survive; the claims then lapse with their lease.
        """
        try:
            await asyncio.to_thread(self.ledger.release, self._unsent)
        except StoreError as exc:
            log.warning(
                "could not release %d unsent copies (free again once their lease runs out): %s",
                len(self._unsent),
                exc,
            )

    async def _feed(self, queue: asyncio.Queue[_Copy | None]) -> None:
        """Claim batches of deliveries and queue them, until none is left or the run stops.

        The next batch is claimed as soon as the last one is queued, so this worker holds
        at most a queue and a batch it has not sent: gone within moments, well inside the
        lease that other workers respect.
        """
        batch_size = max(1, queue.maxsize // 2)
        # How often to look again for work other workers hold: their claims may be
        # finished, or may lapse (a worker died) and become ours to send.
        poll = min(1.0, self.lease.total_seconds() / 4)
        self._since = await asyncio.to_thread(self.ledger.clock)
        while not self.stopping:
            claimed = await self._claim(batch_size)
            if not claimed:
                if self.take_over or not await asyncio.to_thread(self.ledger.held_by_others):
                    # Once more: another worker may have let rows go since the last look.
                    claimed = await self._claim(batch_size)
                    if not claimed:
                        return
                else:
                    await asyncio.sleep(poll)
                    continue
            for delivery in claimed:
                self._outstanding += 1
                await queue.put(_Copy(delivery))
            # Against a relay that refuses everything for now, copies would pile up in
            # the delay queue, every one of them claimed: claim more only once the
            # waiting ones are down to a queue's worth.
            while len(self._delayed) > queue.maxsize and not self.stopping:
                await asyncio.sleep(_STOP_POLL)

    async def _release_delayed(self, queue: asyncio.Queue[_Copy | None]) -> None:
        """Hand each delayed copy back to the workers when its time comes; all of them at
        once when the run must stop (the workers then record them as they are)."""
        while True:
            now = time.monotonic()
            due = self._delayed.pop_all() if self.stopping else self._delayed.pop_due(now)
            for copy in due:
                await queue.put(copy)
            next_due = self._delayed.next_due()
            wait = _STOP_POLL if next_due is None else min(_STOP_POLL, next_due - now)
            try:
                await asyncio.sleep(max(0.0, wait))
            except asyncio.CancelledError:
                if self._delayed:
                    # Cancelled before the run ended (the run itself was): what still
                    # waits is released for the next run, not lost with its lease.
                    self._unsent.extend(copy.delivery.id for copy in self._delayed.pop_all())
                raise

    async def _claim(self, batch_size: int) -> list[PendingDelivery]:
        sent_at = time.monotonic()
        claimed = await asyncio.to_thread(
            self.ledger.claim,
            batch_size,
            lease=self.lease,
            since=self._since,
            take_over=self.take_over,
        )
        live_until = sent_at + self.lease.total_seconds()
        self._live_until.update((delivery.id, live_until) for delivery in claimed)
        return claimed

    async def _renew_claims(self) -> None:
        """Keep this worker's claims alive while it runs; a dead worker's lapse."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            sent_at = time.monotonic()
            try:
                renewed = await asyncio.to_thread(self.ledger.renew, lease=self.lease)
            except StoreError as exc:
                log.warning("could not renew this worker's claims: %s", exc)
                continue
            live_until = sent_at + self.lease.total_seconds()
            self._live_until.update(
                (delivery_id, live_until)
                for delivery_id in renewed
                if delivery_id in self._live_until
            )

    async def _worker(self, queue: asyncio.Queue[_Copy | None], recorder: Recorder) -> None:
        # A worker keeps taking from the queue after the run must stop, without sending,
        # so the feeder never waits on a full queue that nobody empties.
        while (copy := await queue.get()) is not None:
            delivery = copy.delivery
            delayed = False
            try:
                if self.stopping:
                    await self._leave(copy, recorder)
                else:
                    delayed = await self._deliver(copy, recorder)
            except Exception as exc:
                # A bug or a library's surprise must stop the run, not one worker quietly
                # (the feeder would wait forever on a queue nobody empties).
                log.exception("sending to %s failed unexpectedly", delivery.subscriber.email)
                self._unsent.append(delivery.id)
                self.totals.halted = (
                    f"{delivery.subscriber.email}: unexpected {type(exc).__name__}: {exc}"
                )
            finally:
                # Settled, whatever happened to it, unless it waits in the delay queue.
                if not delayed:
                    self._outstanding -= 1
                    if not self._outstanding:
                        self._settled.set()

    async def _leave(self, copy: _Copy, recorder: Recorder) -> None:
        """The run stops before ``copy`` goes: it stays pending for the next run. One that
        was tried already keeps its attempts and last reason; one never tried is released."""
        if copy.failure is None:
            self._unsent.append(copy.delivery.id)
            return
        try:
            await recorder.record(self._failed(copy, copy.failure))
        except StoreError as exc:
            log.warning(
                "could not record the last failure of the copy for %s: %s",
                copy.delivery.subscriber.email,
                exc,
            )

    async def _deliver(self, copy: _Copy, recorder: Recorder) -> bool:
        """Send ``copy`` and record what became of it; True when it was delayed instead."""
        delivery = copy.delivery
        email = delivery.subscriber.email
        try:
            live = await self._still_claimed(delivery.id)
        except StoreError as exc:
            self._unsent.append(delivery.id)
            self.totals.halted = f"cannot check the claim on the copy for {email}: {exc}"
            return False
        if not live:
            # The lease ran out while this worker was held up, and another worker took the
            # delivery over: that one sends it.
            log.warning(
                "the claim on the copy for %s ran out and another worker took it over: skipped",
                email,
            )
            self._unsent.append(delivery.id)
            return False
        result = await self._attempt(copy)
        if result is None:
            self._unsent.append(delivery.id)  # the relay refused it before it went
            return False
        if result is _DELAYED:
            return True
        what = "sent" if result.message_id else "attempted"
        try:
            recorded = await recorder.record(result)
        except StoreError as exc:
            self.totals.halted = f"{email} was {what} but not recorded: {exc}"
            return False
        if not recorded:
            # Not retried and not counted: the delivery is another worker's now.
            log.warning(
                "the copy for %s was %s after this worker's claim on it ran out and another "
                "worker took it over: its result is left to that worker",
                email,
                what,
            )
            return False
        self._count(result)
        return False

    async def _still_claimed(self, delivery_id: int) -> bool:
        """True while the delivery is this worker's, with a live claim to send it under.

        Well within the lease of the last claim or renewal the database confirmed, it
        surely is (a live worker's claims are taken over only once they run out). Nearer
        its end, or past it, the claim is extended in the database only if it is still
        this worker's, in one statement, so no other worker can take it meanwhile.
        """
        live_until = self._live_until.pop(delivery_id, 0.0)
        lease = self.lease.total_seconds()
        if time.monotonic() < live_until - lease * _SAFE_SHARE_OF_LEASE:
            return True
        return await asyncio.to_thread(self.ledger.extend_claim, delivery_id, lease=self.lease)

    async def _attempt(self, copy: _Copy) -> DeliveryResult | _Delayed | None:
        """Try one copy once: its result, ``_DELAYED`` when it waits in the delay queue for
        another attempt, or None when the run must stop instead."""
        delivery = copy.delivery
        subscriber = delivery.subscriber
        copy.message_id = copy.message_id or self.template.new_message_id()
        try:
            # Made again for each attempt rather than kept: a relay that throttles can
            # leave thousands of copies waiting, and making one takes microseconds.
            data = self.template.render(subscriber, message_id=copy.message_id)
        except MessageError as exc:
            # This subscriber's copy cannot be made (a name with a line break, say): it
            # fails for good; the others go on.
            return DeliveryResult(delivery_id=delivery.id, error=str(exc), permanent=True)
        sender = self.return_path.for_delivery(delivery.id) if self.return_path else self.sender
        copy.attempts += 1
        try:
            await self.transport.send(data, sender=sender, recipient=subscriber.email)
        except DeliveryFailed as exc:
            copy.failure = exc
            if isinstance(exc, RelayUnavailable):
                # The relay's failure (no connection, 421, a time-out), not the reader's:
                # it counts towards the breaker now, or a relay that is down would be
                # tried with copy after copy before the first one's retries ran out.
                self._count_relay_failure()
            if not isinstance(exc, PermanentFailure) and copy.attempts < self.smtp.retry_attempts:
                due = time.monotonic() + retry_delay(self.smtp, copy.attempts)
                self._delayed.push(copy, due)
                return _DELAYED
            # Permanent: failed for good. Transient on the last attempt: it stays pending,
            # with the attempt counted, for the next run. The reason is kept without the
            # address, so the summary counts copies that failed alike.
            log.warning(
                "the copy for %s was not accepted%s (%s): %s",
                subscriber.email,
                f" by {exc.relay}" if exc.relay else "",
                "failed" if isinstance(exc, PermanentFailure) else "left to retry",
                exc.reason,
            )
            return self._failed(copy, exc)
        except RelayRefused as exc:
            # The relay refuses the sender or the message: sending on would fail for all.
            self.totals.halted = str(exc)
            return None
        return DeliveryResult(delivery_id=delivery.id, message_id=copy.message_id)

    @staticmethod
    def _failed(copy: _Copy, exc: DeliveryFailed) -> DeliveryResult:
        return DeliveryResult(
            delivery_id=copy.delivery.id,
            error=exc.reason,
            permanent=isinstance(exc, PermanentFailure),
            bounced_subscriber_id=(
                copy.delivery.subscriber.id if isinstance(exc, MailboxUnknown) else None
            ),
        )

    def _count_relay_failure(self) -> None:
        self.totals.count_relay_failure(threshold=self.smtp.failure_threshold)

    def _count(self, result: DeliveryResult) -> None:
        self.totals.count(
            result,
            threshold=self.smtp.failure_threshold,
            max_refused_rate=self.max_refused_rate,
        )
        if self.on_delivery is not None:
            self.on_delivery()
