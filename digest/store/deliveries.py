"""Delivery records across issues and subscribers (one issue's sending: the ledger)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.sql.selectable import ScalarSelect

from digest.models import SubscriberStatus
from digest.store.clock import DatabaseNow, aware
from digest.store.subscribers import receives_issue
from digest.store.tables import FAILED, PENDING, SENT, deliveries, issues, subscribers

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = [
    "CLAIMED",
    "AddressDelivery",
    "DeliveryCounts",
    "DeliveryRecords",
    "ErrorCount",
    "WorkerCounts",
]

# Not a stored status: a pending delivery under a live claim, as counted.
CLAIMED = "claimed"


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
class ErrorCount:
    """How many of an issue's deliveries in one state last failed for one reason."""

    status: str
    error: str
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerCounts:
    """One worker's share of an issue."""

    worker: str
    sent: int
    failed: int
    claimed: int
    last_sent_at: dt.datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AddressDelivery:
    """One issue's copy to one address, as the ledger has it."""

    issue_date: dt.date
    status: str
    attempts: int
    sent_at: dt.datetime | None
    sent_via: str | None
    last_error: str | None
    message_id: str | None


class DeliveryRecords:
    """What the deliveries of one database say across issues and subscribers."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def count_to_send(self, issue_id: int | None) -> int:
        """Active subscribers the issue has not yet been sent to (or failed for good)."""
        query = select(func.count()).select_from(subscribers)
        if issue_id is None:
            query = query.where(subscribers.c.status == SubscriberStatus.ACTIVE.value)
        else:
            query = query.where(receives_issue(_date_of(issue_id)))
            # By address: a subscriber removed and added again was sent the issue too.
            handled = select(deliveries.c.id).where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.email_key == subscribers.c.email_key,
                deliveries.c.status != PENDING,
            )
            query = query.where(~handled.exists())
        with self._db.reading() as connection:
            return int(connection.scalar(query) or 0)

    def to_address(self, email: str) -> list[AddressDelivery]:
        """Every issue's copy to ``email`` (whatever its case), oldest issue first."""
        query = (
            select(deliveries, issues.c.date.label("issue_date"))
            .join(issues, issues.c.id == deliveries.c.issue_id)
            .where(deliveries.c.email_key == email.casefold())
            .order_by(issues.c.date)
        )
        with self._db.reading() as connection:
            rows = connection.execute(query).all()
        return [
            AddressDelivery(
                issue_date=row.issue_date,
                status=row.status,
                attempts=row.attempts,
                sent_at=aware(row.sent_at),
                sent_via=row.sent_via,
                last_error=row.last_error,
                message_id=row.message_id,
            )
            for row in rows
        ]

    def finished_subscriber_ids(self, issue_id: int) -> set[int]:
        """Subscribers whose address has a delivery of the issue sent or failed for good."""
        query = (
            select(subscribers.c.id)
            .join(deliveries, deliveries.c.email_key == subscribers.c.email_key)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.status != PENDING)
        )
        with self._db.reading() as connection:
            return set(connection.scalars(query))

    def unfinished_issues(
        self, *, first: dt.date, last: dt.date
    ) -> list[tuple[dt.date, int | None]]:
        """Issues dated ``first`` to ``last`` whose send began and did not finish, oldest first.

        Each comes with how many copies are still pending to active subscribers, or None
        when its send began (see :meth:`IssueRecords.mark_send_started`) and stopped before
        its copies were queued. An issue sent while nobody was subscribed is finished: its
        queueing is marked, though it queued no copy.
        """
        pending = (
            select(issues.c.date, func.count())
            .select_from(
                issues.join(deliveries, deliveries.c.issue_id == issues.c.id).join(
                    subscribers, subscribers.c.id == deliveries.c.subscriber_id
                )
            )
            .where(
                issues.c.date >= first,
                issues.c.date <= last,
                # Held for a person to look at (too many refusals): not resumed by itself.
                issues.c.held_at.is_(None),
                deliveries.c.status == PENDING,
                receives_issue(issues.c.date),
            )
            .group_by(issues.c.date)
        )
        never_queued = select(issues.c.date).where(
            issues.c.date >= first,
            issues.c.date <= last,
            issues.c.held_at.is_(None),
            issues.c.send_started_at.is_not(None),
            issues.c.queued_at.is_(None),
        )
        with self._db.reading() as connection:
            found: dict[dt.date, int | None] = {
                date: int(count) for date, count in connection.execute(pending)
            }
            found.update((date, None) for date in connection.scalars(never_queued))
        return sorted(found.items())

    def counts(self, issue_id: int, *, now: dt.datetime | None = None) -> DeliveryCounts:
        """Deliveries of an issue by status; pending ones under a live claim apart.

        Claims are live until ``now`` (default: the database's clock).
        """
        until = DatabaseNow() if now is None else literal(now, deliveries.c.claimed_until.type)
        claimed = and_(deliveries.c.status == PENDING, deliveries.c.claimed_until > until)
        state = case((claimed, CLAIMED), else_=deliveries.c.status)
        # A pending delivery to someone no longer active will not be sent: not counted.
        # One sent to a subscriber since removed still is.
        query = (
            select(state, func.count())
            .select_from(
                deliveries.outerjoin(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            )
            .where(
                deliveries.c.issue_id == issue_id,
                (deliveries.c.status != PENDING) | receives_issue(_date_of(issue_id)),
            )
            .group_by(state)
        )
        with self._db.reading() as connection:
            found = {str(status): int(count) for status, count in connection.execute(query)}
        return DeliveryCounts(
            pending=found.get(PENDING, 0),
            claimed=found.get(CLAIMED, 0),
            sent=found.get(SENT, 0),
            failed=found.get(FAILED, 0),
        )

    def errors(self, issue_id: int, *, limit: int = 10) -> list[ErrorCount]:
        """The reasons the issue's failed and pending deliveries last failed, most first.

        Pending copies never tried have no reason and are not counted; nor are pending
        copies to someone no longer active (they will not be sent).
        """
        query = (
            select(deliveries.c.status, deliveries.c.last_error, func.count().label("n"))
            .select_from(
                deliveries.outerjoin(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            )
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.last_error.is_not(None),
                (deliveries.c.status == FAILED)
                | ((deliveries.c.status == PENDING) & receives_issue(_date_of(issue_id))),
            )
            .group_by(deliveries.c.status, deliveries.c.last_error)
            .order_by(func.count().desc(), deliveries.c.status, deliveries.c.last_error)
            .limit(limit)
        )
        with self._db.reading() as connection:
            return [
                ErrorCount(status=str(status), error=str(error), count=int(count))
                for status, error, count in connection.execute(query)
            ]

    def by_worker(self, issue_id: int, *, now: dt.datetime | None = None) -> list[WorkerCounts]:
        """For each worker that claimed deliveries of an issue: sent, failed, claimed now.

        Claims are live until ``now`` (default: the database's clock).
        """
        until = DatabaseNow() if now is None else literal(now, deliveries.c.claimed_until.type)
        claimed = and_(deliveries.c.status == PENDING, deliveries.c.claimed_until > until)
        query = (
            select(
                deliveries.c.claimed_by,
                func.sum(case((deliveries.c.status == SENT, 1), else_=0)),
                func.sum(case((deliveries.c.status == FAILED, 1), else_=0)),
                func.sum(case((claimed, 1), else_=0)),
                func.max(deliveries.c.sent_at),
            )
            .where(deliveries.c.issue_id == issue_id, deliveries.c.claimed_by.is_not(None))
            .group_by(deliveries.c.claimed_by)
            .order_by(deliveries.c.claimed_by)
        )
        with self._db.reading() as connection:
            return [
                WorkerCounts(
                    worker=str(worker),
                    sent=int(sent or 0),
                    failed=int(failed or 0),
                    claimed=int(held or 0),
                    last_sent_at=aware(last),
                )
                for worker, sent, failed, held, last in connection.execute(query)
            ]

    def sent_since(self, issue_id: int, since: dt.datetime) -> int:
        """How many copies of an issue were sent at or after ``since`` (for a rate)."""
        query = select(func.count()).where(
            deliveries.c.issue_id == issue_id,
            deliveries.c.status == SENT,
            deliveries.c.sent_at >= since,
        )
        with self._db.reading() as connection:
            return int(connection.execute(query).scalar_one())


def _date_of(issue_id: int) -> ScalarSelect[dt.date]:
    return select(issues.c.date).where(issues.c.id == issue_id).scalar_subquery()
