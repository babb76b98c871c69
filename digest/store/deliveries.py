"""Delivery records across issues and subscribers (one issue's sending is digest.ledger's)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from digest.models import SubscriberStatus
from digest.store.tables import PENDING, deliveries, issues, subscribers

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["DeliveryRecords"]


class DeliveryRecords:
    """What the deliveries of one database say across issues and subscribers."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def count_to_send(self, issue_id: int | None) -> int:
        """Active subscribers the issue has not yet been sent to (or failed for good)."""
        query = (
            select(func.count())
            .select_from(subscribers)
            .where(subscribers.c.status == SubscriberStatus.ACTIVE.value)
        )
        if issue_id is not None:
            # By address: a subscriber removed and added again was sent the issue too.
            handled = select(deliveries.c.id).where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.email_key == subscribers.c.email_key,
                deliveries.c.status != PENDING,
            )
            query = query.where(~handled.exists())
        with self._db.reading() as connection:
            return int(connection.scalar(query) or 0)

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
                deliveries.c.status == PENDING,
                subscribers.c.status == SubscriberStatus.ACTIVE.value,
            )
            .group_by(issues.c.date)
        )
        never_queued = select(issues.c.date).where(
            issues.c.date >= first,
            issues.c.date <= last,
            issues.c.send_started_at.is_not(None),
            issues.c.queued_at.is_(None),
        )
        with self._db.reading() as connection:
            found: dict[dt.date, int | None] = {
                date: int(count) for date, count in connection.execute(pending)
            }
            found.update((date, None) for date in connection.scalars(never_queued))
        return sorted(found.items())
