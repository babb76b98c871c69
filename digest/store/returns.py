"""What came back after a send: the messages read and the events they hold, recorded and
applied to the list (digest.store.suppression) in one transaction per message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, or_, select
from sqlalchemy.exc import IntegrityError

from digest.errors import StoreError
from digest.models import BounceKind
from digest.store.suppression import (
    SoftRule,
    StatusChange,
    TracedEvent,
    apply_event,
)
from digest.store.tables import (
    OUTBOX,
    SENT,
    bounce_events,
    deliveries,
    issues,
    returned_messages,
    subscribers,
)

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = [
    "BounceEvent",
    "DeliveryRef",
    "IssueStats",
    "ReturnRecords",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryRef:
    """A delivery, as a returned message is traced to it."""

    id: int
    issue_id: int
    subscriber_id: int | None
    email_key: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BounceEvent:
    """One stored event, for ``digest bounces list``."""

    created_at: dt.datetime
    email: str | None
    issue_date: dt.date | None
    kind: BounceKind
    status: str | None
    reason: str
    matched_by: str | None
    message_id: str | None
    # Whether it changed the subscriber's status.
    applied: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class IssueStats:
    """One issue's copies really sent, and its events by kind and by reason."""

    date: dt.date
    sent: int
    by_kind: dict[str, int]
    # (kind, status or reason) -> count, for what was not about the address.
    by_reason: dict[tuple[str, str], int]

    def rate(self, kind: BounceKind) -> float:
        """Addresses with an event of ``kind`` per copy sent (0 when none were sent)."""
        return self.by_kind.get(kind.value, 0) / self.sent if self.sent else 0.0


