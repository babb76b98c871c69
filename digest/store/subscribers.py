"""Subscriber records: who is on the list, and in which state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Row

from digest.errors import StoreError
from digest.models import Subscriber, SubscriberStatus
from digest.store.suppression import suppressed_by_events
from digest.store.tables import subscribers

# Rows read or written per statement when walking or importing the subscriber list.
_BATCH = 1000

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["SubscriberRecords", "subscriber_from_row"]


class SubscriberRecords:
    """The subscriber list of one database."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def add(
        self, email: str, name: str | None, *, now: dt.datetime, source: str | None = None
    ) -> tuple[Subscriber, bool]:
        """Add ``email`` (already normalised) as active; an address on the list is left as it is.

        Returns the subscriber and whether this call added them.
        """
        existing = self.find(email)
        if existing is not None:
            return existing, False
        try:
            with self._db.writing() as connection:
                # Removed and added again, an address that bounced or complained comes
                # back suppressed: only an operator's --force sends to it again.
                status = suppressed_by_events(connection, [email.casefold()]).get(
                    email.casefold(), SubscriberStatus.ACTIVE
                )
                connection.execute(
                    subscribers.insert().values(
                        email=email,
                        email_key=email.casefold(),
                        name=name,
                        status=status.value,
                        created_at=now,
                        updated_at=now,
                        source=source,
                    )
                )
        except StoreError:
            existing = self.find(email)
            if existing is None:
                raise
            return existing, False
        added = self.find(email)
        assert added is not None
        return added, True

    def import_rows(
        self,
        rows: Iterable[tuple[str, str | None]],
        *,
        now: dt.datetime,
        source: str | None = None,
    ) -> tuple[int, int]:
        """Add every new address of ``rows`` (email, name); returns (added, already there).

        ``source`` labels the new ones (an address already there keeps its own).
        """
        wanted: dict[str, tuple[str, str | None]] = {}
        for email, name in rows:
            wanted.setdefault(email.casefold(), (email, name))
        added = 0
        keys = list(wanted)
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            with self._db.writing() as connection:
                known = set(
                    connection.scalars(
                        select(subscribers.c.email_key).where(subscribers.c.email_key.in_(batch))
                    )
                )
                held = suppressed_by_events(connection, [k for k in batch if k not in known])
                new = [
                    {
                        "email": wanted[key][0],
                        "email_key": key,
                        "name": wanted[key][1],
                        "status": held.get(key, SubscriberStatus.ACTIVE).value,
                        "created_at": now,
                        "updated_at": now,
                        "source": source,
                    }
                    for key in batch
                    if key not in known
                ]
                if new:
                    connection.execute(subscribers.insert(), new)
                added += len(new)
        return added, len(keys) - added

    def find(self, email: str) -> Subscriber | None:
        """The subscriber with this address, whatever its case."""
        with self._db.reading() as connection:
            row = connection.execute(
                select(subscribers).where(subscribers.c.email_key == email.casefold())
            ).first()
        return subscriber_from_row(row) if row is not None else None

    def suppressed(self, emails: Iterable[str]) -> dict[str, tuple[SubscriberStatus, dt.datetime]]:
        """Of ``emails``, those suppressed (bounced or complained), by case-folded address,
        with their status and since when."""
        keys = list({email.casefold() for email in emails})
        found: dict[str, tuple[SubscriberStatus, dt.datetime]] = {}
        for start in range(0, len(keys), _BATCH):
            with self._db.reading() as connection:
                rows = connection.execute(
                    select(
                        subscribers.c.email_key, subscribers.c.status, subscribers.c.updated_at
                    ).where(
                        subscribers.c.email_key.in_(keys[start : start + _BATCH]),
                        subscribers.c.status.in_(
                            [SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value]
                        ),
                    )
                ).all()
            found.update(
                {row.email_key: (SubscriberStatus(row.status), row.updated_at) for row in rows}
            )
        return found

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber with this id, or None."""
        with self._db.reading() as connection:
            row = connection.execute(
                select(subscribers).where(subscribers.c.id == subscriber_id)
            ).first()
        return subscriber_from_row(row) if row is not None else None

    def iterate(
        self, *, status: SubscriberStatus | None = None, batch_size: int = _BATCH
    ) -> Iterator[Subscriber]:
        """Every subscriber (with ``status``), by id, read ``batch_size`` at a time.

        Each batch is a query of its own from the last id seen, so memory stays flat
        however long the list, and no connection is held between batches.
        """
        after = 0
        while True:
            query = select(subscribers).where(subscribers.c.id > after)
            if status is not None:
                query = query.where(subscribers.c.status == status.value)
            with self._db.reading() as connection:
                rows = connection.execute(query.order_by(subscribers.c.id).limit(batch_size)).all()
            if not rows:
                return
            yield from map(subscriber_from_row, rows)
            after = rows[-1].id

    def set_status(
        self,
        email: str,
        status: SubscriberStatus,
        *,
        now: dt.datetime,
        only_from: SubscriberStatus | None = None,
    ) -> Subscriber | None:
        """Change a subscriber's status (only from ``only_from``, when given); None if the
        address is not on the list."""
        condition = subscribers.c.email_key == email.casefold()
        if only_from is not None:
            condition = condition & (subscribers.c.status == only_from.value)
        with self._db.writing() as connection:
            connection.execute(
                subscribers.update().where(condition).values(status=status.value, updated_at=now)
            )
        return self.find(email)

    def unsubscribe(self, subscriber_id: int, *, now: dt.datetime) -> bool:
        """Unsubscribe by id (an unsubscribe link's); False if there is no such subscriber.

        Only an active subscriber changes: a bounced one stays bounced, and doing it again
        changes nothing.
        """
        with self._db.writing() as connection:
            connection.execute(
                subscribers.update()
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.status == SubscriberStatus.ACTIVE.value,
                )
                .values(status=SubscriberStatus.UNSUBSCRIBED.value, updated_at=now)
            )
            found = connection.scalar(
                select(subscribers.c.id).where(subscribers.c.id == subscriber_id)
            )
        return found is not None

    def remove_source(self, source: str) -> int:
        """Delete every subscriber added under ``source``; how many (their deliveries stay)."""
        with self._db.writing() as connection:
            result = connection.execute(subscribers.delete().where(subscribers.c.source == source))
        return int(result.rowcount or 0)

    def remove(self, email: str) -> bool:
        """Delete a subscriber altogether; False if the address is not on the list.

        Their deliveries stay, keyed by address (``subscriber_id`` becomes null): added
        again, the address is not sent an issue it already had.
        """
        with self._db.writing() as connection:
            result = connection.execute(
                subscribers.delete().where(subscribers.c.email_key == email.casefold())
            )
        return bool(result.rowcount)


def subscriber_from_row(row: Row[Any]) -> Subscriber:
    """A :class:`Subscriber` from a row with the subscribers table's columns."""
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=SubscriberStatus(row.status),
        source=row.source,
    )
