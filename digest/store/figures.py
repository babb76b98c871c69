"""The figures of the list and its sends, read in one go: what ``/metrics`` exposes, and
what an operator's view counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select

from digest.models import BounceKind, SubscriberStatus
from digest.store.clock import aware
from digest.store.tables import FAILED, PENDING, SENT, bounce_events, deliveries, subscribers

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["FigureRecords", "Figures"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Figures:
    """Every issue's deliveries, the list, and what came back, at one moment."""

    sent: int
    failed: int
    pending: int
    # Attempts beyond each copy's first: transient failures tried again.
    retries: int
    # Copies sent in the minute before the moment.
    sent_last_minute: int
    last_sent_at: dt.datetime | None
    subscribers: dict[SubscriberStatus, int]
    returns: dict[BounceKind, int]


class FigureRecords:
    """Reads :class:`Figures`."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def snapshot(self, *, now: dt.datetime) -> Figures:
        """The figures at ``now``."""
        since = now - dt.timedelta(minutes=1)
        status = deliveries.c.status
        totals = select(
            func.count().filter(status == SENT),
            func.count().filter(status == FAILED),
            func.count().filter(status == PENDING),
            func.coalesce(
                func.sum(case((deliveries.c.attempts > 1, deliveries.c.attempts - 1), else_=0)),
                0,
            ),
            func.count().filter(status == SENT, deliveries.c.sent_at >= since),
            func.max(deliveries.c.sent_at),
        )
        by_status = select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
        by_kind = select(bounce_events.c.kind, func.count()).group_by(bounce_events.c.kind)
        with self._db.reading() as connection:
            sent, failed, pending, retries, recent, last = connection.execute(totals).one()
            listed = {
                SubscriberStatus(name): count for name, count in connection.execute(by_status)
            }
            returned = {BounceKind(name): count for name, count in connection.execute(by_kind)}
        return Figures(
            sent=sent,
            failed=failed,
            pending=pending,
            retries=int(retries),
            sent_last_minute=recent,
            last_sent_at=aware(last),
            subscribers={kind: listed.get(kind, 0) for kind in SubscriberStatus},
            returns={kind: returned.get(kind, 0) for kind in BounceKind},
        )
