"""The figures of the list and its sends, read in one go: what ``/metrics`` exposes, and
what an operator's view counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select

from digest.models import BounceKind, SubscriberStatus
from digest.store.clock import aware
from digest.store.tables import (
    FAILED,
    PENDING,
    SENT,
    bounce_events,
    deliveries,
    issues,
    subscriber_events,
    subscribers,
)

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["DayOfList", "FigureRecords", "Figures", "IssueFigures"]


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


@dataclass(frozen=True, kw_only=True, slots=True)
class IssueFigures:
    """One issue's copies by status, and what came back about them."""

    date: dt.date
    sent: int
    failed: int
    pending: int
    bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float:
        """Hard bounces per copy sent (0 before any went)."""
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        """Complaints per copy sent."""
        return self.complained / self.sent if self.sent else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class DayOfList:
    """How the list changed in one day (UTC): addresses that joined, left, bounced."""

    day: dt.date
    joined: int = 0
    left: int = 0
    bounced: int = 0


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

    def issues(self, *, last: int) -> list[IssueFigures]:
        """The ``last`` issues that have copies, newest first."""
        status = deliveries.c.status
        latest = (
            select(issues.c.id, issues.c.date)
            .where(issues.c.id.in_(select(deliveries.c.issue_id).distinct()))
            .order_by(issues.c.date.desc())
            .limit(last)
            .subquery()
        )
        copies = (
            select(
                latest.c.id,
                latest.c.date,
                func.count().filter(status == SENT),
                func.count().filter(status == FAILED),
                func.count().filter(status == PENDING),
            )
            .join(deliveries, deliveries.c.issue_id == latest.c.id)
            .group_by(latest.c.id, latest.c.date)
        )
        returned = (
            select(bounce_events.c.issue_id, bounce_events.c.kind, func.count())
            .where(bounce_events.c.issue_id.in_(select(latest.c.id)))
            .where(bounce_events.c.kind.in_([BounceKind.HARD.value, BounceKind.COMPLAINT.value]))
            .group_by(bounce_events.c.issue_id, bounce_events.c.kind)
        )
        with self._db.reading() as connection:
            counts = {
                (issue_id, kind): count for issue_id, kind, count in connection.execute(returned)
            }
            rows = list(connection.execute(copies))
        found = [
            IssueFigures(
                date=date,
                sent=sent,
                failed=failed,
                pending=pending,
                bounced=counts.get((issue_id, BounceKind.HARD.value), 0),
                complained=counts.get((issue_id, BounceKind.COMPLAINT.value), 0),
            )
            for issue_id, date, sent, failed, pending in rows
        ]
        return sorted(found, key=lambda figures: figures.date, reverse=True)

    def list_days(self, *, since: dt.date, until: dt.date) -> list[DayOfList]:
        """Each day from ``since`` to ``until``: addresses that joined, left and bounced."""
        day = func.date(subscriber_events.c.created_at)
        query = (
            select(
                day,
                func.count().filter(subscriber_events.c.kind == "joined"),
                func.count().filter(
                    subscriber_events.c.status == SubscriberStatus.UNSUBSCRIBED.value
                ),
                func.count().filter(
                    subscriber_events.c.status.in_(
                        [SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value]
                    )
                ),
            )
            .where(
                subscriber_events.c.created_at
                >= dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
            )
            .group_by(day)
        )
        with self._db.reading() as connection:
            found = {
                _as_date(when): DayOfList(
                    day=_as_date(when), joined=joined, left=left, bounced=bounced
                )
                for when, joined, left, bounced in connection.execute(query)
            }
        days = (until - since).days + 1
        return [
            found.get(since + dt.timedelta(days=n), DayOfList(day=since + dt.timedelta(days=n)))
            for n in range(days)
        ]


def _as_date(value: dt.date | str) -> dt.date:
    # SQLite's date() gives text; PostgreSQL's a date.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
