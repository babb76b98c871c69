"""The send ledger: one delivery row per issue and address, so nothing is sent twice.

A send enqueues a pending delivery for every active subscriber whose address has none,
then takes the pending ones in batches and records each result as it comes: ``sent``
with its Message-ID, ``failed`` for good, or still ``pending`` with one more attempt
counted.

Workers claim deliveries for a lease, and every lease is measured by the database's
clock, never by a worker's own: machines whose clocks disagree still agree on whose
claim has run out. A result is recorded only under the claim it was sent under.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from digest.delivery.queue import Queue
from digest.models import Subscriber
from digest.store import Store, deliveries, subscriber_from_row, subscribers
from digest.store.clock import DatabaseNow, aware
from digest.store.deliveries import DeliveryCounts, ErrorCount, WorkerCounts
from digest.store.subscribers import receives_issue
from digest.store.suppression import SendRefusal, record_refusals
from digest.store.tables import FAILED, PENDING, SENT, issues

log = logging.getLogger(__name__)

__all__ = [
    "DeliveryResult",
    "Ledger",
    "PendingDelivery",
    "default_worker_name",
]


def default_worker_name() -> str:
    """This process's name as a worker: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingDelivery:
    """A copy still to send: the delivery's row and whom it goes to."""

    id: int
    attempts: int
    subscriber: Subscriber


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryResult:
    """One attempt's outcome: sent (with its Message-ID) or failed, for good or for now."""

    delivery_id: int
    message_id: str | None = None
    error: str | None = None
    # A failure that will not change on retry: the delivery is failed for good.
    permanent: bool = False
    # Set when the relay said the address does not exist: that subscriber is bounced.
    bounced_subscriber_id: int | None = None


