"""The send ledger: one delivery row per issue and subscriber, so nothing is sent twice.

A send enqueues a pending delivery for every active subscriber who has none, then takes
the pending ones in batches and records each result as it comes: ``sent`` with its
Message-ID, ``failed`` for good, or still ``pending`` with one more attempt counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, exists, func, insert, literal, select, update

from digest.models import Subscriber, SubscriberStatus
from digest.store import Store, deliveries, subscriber_from_row, subscribers

__all__ = ["DeliveryCounts", "DeliveryResult", "Ledger", "PendingDelivery"]

PENDING, SENT, FAILED = "pending", "sent", "failed"


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

    pending: int = 0
    sent: int = 0
    failed: int = 0


class Ledger:
    """Deliveries of one issue."""

    def __init__(self, store: Store, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id
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
        statement = insert(deliveries).from_select(
            ["issue_id", "subscriber_id", "status", "attempts", "created_at", "updated_at"], rows
        )
        with self.store.writing() as connection:
            return int(connection.execute(statement).rowcount or 0)

    def pending(self, *, batch_size: int = 500) -> Iterator[list[PendingDelivery]]:
        """Pending deliveries to active subscribers, by id, a batch at a time.

        Each batch is read afresh after the one before was recorded, from the last id seen,
        so a delivery left pending by a transient failure waits for the next run.
        """
        after = 0
        while True:
            query = (
                select(deliveries.c.id.label("delivery_id"), deliveries.c.attempts, subscribers)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(
                    deliveries.c.issue_id == self.issue_id,
                    deliveries.c.status == PENDING,
                    deliveries.c.id > after,
                    subscribers.c.status == SubscriberStatus.ACTIVE.value,
                )
                .order_by(deliveries.c.id)
                .limit(batch_size)
            )
            with self.store.reading() as connection:
                rows = connection.execute(query).all()
            if not rows:
                return
            yield [
                PendingDelivery(
                    id=row.delivery_id, attempts=row.attempts, subscriber=subscriber_from_row(row)
                )
                for row in rows
            ]
            after = rows[-1].delivery_id

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

    def counts(self) -> DeliveryCounts:
        """Deliveries of this issue by status."""
        # A pending delivery to someone no longer active will not be sent: not counted.
        query = (
            select(deliveries.c.status, func.count())
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.issue_id == self.issue_id,
                (deliveries.c.status != PENDING)
                | (subscribers.c.status == SubscriberStatus.ACTIVE.value),
            )
            .group_by(deliveries.c.status)
        )
        with self.store.reading() as connection:
            found = {str(status): int(count) for status, count in connection.execute(query)}
        return DeliveryCounts(
            pending=found.get(PENDING, 0), sent=found.get(SENT, 0), failed=found.get(FAILED, 0)
        )
