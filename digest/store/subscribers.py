"""Subscriber records: who is on the list, and in which state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, select
from sqlalchemy.engine import Row

from digest.errors import StoreError
from digest.models import JoinedVia, Subscriber, SubscriberStatus
from digest.store.clock import aware
from digest.store.consent import Evidence, log_event, move_status, record_consent
from digest.store.suppression import suppressed_by_events
from digest.store.tables import subscribers

# Rows read or written per statement when walking or importing the subscriber list.
_BATCH = 1000

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = [
    "ImportCounts",
    "ListEntry",
    "SubscriberRecords",
    "receives_issue",
    "subscriber_from_row",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class ListEntry:
    """One address of an imported list, already checked."""

    email: str
    name: str | None = None
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    subscribed_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportCounts:
    """What an import did: added, an active address given the file's leaving status, left."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


def receives_issue(issue_date: ColumnElement[dt.date] | dt.date) -> ColumnElement[bool]:
    """True for a subscriber who gets the issue of ``issue_date``: active and not paused."""
    return (subscribers.c.status == SubscriberStatus.ACTIVE.value) & (
        subscribers.c.paused_until.is_(None) | (subscribers.c.paused_until <= issue_date)
    )


class SubscriberRecords:
    """The subscriber list of one database."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def add(
        self,
        email: str,
        name: str | None,
        *,
        now: dt.datetime,
        source: str | None = None,
        evidence: Evidence | None = None,
        pending: bool = False,
        cause: str = "added with digest subscribers add",
    ) -> tuple[Subscriber, bool]:
        """Add ``email`` (already normalised) as active (``pending``: waiting for its
        confirmation); an address on the list is left as it is.

        ``evidence`` is kept as the consent of a new address (by default: added by the
        operator on the command line). Returns the subscriber and whether this call added
        them.
        """
        existing = self.find(email)
        if existing is not None:
            return existing, False
        evidence = evidence or Evidence(method=JoinedVia.CLI)
        try:
            with self._db.writing() as connection:
                # Removed and added again, an address that bounced or complained comes
                # back suppressed: only an operator's --force sends to it again.
                start = SubscriberStatus.PENDING if pending else SubscriberStatus.ACTIVE
                status = suppressed_by_events(connection, [email.casefold()]).get(
                    email.casefold(), start
                )
                inserted = connection.execute(
                    subscribers.insert().values(
                        email=email,
                        email_key=email.casefold(),
                        name=name,
                        status=status.value,
                        created_at=now,
                        updated_at=now,
                        source=source,
                        joined_via=evidence.method.value,
                    )
                ).inserted_primary_key
                assert inserted is not None
                record_consent(connection, inserted[0], evidence, now=now)
                log_event(connection, inserted[0], "joined", cause, now=now, status=status)
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
        """Add every new address of ``rows`` (email, name) as active; returns (added,
        already there). ``source`` labels the new ones."""
        counts = self.import_entries(
            (ListEntry(email=email, name=name) for email, name in rows), now=now, source=source
        )
        return counts.added, counts.updated + counts.unchanged

    def import_entries(
        self,
        entries: Iterable[ListEntry],
        *,
        now: dt.datetime,
        source: str | None = None,
        evidence: Evidence | None = None,
    ) -> ImportCounts:
        """Add every new address of ``entries`` with its status; an active address the file
        says has left (unsubscribed, bounced, complained) takes that status; no other
        address changes, and none is ever made active again.

        ``source`` labels the new ones; ``evidence`` (the file and the operator's note) is
        kept as each new address's consent.
        """
        evidence = evidence or Evidence(method=JoinedVia.IMPORT)
        wanted: dict[str, ListEntry] = {}
        for entry in entries:
            wanted.setdefault(entry.email.casefold(), entry)
        added = updated = 0
        keys = list(wanted)
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            with self._db.writing() as connection:
                known = dict(
                    connection.execute(
                        select(subscribers.c.email_key, subscribers.c.id).where(
                            subscribers.c.email_key.in_(batch),
                            subscribers.c.status == SubscriberStatus.ACTIVE.value,
                        )
                    ).all()
                )
                there = set(
                    connection.scalars(
                        select(subscribers.c.email_key).where(subscribers.c.email_key.in_(batch))
                    )
                )
                held = suppressed_by_events(connection, [k for k in batch if k not in there])
                for key in batch:
                    entry = wanted[key]
                    if key in there:
                        if key in known and entry.status is not SubscriberStatus.ACTIVE:
                            updated += self._leave(connection, known[key], entry.status, now)
                        continue
                    # An address that bounced or complained before it was removed comes
                    # back suppressed, whatever the file says.
                    status = _worse(held.get(key), entry.status)
                    self._insert_entry(connection, entry, status, now, source, evidence)
                    added += 1
        return ImportCounts(added=added, updated=updated, unchanged=len(keys) - added - updated)

    def _insert_entry(
        self,
        connection: Connection,
        entry: ListEntry,
        status: SubscriberStatus,
        now: dt.datetime,
        source: str | None,
        evidence: Evidence,
    ) -> None:
        joined = entry.subscribed_at or now
        inserted = connection.execute(
            subscribers.insert().values(
                email=entry.email,
                email_key=entry.email.casefold(),
                name=entry.name,
                status=status.value,
                created_at=joined,
                updated_at=now,
                source=source,
                joined_via=evidence.method.value,
            )
        ).inserted_primary_key
        assert inserted is not None
        with_date = Evidence(
            method=evidence.method,
            file_name=evidence.file_name,
            note=evidence.note,
            joined_at=entry.subscribed_at,
        )
        record_consent(connection, inserted[0], with_date, now=now)
        cause = f"imported from {evidence.file_name}" if evidence.file_name else "imported"
        log_event(connection, inserted[0], "joined", cause, now=now, status=status)

    def _leave(
        self, connection: Connection, subscriber_id: int, status: SubscriberStatus, now: dt.datetime
    ) -> int:
        moved = move_status(
            connection,
            subscriber_id,
            to=status,
            only_from=[SubscriberStatus.ACTIVE],
            cause="an import said so",
            now=now,
        )
        return int(moved)

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

    def held_by_history(self, email: str) -> SubscriberStatus | None:
        """Bounced or complained, when the address once was, though it is off the list now."""
        key = email.casefold()
        with self._db.reading() as connection:
            return suppressed_by_events(connection, [key]).get(key)

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
        cause: str = "changed with digest subscribers",
    ) -> Subscriber | None:
        """Change a subscriber's status (only from ``only_from``, when given), recording
        ``cause``; None if the address is not on the list."""
        condition = subscribers.c.email_key == email.casefold()
        if only_from is not None:
            condition = condition & (subscribers.c.status == only_from.value)
        with self._db.writing() as connection:
            subscriber_id = connection.scalar(select(subscribers.c.id).where(condition))
            if subscriber_id is not None:
                connection.execute(
                    subscribers.update()
                    .where(subscribers.c.id == subscriber_id)
                    .values(status=status.value, updated_at=now)
                )
                log_event(connection, subscriber_id, "status", cause, now=now, status=status)
        return self.find(email)

    def unsubscribe(
        self,
        subscriber_id: int,
        *,
        now: dt.datetime,
        cause: str = "the unsubscribe link in an issue",
    ) -> bool:
        """Unsubscribe by id (an unsubscribe link's); False if there is no such subscriber.

        Only an active subscriber changes: a bounced one stays bounced, and doing it again
        changes nothing.
        """
        with self._db.writing() as connection:
            move_status(
                connection,
                subscriber_id,
                to=SubscriberStatus.UNSUBSCRIBED,
                only_from=[SubscriberStatus.ACTIVE],
                cause=cause,
                now=now,
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
        joined_via=row.joined_via,
        confirmed_at=aware(row.confirmed_at),
        paused_until=row.paused_until,
        created_at=aware(row.created_at),
    )


# Worst last: what an address is when two sources disagree.
_ORDER = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
)


def _worse(first: SubscriberStatus | None, second: SubscriberStatus) -> SubscriberStatus:
    if first is None:
        return second
    return max(first, second, key=_ORDER.index)
