"""What a returned message's event does to its subscriber: the suppression rules.

A hard bounce suppresses at once (``bounced``), a complaint too (``complained``), an
unsubscribe mail unsubscribes; a soft bounce suppresses only when it ends a run of
``SoftRule.limit`` issues in a row that soft-bounced, each traced to its copy. The
subscriber's row is locked while it is judged, so two readers of bounces at once do not
decide from the same old status.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select

from digest.models import BounceKind, SubscriberStatus
from digest.store.consent import move_status
from digest.store.tables import (
    OUTBOX,
    SENT,
    bounce_events,
    deliveries,
    issues,
    returned_messages,
    subscribers,
)

__all__ = [
    "SUPPRESSING",
    "SendRefusal",
    "SoftRule",
    "StatusChange",
    "TracedEvent",
    "apply_event",
    "record_refusals",
    "shown",
    "suppressed_by_events",
]

# The events that suppress an address when they change it.
SUPPRESSING = (BounceKind.HARD.value, BounceKind.SOFT.value, BounceKind.COMPLAINT.value)
# Only these say which copy bounced; a soft bounce traced by address alone counts for no run.
_TRACED_TO_A_COPY = ("token", "message-id")


@dataclass(frozen=True, kw_only=True, slots=True)
class TracedEvent:
    """What a returned message said of one address, with what it was traced to."""

    kind: BounceKind
    email_key: str | None
    status: str | None
    reason: str
    delivery_id: int | None = None
    issue_id: int | None = None
    subscriber_id: int | None = None
    # "token", "message-id", "address"; "forged" for a return path that did not verify;
    # None when it names no one on the list.
    matched_by: str | None = None
    # False when it is recorded only: traced by an address a forger could name.
    applies: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class SoftRule:
    """Soft bounces on ``limit`` issues in a row, within ``days``, suppress an address."""

    limit: int
    days: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusChange:
    """A subscriber moved by a returned message."""

    email: str
    before: SubscriberStatus
    after: SubscriberStatus
    reason: str


# Which status each kind moves an address to, and from which statuses.
_SUPPRESS = {
    BounceKind.HARD: (SubscriberStatus.BOUNCED, {SubscriberStatus.ACTIVE}),
    BounceKind.COMPLAINT: (
        SubscriberStatus.COMPLAINED,
        {SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED},
    ),
    BounceKind.UNSUBSCRIBE: (SubscriberStatus.UNSUBSCRIBED, {SubscriberStatus.ACTIVE}),
}


def apply_event(
    connection: Connection, event: TracedEvent, *, now: dt.datetime, soft: SoftRule
) -> StatusChange | None:
    """What ``event`` does to its subscriber, applied; the change, if any."""
    if event.subscriber_id is None:
        return None
    row = connection.execute(
        select(subscribers.c.email, subscribers.c.status)
        .where(subscribers.c.id == event.subscriber_id)
        .with_for_update()
    ).first()
    if row is None:
        return None
    before = SubscriberStatus(row.status)
    kind = event.kind
    reason = shown(event.kind.value, event)
    if kind is BounceKind.SOFT:
        run = _soft_run(connection, event, now=now, days=soft.days)
        if run < soft.limit:
            return None
        kind = BounceKind.HARD
        reason = shown(f"soft bounces on {run} issues in a row", event)
    if kind not in _SUPPRESS:
        return None
    after, moves_from = _SUPPRESS[kind]
    if before not in moves_from:
        return None
    # Recorded in the subscriber's history too, with every other change.
    if not move_status(
        connection, event.subscriber_id, to=after, only_from=[before], cause=reason, now=now
    ):
        return None
    return StatusChange(email=row.email, before=before, after=after, reason=reason)


def _soft_run(connection: Connection, event: TracedEvent, *, now: dt.datetime, days: int) -> int:
    """How many issues in a row, this event's among them, soft-bounced for its subscriber
    within ``days``: an issue sent between that did not bounce ends the run (it arrived, or
    it is too soon to say)."""
    if event.issue_id is None or event.matched_by not in _TRACED_TO_A_COPY:
        return 0
    cutoff = now - dt.timedelta(days=days)
    soft_issues = set(
        connection.scalars(
            select(bounce_events.c.issue_id).where(
                bounce_events.c.subscriber_id == event.subscriber_id,
                bounce_events.c.kind == BounceKind.SOFT.value,
                bounce_events.c.matched_by.in_(_TRACED_TO_A_COPY),
                bounce_events.c.created_at >= cutoff,
            )
        )
    )
    sent = list(
        connection.scalars(
            select(issues.c.id)
            .join(deliveries, deliveries.c.issue_id == issues.c.id)
            .where(
                deliveries.c.subscriber_id == event.subscriber_id,
                deliveries.c.status == SENT,
                or_(deliveries.c.sent_via.is_(None), deliveries.c.sent_via != OUTBOX),
                deliveries.c.sent_at >= cutoff,
            )
            .order_by(issues.c.date)
        )
    )
    if event.issue_id not in sent:
        return 1 if event.issue_id in soft_issues else 0
    at = sent.index(event.issue_id)
    start, end = at, at
    while start > 0 and sent[start - 1] in soft_issues:
        start -= 1
    while end + 1 < len(sent) and sent[end + 1] in soft_issues:
        end += 1
    return end - start + 1


def suppressed_by_events(
    connection: Connection, email_keys: Iterable[str]
) -> dict[str, SubscriberStatus]:
    """Of the addresses, those an applied event suppressed (even if removed since), with
    the status it gave them: an address added again comes back suppressed."""
    keys = list(set(email_keys))
    if not keys:
        return {}
    latest = (
        select(bounce_events.c.email_key, func.max(bounce_events.c.id).label("id"))
        .where(
            bounce_events.c.email_key.in_(keys),
            bounce_events.c.applied.is_(True),
            bounce_events.c.kind.in_(SUPPRESSING),
        )
        .group_by(bounce_events.c.email_key)
        .subquery()
    )
    rows = connection.execute(
        select(bounce_events.c.email_key, bounce_events.c.kind).join(
            latest, latest.c.id == bounce_events.c.id
        )
    ).all()
    return {
        row.email_key: SubscriberStatus.COMPLAINED
        if row.kind == BounceKind.COMPLAINT.value
        else SubscriberStatus.BOUNCED
        for row in rows
    }


def shown(what: str, event: TracedEvent) -> str:
    """``hard: 5.1.1 User unknown``, cut to a line's length."""
    words = " ".join(part for part in (event.status, event.reason) if part)
    words = words if len(words) <= 120 else words[:119] + "…"
    return f"{what}: {words}" if words else what


