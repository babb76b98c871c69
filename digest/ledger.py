"""The send ledger: one delivery row per issue and subscriber, so nothing is sent twice.

A send enqueues a pending delivery for every active subscriber who has none, then takes
the pending ones in batches and records each result as it comes: ``sent`` with its
Message-ID, ``failed`` for good, or still ``pending`` with one more attempt counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, exists, func, insert, literal, select, update

from digest.models import Subscriber, SubscriberStatus
from digest.store import Store, deliveries, subscriber_from_row, subscribers

__all__ = ["DeliveryCounts", "Ledger", "PendingDelivery"]

PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingDelivery:
    """A copy still to send: the delivery's row and whom it goes to."""

    id: int
    attempts: int
    subscriber: Subscriber


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

    def mark_sent(self, delivery_id: int, *, message_id: str, now: dt.datetime) -> None:
        """Record that the copy was handed over."""
        with self.store.writing() as connection:
            connection.execute(
                self._sent, {"delivery_id": delivery_id, "message_id": message_id, "now": now}
            )

    def mark_failed(
        self, delivery_id: int, *, error: str, permanent: bool, now: dt.datetime
    ) -> None:
        """Record a failed attempt: for good if ``permanent``, else it stays pending."""
        values = {"delivery_id": delivery_id, "error": error, "now": now}
        with self.store.writing() as connection:
            connection.execute(self._failed, values | {"status": FAILED if permanent else PENDING})

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
