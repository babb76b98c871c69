"""What the operator did at /admin (the actions log) and the scheduled sends they skipped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, func, insert, select

from digest.store.clock import aware
from digest.store.tables import admin_actions, skipped_sends

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["ERASED", "AdminAction", "OperatorRecords"]

# What an action's target becomes when its address is erased (digest subscribers erase).
ERASED = "(an erased address)"


@dataclass(frozen=True, kw_only=True, slots=True)
class AdminAction:
    """One action taken at /admin."""

    at: dt.datetime
    action: str
    target: str
    detail: str
    # The address the request came from.
    origin: str


class OperatorRecords:
    """The ``admin_actions`` and ``skipped_sends`` tables."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def record(
        self, action: str, target: str, detail: str, *, origin: str, now: dt.datetime
    ) -> None:
        """Keep an action in the log."""
        row = {
            "created_at": now,
            "action": action,
            "target": target,
            "detail": detail,
            "origin": origin,
        }
        with self._db.writing() as connection:
            connection.execute(insert(admin_actions), row)

    def recent(self, *, limit: int) -> list[AdminAction]:
        """The latest ``limit`` actions, newest first."""
        query = (
            select(admin_actions)
            .order_by(admin_actions.c.created_at.desc(), admin_actions.c.id.desc())
            .limit(limit)
        )
        return self._actions(query)

    def _actions(self, query: Select[Any]) -> list[AdminAction]:
        with self._db.reading() as connection:
            rows = connection.execute(query).all()
        return [
            AdminAction(
                at=aware(row.created_at) or row.created_at,
                action=row.action,
                target=row.target,
                detail=row.detail,
                origin=row.origin,
            )
            for row in rows
        ]

    def about(self, email: str) -> list[AdminAction]:
        """The actions taken on ``email`` (whatever its case), oldest first."""
        query = (
            select(admin_actions)
            .where(func.lower(admin_actions.c.target) == email.casefold())
            .order_by(admin_actions.c.created_at, admin_actions.c.id)
        )
        return self._actions(query)

    def skip(self, day: dt.date, *, now: dt.datetime) -> bool:
        """Skip the scheduled send of ``day``: True, or False if it was skipped already."""
        found = select(skipped_sends.c.day).where(skipped_sends.c.day == day)
        return self._db.insert_once(skipped_sends, {"day": day, "skipped_at": now}, found=found)

    def resume(self, day: dt.date) -> bool:
        """Send ``day`` as scheduled again: True, or False if it was not skipped."""
        with self._db.writing() as connection:
            result = connection.execute(delete(skipped_sends).where(skipped_sends.c.day == day))
        return bool(result.rowcount)

    def skipped_at(self, day: dt.date) -> dt.datetime | None:
        """When the scheduled send of ``day`` was skipped, or None if it was not."""
        query = select(skipped_sends.c.skipped_at).where(skipped_sends.c.day == day)
        with self._db.reading() as connection:
            found: dt.datetime | None = connection.scalar(query)
        return aware(found)
