"""Delivery records across issues and subscribers (one issue's sending is digest.ledger's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from digest.models import SubscriberStatus
from digest.store.tables import PENDING, deliveries, subscribers

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["DeliveryRecords"]


class DeliveryRecords:
    """What the deliveries of one database say about subscribers."""

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