@dataclass(frozen=True, kw_only=True, slots=True)
class SendRefusal:
    """A copy the relay refused during the send because the address does not exist."""

    delivery_id: int
    subscriber_id: int
    error: str


def record_refusals(
    connection: Connection, issue_id: int, refusals: Sequence[SendRefusal], *, now: Any
) -> None:
    """Bounce the subscribers the relay said do not exist, with the evidence kept as a hard
    bounce event each, as a bounce read later would be: so the address stays suppressed if
    it is removed and added again, and the issue's statistics count it."""
    if not refusals:
        return
    keys = dict(
        connection.execute(
            select(deliveries.c.id, deliveries.c.email_key).where(
                deliveries.c.id.in_([refusal.delivery_id for refusal in refusals])
            )
        ).all()
    )
    for refusal in refusals:
        # One source row per refused copy: the refusal is its own evidence.
        digest = hashlib.sha256(f"refusal:{refusal.delivery_id}".encode()).hexdigest()
        inserted = connection.execute(
            returned_messages.insert().values(
                digest=digest, form="refusal", source="the relay, during the send", received_at=now
            )
        ).inserted_primary_key
        assert inserted is not None
        changed = move_status(
            connection,
            refusal.subscriber_id,
            to=SubscriberStatus.BOUNCED,
            only_from=[SubscriberStatus.ACTIVE],
            cause=f"refused by the relay during the send: {refusal.error}",
            now=now,
        )
        codes = re.findall(r"[245]\.\d{1,3}\.\d{1,3}", refusal.error)
        connection.execute(
            bounce_events.insert().values(
                returned_id=inserted[0],
                delivery_id=refusal.delivery_id,
                issue_id=issue_id,
                subscriber_id=refusal.subscriber_id,
                email_key=keys.get(refusal.delivery_id),
                kind=BounceKind.HARD.value,
                status=codes[0] if codes else None,
                reason=refusal.error,
                matched_by="send",
                applied=bool(changed),
                created_at=now,
            )
        )
