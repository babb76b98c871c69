"""The send ledger: one delivery row per issue and subscriber, so nothing is sent twice.

A send enqueues a pending delivery for every active subscriber who has none, then takes
the pending ones in batches and records each result as it comes: ``sent`` with its
Message-ID, ``failed`` for good, or still ``pending`` with one more attempt counted.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, exists, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select

from digest.models import Subscriber, SubscriberStatus
from digest.store import Store, deliveries, subscriber_from_row, subscribers

__all__ = [
    "DeliveryCounts",
    "DeliveryResult",
    "Ledger",
    "PendingDelivery",
    "WorkerCounts",
    "default_worker_name",
]

PENDING, SENT, FAILED = "pending", "sent", "failed"
# Not a stored status: a pending delivery under a live claim, as counted.
CLAIMED = "claimed"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


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


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryCounts:
    """How an issue's deliveries stand."""

    # Pending and free to take (not under a live claim).
    pending: int = 0
    # Pending and claimed by a worker now sending them.
    claimed: int = 0
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerCounts:
    """One worker's share of an issue."""

    worker: str
    sent: int
    failed: int
    claimed: int
    last_sent_at: dt.datetime | None


class Ledger:
    """Deliveries of one issue."""

    def __init__(self, store: Store, issue_id: int, *, worker: str = "") -> None:
        self.store = store
        self.issue_id = issue_id
        # Who claims deliveries through this ledger (see :meth:`claim`).
        self.worker = worker or default_worker_name()
        # Built once: a send records every delivery, and building a statement costs more
        # than running it.
        by_id = deliveries.c.id == bindparam("delivery_id")
        self._sent = (
            update(deliveries)
            .where(by_id)
            .values(
                status=SENT,
                message_id=bindparam("message_id"),
                sent_at=bindparam("now"),
                updated_at=bindparam("now"),
                attempts=deliveries.c.attempts + 1,
                last_error=None,
                claimed_until=None,
            )
        )
        self._failed = (
            update(deliveries)
            .where(by_id)
            .values(
                status=bindparam("status"),
                last_error=bindparam("error"),
                updated_at=bindparam("now"),
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
                subscribers.c.status == SubscriberStatus.ACTIVE.value,
            )
        )

    def enqueue(self, *, now: dt.datetime) -> int:
        """A pending delivery for every active subscriber without one; returns how many."""
        has_one = exists().where(
            and_(
                deliveries.c.issue_id == self.issue_id,
                deliveries.c.subscriber_id == subscribers.c.id,
            )
        )
        rows = select(
            literal(self.issue_id),
            subscribers.c.id,
            literal(PENDING),
            literal(0),
            literal(now, deliveries.c.created_at.type),
            literal(now, deliveries.c.updated_at.type),
        ).where(subscribers.c.status == SubscriberStatus.ACTIVE.value, ~has_one)
        columns = ["issue_id", "subscriber_id", "status", "attempts", "created_at", "updated_at"]
        # Workers arriving together may enqueue at once: a row another one just added is
        # skipped, not an error.
        dialect = self.store.engine.dialect.name
        statement = (
            postgresql.insert(deliveries).from_select(columns, rows).on_conflict_do_nothing()
            if dialect == "postgresql"
            else sqlite.insert(deliveries).from_select(columns, rows).on_conflict_do_nothing()
            if dialect == "sqlite"
            else insert(deliveries).from_select(columns, rows)
        )
        with self.store.writing() as connection:
            return int(connection.execute(statement).rowcount or 0)

    def claim(
        self,
        limit: int,
        *,
        lease: dt.timedelta,
        now: dt.datetime,
        since: dt.datetime | None = None,
        take_over: bool = False,
    ) -> list[PendingDelivery]:
        """Claim up to ``limit`` pending deliveries to active subscribers, by id, for ``lease``.

        A delivery is free when nobody claims it or its lease has run out (its worker
        died). One that failed transiently at or after ``since`` (the start of this run)
        is left for a later run: tried again at once by another worker of this run, it
        would only bounce between them.
        On PostgreSQL, rows another worker is claiming at the same moment are skipped
        (``FOR UPDATE SKIP LOCKED``), so workers never wait for each other or take the
        same rows. With ``take_over`` (a send that holds the issue alone) live-looking
        claims are taken too: whoever made them is gone.
        """
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
                    deliveries.c.updated_at >= (since or now),
                ),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=deliveries)
        )
        claim = (
            update(deliveries)
            .where(deliveries.c.id.in_(free.scalar_subquery()))
            .values(claimed_by=self.worker, claimed_until=now + lease)
            .returning(deliveries.c.id)
        )
        with self.store.writing() as connection:
            ids = [row.id for row in connection.execute(claim)]
            if not ids:
                return []
            rows = connection.execute(
                select(deliveries.c.id.label("delivery_id"), deliveries.c.attempts, subscribers)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.id)
            ).all()
        return [
            PendingDelivery(
                id=row.delivery_id, attempts=row.attempts, subscriber=subscriber_from_row(row)
            )
            for row in rows
        ]

    def renew(self, *, lease: dt.timedelta, now: dt.datetime) -> None:
        """Extend this worker's live claims: a slow relay must not let them lapse."""
        with self.store.writing() as connection:
            connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == self.issue_id,
                    deliveries.c.status == PENDING,
                    deliveries.c.claimed_by == self.worker,
                    deliveries.c.claimed_until.is_not(None),
                )
                .values(claimed_until=now + lease)
            )

    def held_by_others(self, *, now: dt.datetime) -> bool:
        """True while another worker holds a live claim on a pending delivery of this issue."""
        query = (
            self._pending_to_active(deliveries.c.id)
            .where(
                deliveries.c.claimed_until > now,
                deliveries.c.claimed_by != self.worker,
            )
            .limit(1)
        )
        with self.store.reading() as connection:
            return connection.execute(query).first() is not None

    def release(self, delivery_ids: Sequence[int]) -> None:
        """Give up this worker's claim on deliveries it did not try, for anyone to take."""
        with self.store.writing() as connection:
            connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_(list(delivery_ids)),
                    deliveries.c.status == PENDING,
                    deliveries.c.claimed_by == self.worker,
                )
                .values(claimed_by=None, claimed_until=None)
            )

    def record(self, results: Sequence[DeliveryResult], *, now: dt.datetime) -> None:
        """Record a group of attempts in one transaction, and bounce whom they say."""
        if not results:
            return
        sent = [
            {"delivery_id": result.delivery_id, "message_id": result.message_id, "now": now}
            for result in results
            if result.message_id is not None
        ]
        failed = [
            {
                "delivery_id": result.delivery_id,
                "error": result.error,
                "status": FAILED if result.permanent else PENDING,
                "now": now,
            }
            for result in results
            if result.message_id is None
        ]
        bounced = [
            result.bounced_subscriber_id
            for result in results
            if result.bounced_subscriber_id is not None
        ]
        with self.store.writing() as connection:
            if sent:
                connection.execute(self._sent, sent)
            if failed:
                connection.execute(self._failed, failed)
            if bounced:
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.id.in_(bounced))
                    .values(status=SubscriberStatus.BOUNCED.value, updated_at=now)
                )

    def counts(self, *, now: dt.datetime | None = None) -> DeliveryCounts:
        """Deliveries of this issue by status; pending ones under a live claim apart."""
        now = now or dt.datetime.now(dt.UTC)
        claimed = and_(deliveries.c.status == PENDING, deliveries.c.claimed_until > now)
        state = case((claimed, CLAIMED), else_=deliveries.c.status)
        # A pending delivery to someone no longer active will not be sent: not counted.
        query = (
            select(state, func.count())
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.issue_id == self.issue_id,
                (deliveries.c.status != PENDING)
                | (subscribers.c.status == SubscriberStatus.ACTIVE.value),
            )
            .group_by(state)
        )
        with self.store.reading() as connection:
            found = {str(status): int(count) for status, count in connection.execute(query)}
        return DeliveryCounts(
            pending=found.get(PENDING, 0),
            claimed=found.get(CLAIMED, 0),
            sent=found.get(SENT, 0),
            failed=found.get(FAILED, 0),
        )

    def by_worker(self, *, now: dt.datetime | None = None) -> list[WorkerCounts]:
        """For each worker that claimed deliveries of this issue: sent, failed, claimed now."""
        now = now or dt.datetime.now(dt.UTC)
        claimed = and_(deliveries.c.status == PENDING, deliveries.c.claimed_until > now)
        query = (
            select(
                deliveries.c.claimed_by,
                func.sum(case((deliveries.c.status == SENT, 1), else_=0)),
                func.sum(case((deliveries.c.status == FAILED, 1), else_=0)),
                func.sum(case((claimed, 1), else_=0)),
                func.max(deliveries.c.sent_at),
            )
            .where(deliveries.c.issue_id == self.issue_id, deliveries.c.claimed_by.is_not(None))
            .group_by(deliveries.c.claimed_by)
            .order_by(deliveries.c.claimed_by)
        )
        with self.store.reading() as connection:
            return [
                WorkerCounts(
                    worker=str(worker),
                    sent=int(sent or 0),
                    failed=int(failed or 0),
                    claimed=int(held or 0),
                    last_sent_at=_aware(last),
                )
                for worker, sent, failed, held, last in connection.execute(query)
            ]

    def sent_since(self, since: dt.datetime) -> int:
        """How many copies of this issue were sent at or after ``since`` (for a rate)."""
        query = select(func.count()).where(
            deliveries.c.issue_id == self.issue_id,
            deliveries.c.status == SENT,
            deliveries.c.sent_at >= since,
        )
        with self.store.reading() as connection:
            return int(connection.execute(query).scalar_one())