class Ledger:
    """Deliveries of one issue."""

    def __init__(
        self, store: Store, issue_id: int, *, worker: str = "", via: str | None = None
    ) -> None:
        self.store = store
        self.issue_id = issue_id
        self.queue = Queue(store, issue_id)
        # The transport copies sent through this ledger go to ("outbox", "smtp"), kept on
        # each sent delivery (see :meth:`requeue_outbox_copies`).
        self.via = via
        # Who claims deliveries through this ledger (see :meth:`claim`).
        self.worker = worker or default_worker_name()
        # Built once: a send records every delivery, and building a statement costs more
        # than running it. Each writes only a delivery still pending under this worker's
        # claim: a late result must not overwrite what the worker that took over recorded.
        under_claim = and_(
            deliveries.c.id == bindparam("delivery_id"),
            deliveries.c.status == PENDING,
            deliveries.c.claimed_by == bindparam("worker"),
        )
        self._sent = (
            update(deliveries)
            .where(under_claim)
            .values(
                status=SENT,
                message_id=bindparam("message_id"),
                sent_at=DatabaseNow(),
                updated_at=DatabaseNow(),
                attempts=deliveries.c.attempts + 1,
                last_error=None,
                claimed_until=None,
                sent_via=via,
            )
        )
        self._failed = (
            update(deliveries)
            .where(under_claim)
            .values(
                status=bindparam("status"),
                last_error=bindparam("error"),
                updated_at=DatabaseNow(),
                attempts=deliveries.c.attempts + 1,
                # Released, but still marked as this worker's: another worker may retry
                # it now, this one will not in this run.
                claimed_until=None,
            )
        )

    def _pending_to_active(self, *columns: Any) -> Select[Any]:
        """``columns`` of this issue's pending deliveries to subscribers still active."""
        return (
            select(*columns)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.issue_id == self.issue_id,
                deliveries.c.status == PENDING,
                # Paused after the copies were queued: no copy of an issue before the pause ends.
                receives_issue(
                    select(issues.c.date).where(issues.c.id == self.issue_id).scalar_subquery()
                ),
            )
        )

    def clock(self) -> dt.datetime:
        """The database's time now: what leases and the start of a run are measured by."""
        with self.store.reading() as connection:
            now = aware(connection.execute(select(DatabaseNow())).scalar_one())
        assert now is not None
        return now

    def enqueue(self, *, now: dt.datetime) -> int:
        """Queue a copy for every active subscriber not yet queued (see :meth:`Queue.enqueue`)."""
        return self.queue.enqueue(now=now)

    def reattach(self) -> int:
        """Give back their deliveries to subscribers added again (:meth:`Queue.reattach`)."""
        return self.queue.reattach()

    def requeue_outbox_copies(self) -> int:
        """Owe again the copies that only reached the outbox (see :class:`Queue`)."""
        return self.queue.requeue_outbox_copies()

    def claim(
        self,
        limit: int,
        *,
        lease: dt.timedelta,
        since: dt.datetime | None = None,
        take_over: bool = False,
    ) -> list[PendingDelivery]:
        """Claim up to ``limit`` pending deliveries to active subscribers, by id, for ``lease``.

        A delivery is free when nobody claims it or its lease has run out (its worker
        died). One that failed transiently at or after ``since`` (the start of this run,
        by :meth:`clock`) is left for a later run: tried again at once by another worker
        of this run, it would only bounce between them.
        On PostgreSQL, rows another worker is claiming at the same moment are skipped
        (``FOR UPDATE SKIP LOCKED``), so workers never wait for each other or take the
        same rows. With ``take_over`` (a send that holds the issue alone) live-looking
        claims are taken too: whoever made them is gone.
        """
        now = DatabaseNow()
        # Rows this worker holds are in its queue or being sent: never claimed twice.
        in_hand = and_(
            deliveries.c.claimed_by == self.worker, deliveries.c.claimed_until.is_not(None)
        )
        free_of_claims = (
            deliveries.c.claimed_until.is_(None) | (deliveries.c.claimed_until < now)
            if not take_over
            else ~in_hand
        )
        free = (
            self._pending_to_active(deliveries.c.id)
            .where(
                free_of_claims,
                ~in_hand,
                ~and_(
                    deliveries.c.claimed_by.is_not(None),
                    deliveries.c.claimed_until.is_(None),
                    deliveries.c.updated_at >= (since if since is not None else now),
                ),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=deliveries)
        )
        claim = (
            update(deliveries)
            .where(deliveries.c.id.in_(free.scalar_subquery()))
            .values(claimed_by=self.worker, claimed_until=DatabaseNow(lease.total_seconds()))
            .returning(deliveries.c.id)
        )

        def write(connection: Connection) -> list[Any]:
            ids = [row.id for row in connection.execute(claim)]
            if not ids:
                return []
            return list(
                connection.execute(
                    select(deliveries.c.id.label("delivery_id"), deliveries.c.attempts, subscribers)
                    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                    .where(deliveries.c.id.in_(ids))
                    .order_by(deliveries.c.id)
                )
            )

        return [
            PendingDelivery(
                id=row.delivery_id, attempts=row.attempts, subscriber=subscriber_from_row(row)
            )
            for row in self.store.transact(write)
        ]

    def renew(self, *, lease: dt.timedelta) -> set[int]:
        """Extend this worker's claims: a slow relay must not let them lapse.

        Returns the ids of the deliveries renewed: still this worker's, for ``lease`` more.
        Rows locked at this moment (being recorded) are skipped, not waited for: they
        are done, and waiting would lock rows in another order than the recorder does.
        """
        mine = (
            select(deliveries.c.id)
            .where(
                deliveries.c.issue_id == self.issue_id,
                deliveries.c.status == PENDING,
                deliveries.c.claimed_by == self.worker,
                deliveries.c.claimed_until.is_not(None),
            )
            .order_by(deliveries.c.id)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(deliveries)
            .where(deliveries.c.id.in_(mine.scalar_subquery()))
            .values(claimed_until=DatabaseNow(lease.total_seconds()))
            .returning(deliveries.c.id)
        )
        return self.store.transact(lambda connection: set(connection.scalars(statement)))

    def extend_claim(self, delivery_id: int, *, lease: dt.timedelta) -> bool:
        """Extend this worker's claim on the pending delivery by ``lease``, if it is still its own.

        True when it was, and is now live for ``lease`` by the database's clock. Checked
        and extended in one statement, before a copy that the worker's own reckoning can
        no longer vouch for: no other worker may take the delivery between the check and
        the send. A claim whose lease ran out but that nobody took over is still this
        worker's (``claimed_by`` is unchanged), and is extended.
        """
        statement = (
            update(deliveries)
            .where(
                deliveries.c.id == delivery_id,
                deliveries.c.status == PENDING,
                deliveries.c.claimed_by == self.worker,
                deliveries.c.claimed_until.is_not(None),
            )
            .values(claimed_until=DatabaseNow(lease.total_seconds()))
            .returning(deliveries.c.id)
        )
        return self.store.transact(
            lambda connection: connection.execute(statement).first() is not None
        )

    def held_by_others(self) -> bool:
        """True while another worker holds a live claim on a pending delivery of this issue."""
        query = (
            self._pending_to_active(deliveries.c.id)
            .where(
                deliveries.c.claimed_until > DatabaseNow(),
                deliveries.c.claimed_by != self.worker,
            )
            .limit(1)
        )
        with self.store.reading() as connection:
            return connection.execute(query).first() is not None

    def release(self, delivery_ids: Sequence[int]) -> None:
        """Give up this worker's claim on deliveries it did not try, for anyone to take."""
        mine = (
            select(deliveries.c.id)
            .where(
                deliveries.c.id.in_(sorted(delivery_ids)),
                deliveries.c.status == PENDING,
                deliveries.c.claimed_by == self.worker,
            )
            # Locked in id order, as every writer of the ledger locks rows.
            .order_by(deliveries.c.id)
            .with_for_update()
        )
        statement = (
            update(deliveries)
            .where(deliveries.c.id.in_(mine.scalar_subquery()))
            .values(claimed_by=None, claimed_until=None)
        )
        self.store.transact(lambda connection: connection.execute(statement))

    def record(self, results: Sequence[DeliveryResult]) -> set[int]:
        """Record a group of attempts in one transaction, and bounce whom they say.

        A result is written only while its delivery is pending and claimed by this
        worker. Returns the ids of the deliveries recorded; any other was taken over by
        another worker after this one's lease ran out, and is that worker's to record.
        Each statement writes its rows in id order, the order in which writers lock them.
        """
        ordered = sorted(results, key=lambda result: result.delivery_id)

        def write(connection: Connection) -> set[int]:
            mine: dict[str, object] = {"worker": self.worker}
            sent = [
                mine | {"delivery_id": result.delivery_id, "message_id": result.message_id}
                for result in ordered
                if result.message_id is not None
            ]
            failed = [
                mine
                | {
                    "delivery_id": result.delivery_id,
                    "status": FAILED if result.permanent else PENDING,
                    "error": result.error,
                }
                for result in ordered
                if result.message_id is None
            ]
            # One statement per kind for the whole group (a row each would cost a round
            # trip each); the rows written add up, and almost always to all of them.
            written = 0
            if sent:
                written += connection.execute(self._sent, sent).rowcount
            if failed:
                written += connection.execute(self._failed, failed).rowcount
            recorded = (
                {result.delivery_id for result in ordered}
                if written == len(ordered)
                else self._written_by_this_worker(connection, ordered)
            )
            record_refusals(
                connection,
                self.issue_id,
                [
                    SendRefusal(
                        delivery_id=result.delivery_id,
                        subscriber_id=result.bounced_subscriber_id,
                        error=result.error or "the address does not exist",
                    )
                    for result in ordered
                    if result.bounced_subscriber_id is not None and result.delivery_id in recorded
                ],
                now=DatabaseNow(),
            )
            return recorded

        return self.store.transact(write) if ordered else set()

    def _written_by_this_worker(
        self, connection: Connection, results: Sequence[DeliveryResult]
    ) -> set[int]:
        """Which of ``results`` the group's statements wrote, when some found a lost claim.

        A sent copy's row carries its own Message-ID; a failure written by this worker
        left the row claimed by it with the claim released, which no other writer does.
        """
        rows = {
            row.id: row
            for row in connection.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.message_id,
                    deliveries.c.claimed_by,
                    deliveries.c.claimed_until,
                ).where(deliveries.c.id.in_([result.delivery_id for result in results]))
            )
        }
        recorded = set()
        for result in results:
            row = rows.get(result.delivery_id)
            if row is None:
                continue
            if result.message_id is not None:
                ours = row.message_id == result.message_id
            else:
                ours = row.claimed_by == self.worker and row.claimed_until is None
            if ours:
                recorded.add(result.delivery_id)
        return recorded

    def counts(self, *, now: dt.datetime | None = None) -> DeliveryCounts:
        """How this issue's deliveries stand (see :meth:`DeliveryRecords.counts`)."""
        return self.store.deliveries.counts(self.issue_id, now=now)

    def errors(self) -> list[ErrorCount]:
        """Why this issue's copies failed or wait (see :meth:`DeliveryRecords.errors`)."""
        return self.store.deliveries.errors(self.issue_id)

    def by_worker(self, *, now: dt.datetime | None = None) -> list[WorkerCounts]:
        """Each worker's share of this issue (see :meth:`DeliveryRecords.by_worker`)."""
        return self.store.deliveries.by_worker(self.issue_id, now=now)

    def sent_since(self, since: dt.datetime) -> int:
        """How many copies of this issue were sent at or after ``since`` (for a rate)."""
        return self.store.deliveries.sent_since(self.issue_id, since)
