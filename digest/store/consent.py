"""The evidence of each subscriber's consent, and the history of what changed them.

A consent row says how an address joined (form, import, cli, api), when, from which IP
(or only a keyed hash of it), with which user agent, and which wording of the consent it
was shown (``consent_texts``, each wording stored once); or, for an import, the file and
the operator's note. ``subscriber_events`` holds every other change with its cause.
Both go with the subscriber's row when the address is erased.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from digest.errors import StoreError
from digest.models import JoinedVia, SubscriberStatus
from digest.store.clock import aware
from digest.store.tables import consent_texts, consents, subscriber_events, subscribers

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = [
    "Consent",
    "ConsentRecords",
    "Evidence",
    "HistoryEvent",
    "log_event",
    "move_status",
    "record_consent",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """What is recorded of how an address joined, as it joins."""

    method: JoinedVia
    # The exact consent wording the form showed.
    text: str | None = None
    ip: str | None = None
    ip_hash: str | None = None
    user_agent: str | None = None
    file_name: str | None = None
    note: str | None = None
    # When the address joined, when it is not now (an import's subscribed_at).
    joined_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Consent:
    """One recorded consent of a subscriber."""

    method: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    text: str | None
    text_sha256: str | None
    ip: str | None
    ip_hash: str | None
    user_agent: str | None
    file_name: str | None
    note: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryEvent:
    """One change to a subscriber, with its cause."""

    at: dt.datetime
    kind: str
    status: str | None
    cause: str


def _text_id(connection: Connection, text: str, now: dt.datetime) -> int:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    text_id = connection.scalar(select(consent_texts.c.id).where(consent_texts.c.sha256 == digest))
    if text_id is None:
        inserted = connection.execute(
            consent_texts.insert().values(sha256=digest, text=text, first_shown_at=now)
        ).inserted_primary_key
        assert inserted is not None
        text_id = inserted[0]
    return int(text_id)


def record_consent(
    connection: Connection, subscriber_id: int, evidence: Evidence, *, now: dt.datetime
) -> None:
    """Store ``evidence`` for the subscriber; a consent wording is stored once."""
    text_id = _text_id(connection, evidence.text, now) if evidence.text is not None else None
    connection.execute(
        consents.insert().values(
            subscriber_id=subscriber_id,
            method=evidence.method.value,
            text_id=text_id,
            ip=evidence.ip,
            ip_hash=evidence.ip_hash,
            user_agent=evidence.user_agent,
            file_name=evidence.file_name,
            note=evidence.note,
            created_at=evidence.joined_at or now,
            confirmed_at=evidence.confirmed_at,
        )
    )


def log_event(
    connection: Connection,
    subscriber_id: int,
    kind: str,
    cause: str,
    *,
    now: dt.datetime,
    status: SubscriberStatus | None = None,
) -> None:
    """Record a change to a subscriber and why."""
    connection.execute(
        subscriber_events.insert().values(
            subscriber_id=subscriber_id,
            kind=kind,
            status=status.value if status is not None else None,
            cause=cause,
            created_at=now,
        )
    )


def move_status(
    connection: Connection,
    subscriber_id: int,
    *,
    to: SubscriberStatus,
    only_from: Collection[SubscriberStatus],
    cause: str,
    now: dt.datetime,
    kind: str = "status",
    **values: Any,
) -> bool:
    """Move the subscriber to ``to`` if their status is one of ``only_from`` (setting
    ``values`` too), and record it with ``cause``; whether they moved."""
    changed = connection.execute(
        update(subscribers)
        .where(
            subscribers.c.id == subscriber_id,
            subscribers.c.status.in_([status.value for status in only_from]),
        )
        .values(status=to.value, updated_at=now, **values)
    ).rowcount
    if changed:
        log_event(connection, subscriber_id, kind, cause, now=now, status=to)
    return bool(changed)


class ConsentRecords:
    """Consents and history of the subscribers of one database."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def remember_text(self, text: str, *, now: dt.datetime) -> str:
        """Keep a consent wording about to be shown (once per wording); its SHA-256, hex."""
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._db.reading() as connection:
            known = connection.scalar(
                select(consent_texts.c.id).where(consent_texts.c.sha256 == digest)
            )
        if known is None:
            try:
                with self._db.writing() as connection:
                    _text_id(connection, text, now)
            except StoreError:
                # Another server process stored it first.
                pass
        return digest

    def text(self, sha256: str) -> str | None:
        """The consent wording with this hash, if it was ever shown."""
        with self._db.reading() as connection:
            return connection.scalar(
                select(consent_texts.c.text).where(consent_texts.c.sha256 == sha256)
            )

    def add(self, subscriber_id: int, evidence: Evidence, *, now: dt.datetime) -> None:
        """Keep a further consent of a subscriber already on the list (one who signs up again)."""
        with self._db.writing() as connection:
            record_consent(connection, subscriber_id, evidence, now=now)

    def of(self, subscriber_id: int) -> list[Consent]:
        """The subscriber's consents, oldest first."""
        query = (
            select(consents, consent_texts.c.text, consent_texts.c.sha256)
            .outerjoin(consent_texts, consent_texts.c.id == consents.c.text_id)
            .where(consents.c.subscriber_id == subscriber_id)
            .order_by(consents.c.id)
        )
        with self._db.reading() as connection:
            rows = connection.execute(query).all()
        return [
            Consent(
                method=row.method,
                created_at=_aware(row.created_at),
                confirmed_at=aware(row.confirmed_at),
                text=row.text,
                text_sha256=row.sha256,
                ip=row.ip,
                ip_hash=row.ip_hash,
                user_agent=row.user_agent,
                file_name=row.file_name,
                note=row.note,
            )
            for row in rows
        ]

    def last_change_to(self, subscriber_id: int, status: SubscriberStatus) -> dt.datetime | None:
        """When the subscriber was last moved to ``status``, if the history says."""
        query = select(func.max(subscriber_events.c.created_at)).where(
            subscriber_events.c.subscriber_id == subscriber_id,
            subscriber_events.c.status == status.value,
        )
        with self._db.reading() as connection:
            return aware(connection.scalar(query))

    def history(self, subscriber_id: int) -> list[HistoryEvent]:
        """Every recorded change to the subscriber, oldest first."""
        query = (
            select(subscriber_events)
            .where(subscriber_events.c.subscriber_id == subscriber_id)
            .order_by(subscriber_events.c.id)
        )
        with self._db.reading() as connection:
            rows = connection.execute(query).all()
        return [
            HistoryEvent(
                at=_aware(row.created_at), kind=row.kind, status=row.status, cause=row.cause
            )
            for row in rows
        ]


def _aware(value: dt.datetime) -> dt.datetime:
    found = aware(value)
    assert found is not None
    return found