class ReturnRecords:
    """The returned messages of one database and the events they hold."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def known(self, digest: str) -> str | None:
        """What the message with this SHA-256 was read as (its form), if it was read before."""
        with self._db.reading() as connection:
            found: str | None = connection.scalar(
                select(returned_messages.c.form).where(returned_messages.c.digest == digest)
            )
        return found

    def delivery(self, delivery_id: int) -> DeliveryRef | None:
        """The delivery with this id (a VERP token's)."""
        return self._delivery(deliveries.c.id == delivery_id)

    def delivery_by_message_id(self, message_id: str) -> DeliveryRef | None:
        """The delivery whose copy had this Message-ID."""
        return self._delivery(deliveries.c.message_id == message_id.strip())

    def latest_delivery_to(self, email_key: str) -> DeliveryRef | None:
        """The last copy really sent to the address: what a bounce naming it is about."""
        return self._delivery(
            deliveries.c.email_key == email_key,
            deliveries.c.status == SENT,
            or_(deliveries.c.sent_via.is_(None), deliveries.c.sent_via != OUTBOX),
            newest=True,
        )

    def subscriber_id(self, email_key: str) -> int | None:
        """The id of the subscriber with this case-folded address."""
        with self._db.reading() as connection:
            found = connection.scalar(
                select(subscribers.c.id).where(subscribers.c.email_key == email_key)
            )
        return int(found) if found is not None else None

    def record(
        self,
        *,
        digest: str,
        message_id: str | None,
        form: str,
        source: str,
        problem: str | None,
        events: Sequence[TracedEvent],
        now: dt.datetime,
        soft: SoftRule,
    ) -> list[StatusChange] | None:
        """Store one message and its events and apply them, all or nothing; None when the
        message was recorded before (by this run or another)."""

        def work(connection: Connection) -> list[StatusChange]:
            inserted = connection.execute(
                returned_messages.insert().values(
                    digest=digest,
                    message_id=message_id,
                    form=form,
                    source=source,
                    problem=problem,
                    received_at=now,
                )
            ).inserted_primary_key
            assert inserted is not None
            returned_id = inserted[0]
            changes = []
            for event in events:
                event_id = connection.execute(
                    bounce_events.insert().values(
                        returned_id=returned_id,
                        delivery_id=event.delivery_id,
                        issue_id=event.issue_id,
                        subscriber_id=event.subscriber_id,
                        email_key=event.email_key,
                        kind=event.kind.value,
                        status=event.status,
                        reason=event.reason,
                        matched_by=event.matched_by,
                        created_at=now,
                    )
                ).inserted_primary_key
                assert event_id is not None
                change = (
                    apply_event(connection, event, now=now, soft=soft) if event.applies else None
                )
                if change is not None:
                    connection.execute(
                        bounce_events.update()
                        .where(bounce_events.c.id == event_id[0])
                        .values(applied=True)
                    )
                    changes.append(change)
            return changes

        try:
            return self._db.transact(work)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError) and self.known(digest) is not None:
                return None
            raise

    def last_suppressing(self, email: str) -> BounceEvent | None:
        """The last event that suppressed the address (a hard bounce, the soft bounce that
        ended a run, a complaint): why it is suppressed."""
        found = self.events(
            email_key=email.casefold(),
            kinds=(BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT),
            applied=True,
        )
        return found[-1] if found else None

    def events(
        self,
        *,
        kind: BounceKind | None = None,
        since: dt.datetime | None = None,
        email_key: str | None = None,
        kinds: Sequence[BounceKind] = (),
        applied: bool | None = None,
    ) -> list[BounceEvent]:
        """The stored events, oldest first, of ``kind`` (or ``kinds``), from ``since``, of
        ``email_key``."""
        query = (
            select(
                bounce_events,
                issues.c.date.label("issue_date"),
                returned_messages.c.message_id.label("source_message_id"),
            )
            .join(returned_messages, returned_messages.c.id == bounce_events.c.returned_id)
            .outerjoin(issues, issues.c.id == bounce_events.c.issue_id)
            .order_by(bounce_events.c.id)
        )
        if kind is not None:
            query = query.where(bounce_events.c.kind == kind.value)
        if kinds:
            query = query.where(bounce_events.c.kind.in_([k.value for k in kinds]))
        if email_key is not None:
            query = query.where(bounce_events.c.email_key == email_key)
        if applied is not None:
            query = query.where(bounce_events.c.applied.is_(applied))
        if since is not None:
            query = query.where(bounce_events.c.created_at >= since)
        with self._db.reading() as connection:
            rows = connection.execute(query).all()
        return [
            BounceEvent(
                created_at=row.created_at,
                email=row.email_key,
                issue_date=row.issue_date,
                kind=BounceKind(row.kind),
                status=row.status,
                reason=row.reason,
                matched_by=row.matched_by,
                message_id=row.source_message_id,
                applied=bool(row.applied),
            )
            for row in rows
        ]

    def stats(self, *, date: dt.date | None = None, last: int = 10) -> list[IssueStats]:
        """Per issue (``date``'s, or the ``last`` ones sent), copies sent and events."""
        with self._db.reading() as connection:
            query = select(issues.c.id, issues.c.date).where(issues.c.queued_at.is_not(None))
            if date is not None:
                query = query.where(issues.c.date == date)
            chosen = connection.execute(query.order_by(issues.c.date.desc()).limit(last)).all()
            found = []
            for issue_id, issue_date in chosen:
                sent = connection.scalar(
                    select(func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.status == SENT,
                        or_(deliveries.c.sent_via.is_(None), deliveries.c.sent_via != OUTBOX),
                    )
                )
                # Addresses, not events: two reports of one bounce count once.
                by_kind = {
                    kind: int(count)
                    for kind, count in connection.execute(
                        select(
                            bounce_events.c.kind,
                            func.count(func.distinct(bounce_events.c.email_key)),
                        )
                        .where(bounce_events.c.issue_id == issue_id)
                        .group_by(bounce_events.c.kind)
                    )
                }
                by_reason = {
                    (kind, reason): int(count)
                    for kind, reason, count in connection.execute(
                        select(
                            bounce_events.c.kind,
                            func.coalesce(bounce_events.c.status, bounce_events.c.reason),
                            func.count(),
                        )
                        .where(bounce_events.c.issue_id == issue_id)
                        .group_by(
                            bounce_events.c.kind,
                            func.coalesce(bounce_events.c.status, bounce_events.c.reason),
                        )
                    )
                }
                found.append(
                    IssueStats(
                        date=issue_date, sent=int(sent or 0), by_kind=by_kind, by_reason=by_reason
                    )
                )
        return found

    def _delivery(self, *conditions: Any, newest: bool = False) -> DeliveryRef | None:
        query = select(
            deliveries.c.id,
            deliveries.c.issue_id,
            deliveries.c.subscriber_id,
            deliveries.c.email_key,
        ).where(*conditions)
        if newest:
            query = query.order_by(deliveries.c.sent_at.desc(), deliveries.c.id.desc())
        with self._db.reading() as connection:
            row = connection.execute(query.limit(1)).first()
        if row is None:
            return None
        return DeliveryRef(
            id=row.id,
            issue_id=row.issue_id,
            subscriber_id=row.subscriber_id,
            email_key=row.email_key,
        )
