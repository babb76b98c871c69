"""Queueing an issue's copies: one pending delivery per active reader's address.

A reader is known by address: a subscriber removed and added again gets back the
deliveries their address had, never a second copy; and copies that only reached the
local outbox while digest was tried out are owed again when the issue goes through a
relay.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Update, and_, delete, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.selectable import ScalarSelect

from digest.models import SubscriberStatus
from digest.store import Store, deliveries, issues, subscribers
from digest.store.clock import DatabaseNow
from digest.store.subscribers import receives_issue
from digest.store.tables import OUTBOX, PENDING, SENT

__all__ = ["Queue"]


class Queue:
    """The deliveries one issue owes, as they are queued."""

    def __init__(self, store: Store, issue_id: int) -> None:
        self.store = store
        self.issue_id = issue_id

    def _issue_date(self) -> ScalarSelect[dt.date]:
        return select(issues.c.date).where(issues.c.id == self.issue_id).scalar_subquery()

    def _reattach_statement(self) -> Update:
        owner = select(subscribers.c.id).where(subscribers.c.email_key == deliveries.c.email_key)
        return (
            update(deliveries)
            .where(
                deliveries.c.issue_id == self.issue_id,
                deliveries.c.subscriber_id.is_(None),
                owner.exists(),
            )
            .values(subscriber_id=owner.scalar_subquery())
        )

    def requeue_outbox_copies(self) -> int:
        """Make the copies that only reached the local outbox owed again; how many, to send.

        Trying digest out sends to the outbox; what a relay send then owes are real
        copies. Those to readers still active become pending; the others (removed, such
        as a trial's example readers, or no longer active) are forgotten, as never sent:
        were the address back on the list, it would get the issue for real.
        """
        outbox_only = and_(
            deliveries.c.issue_id == self.issue_id,
            deliveries.c.status == SENT,
            deliveries.c.sent_via == OUTBOX,
        )
        active = deliveries.c.subscriber_id.in_(
            select(subscribers.c.id).where(subscribers.c.status == SubscriberStatus.ACTIVE.value)
        )
        requeue = (
            update(deliveries)
            .where(outbox_only, active)
            .values(
                status=PENDING,
                message_id=None,
                sent_at=None,
                sent_via=None,
                attempts=0,
                claimed_by=None,
                claimed_until=None,
                updated_at=DatabaseNow(),
            )
        )
        forget = delete(deliveries).where(
            outbox_only, ~active | deliveries.c.subscriber_id.is_(None)
        )

        def write(connection: Connection) -> int:
            requeued = int(connection.execute(requeue).rowcount or 0)
            connection.execute(forget)
            return requeued

        return self.store.transact(write)

    def reattach(self) -> int:
        """Give back to a subscriber added again the deliveries their address had; how many.

        The ledger knows readers by address: a removed subscriber's deliveries stay, with
        nobody's id, and go to whoever has the address again. A send that only resumes
        runs this too, so a copy still pending for them is sent.
        """
        statement = self._reattach_statement()
        return self.store.transact(
            lambda connection: int(connection.execute(statement).rowcount or 0)
        )

    def enqueue(self, *, now: dt.datetime) -> int:
        """A pending delivery for every active subscriber whose address has none; how many.

        A subscriber removed and added again gets back the deliveries their address had
        (see :meth:`reattach`), and no second one. The issue is marked as queued in the
        same transaction, even when nobody was: its send is then no longer unfinished for
        want of copies (see :func:`unfinished_issues`).
        """
        has_one = exists().where(
            and_(
                deliveries.c.issue_id == self.issue_id,
                deliveries.c.email_key == subscribers.c.email_key,
            )
        )
        rows = (
            select(
                literal(self.issue_id),
                subscribers.c.id,
                subscribers.c.email_key,
                literal(PENDING),
                literal(0),
                literal(now, deliveries.c.created_at.type),
                literal(now, deliveries.c.updated_at.type),
            )
            # A paused reader gets no copy of an issue dated before their pause ends.
            .where(receives_issue(self._issue_date()), ~has_one)
            # In one order, so workers enqueueing at once wait for each other, not in a cycle.
            .order_by(subscribers.c.id)
        )
        columns = [
            "issue_id",
            "subscriber_id",
            "email_key",
            "status",
            "attempts",
            "created_at",
            "updated_at",
        ]
        # Workers arriving together may enqueue at once: a row another one just added is
        # skipped, not an error. SQLite and PostgreSQL are the only databases served.
        insert = (
            postgresql.insert(deliveries)
            if self.store.engine.dialect.name == "postgresql"
            else sqlite.insert(deliveries)
        )
        statement = insert.from_select(columns, rows).on_conflict_do_nothing()
        queued = (
            update(issues)
            .where(issues.c.id == self.issue_id, issues.c.queued_at.is_(None))
            .values(queued_at=literal(now, issues.c.queued_at.type))
        )
        reattach = self._reattach_statement()

        def write(connection: Connection) -> int:
            # The issue's row first: workers enqueueing at once take their turns on it.
            connection.execute(queued)
            connection.execute(reattach)
            return int(connection.execute(statement).rowcount or 0)

        return self.store.transact(write)
