"""What readers change themselves: confirming a signup, their name, a pause, leaving and
coming back; and the removal of signups never confirmed. Each change is recorded with
its cause in the subscriber's history."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update

from digest.models import SubscriberStatus
from digest.store.consent import log_event, move_status
from digest.store.tables import consents, subscribers

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["PreferenceRecords"]


class PreferenceRecords:
    """Readers' own changes to their subscription, in one database."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def confirm(self, subscriber_id: int, *, now: dt.datetime) -> bool:
        """Make a pending subscriber (or one who left and signed up again) active; False
        for any other (active, or suppressed: a link never brings those back)."""
        with self._db.writing() as connection:
            changed = move_status(
                connection,
                subscriber_id,
                to=SubscriberStatus.ACTIVE,
                only_from=[SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED],
                cause="the link in the confirmation mail",
                now=now,
                kind="confirmed",
                confirmed_at=now,
            )
            if changed:
                # The signup being confirmed is the latest consent; earlier ones (an
                # import, a signup long ago) keep what they were.
                latest = (
                    select(func.max(consents.c.id))
                    .where(consents.c.subscriber_id == subscriber_id)
                    .scalar_subquery()
                )
                connection.execute(
                    update(consents)
                    .where(consents.c.id == latest, consents.c.confirmed_at.is_(None))
                    .values(confirmed_at=now)
                )
        return changed

    def rename(self, subscriber_id: int, name: str | None, *, now: dt.datetime) -> None:
        """Set the subscriber's name (None: no name)."""
        with self._db.writing() as connection:
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(name=name, updated_at=now)
            )
            # The name itself is not logged: it is personal data, kept in one place.
            log_event(connection, subscriber_id, "renamed", "the preferences page", now=now)

    def pause(self, subscriber_id: int, until: dt.date | None, *, now: dt.datetime) -> None:
        """No copies of issues dated before ``until``; None resumes at once."""
        with self._db.writing() as connection:
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(paused_until=until, updated_at=now)
            )
            kind, cause = (
                ("paused", f"until {until.isoformat()}, from the preferences page")
                if until is not None
                else ("resumed", "the preferences page")
            )
            log_event(connection, subscriber_id, kind, cause, now=now)

    def resubscribe(self, subscriber_id: int, *, now: dt.datetime) -> bool:
        """Bring back a subscriber who unsubscribed (not one suppressed); False otherwise."""
        with self._db.writing() as connection:
            return move_status(
                connection,
                subscriber_id,
                to=SubscriberStatus.ACTIVE,
                only_from=[SubscriberStatus.UNSUBSCRIBED],
                cause="resubscribed from the preferences page",
                now=now,
            )

    def note(self, subscriber_id: int, kind: str, cause: str, *, now: dt.datetime) -> None:
        """Record something that happened to the subscriber without changing them."""
        with self._db.writing() as connection:
            log_event(connection, subscriber_id, kind, cause, now=now)

    def claim_confirmation(
        self, subscriber_id: int, *, now: dt.datetime, every: dt.timedelta
    ) -> bool:
        """Take the right to send the subscriber a confirmation mail now: True when none
        went in the last ``every`` (two signups at once cannot both take it)."""
        with self._db.writing() as connection:
            taken = connection.execute(
                update(subscribers)
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.confirm_sent_at.is_(None)
                    | (subscribers.c.confirm_sent_at <= now - every),
                )
                .values(confirm_sent_at=now)
            ).rowcount
        return bool(taken)

    def remove_unconfirmed(self, *, before: dt.datetime) -> int:
        """Delete the pending subscribers last sent a confirmation (or who signed up, if
        none went) before ``before``; how many."""
        last = func.coalesce(subscribers.c.confirm_sent_at, subscribers.c.created_at)
        with self._db.writing() as connection:
            result = connection.execute(
                delete(subscribers).where(
                    subscribers.c.status == SubscriberStatus.PENDING.value, last < before
                )
            )
        return int(result.rowcount or 0)
