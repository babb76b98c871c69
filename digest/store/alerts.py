"""The alerts sent to the operator, kept so that each cause is told once a day."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select

from digest.store.tables import alerts

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["AlertRecords"]


class AlertRecords:
    """The ``alerts`` table."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def claim(self, cause: str, day: dt.date, *, title: str, detail: str, now: dt.datetime) -> bool:
        """Note an alert of ``cause`` for ``day``: True when it is the first, to be sent;
        False when one was already noted (by this process or another)."""
        row = {"cause": cause, "day": day, "title": title, "detail": detail, "created_at": now}
        # Noted by another process at the same moment: theirs goes out.
        noted = select(alerts.c.id).where(alerts.c.cause == cause, alerts.c.day == day)
        return self._db.insert_once(alerts, row, found=noted)

    def sent(self, *, since: dt.date) -> list[tuple[dt.date, str, str]]:
        """The alerts since ``since``: (day, cause, title), oldest first."""
        query = (
            select(alerts.c.day, alerts.c.cause, alerts.c.title)
            .where(alerts.c.day >= since)
            .order_by(alerts.c.day, alerts.c.id)
        )
        with self._db.reading() as connection:
            return [(row.day, row.cause, row.title) for row in connection.execute(query)]
