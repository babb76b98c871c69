"""What an operator does to one address, from the command line or at /admin: unsubscribe
it, resubscribe it (a suppressed or unconfirmed one only when forced), or remove it.

Each change is kept in the subscriber's history with who made it and how; a forced
resubscription, which overrides a reader's choice or a bounce, is also logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from digest.errors import InputError, NotFound
from digest.models import BounceKind, Subscriber, SubscriberStatus
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = ["SUPPRESSED", "Change", "remove", "resubscribe", "suppression", "unsubscribe"]

# Statuses only an operator's force undoes: the address does not exist, or its reader
# reported the digest as spam.
SUPPRESSED = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """An address before and after an operator's change (``changed`` False: left as it was)."""

    email: str
    before: SubscriberStatus
    after: SubscriberStatus

    @property
    def changed(self) -> bool:
        return self.before is not self.after


def unsubscribe(store: Store, email: str, *, via: str, by: str, now: dt.datetime) -> Change:
    """Stop sending to an active address; any other status is left as it is.

    The history says ``via`` (the command or page) and ``by`` whom.
    """
    before = _found(store, email)
    # Only an active address: a suppressed one stays so (a plain resubscribe would
    # otherwise bring it back).
    after = _moved(
        store,
        email,
        SubscriberStatus.UNSUBSCRIBED,
        only_from=SubscriberStatus.ACTIVE,
        cause=f"{via}, by {by}",
        now=now,
    )
    return Change(email=before.email, before=before.status, after=after.status)


def resubscribe(
    store: Store,
    email: str,
    *,
    via: str,
    by: str,
    now: dt.datetime,
    force: bool = False,
    to_force: str = "add --force",
) -> Change:
    """Send to an address again; a suppressed or unconfirmed one only with ``force``.

    Raises :class:`InputError` saying why, and ``to_force`` (how to force it), when
    ``force`` is needed and not given, or when the address changed status meanwhile (a
    bounce came in, say).
    """
    before = _found(store, email)
    if before.status is SubscriberStatus.ACTIVE:
        return Change(email=before.email, before=before.status, after=before.status)
    if before.status in SUPPRESSED and not force:
        why = suppression(store, before.email) or before.status.value
        raise InputError(
            f"{before.email} is suppressed ({why}): mailing it again hurts the list's "
            f"reputation with every mailbox provider; {to_force} if you are sure"
        )
    if before.status is SubscriberStatus.PENDING and not force:
        raise InputError(
            f"{before.email} signed up and has not confirmed: activating it skips the "
            f"double opt-in its reader was promised; {to_force} only if they agreed otherwise"
        )
    forced = before.status in (*SUPPRESSED, SubscriberStatus.PENDING)
    after = _moved(
        store,
        email,
        SubscriberStatus.ACTIVE,
        # Only from the status judged above: a bounce or complaint that came in since is
        # not overridden unseen.
        only_from=before.status,
        cause=f"{via}{' (forced)' if forced else ''}, by {by} (was {before.status})",
        now=now,
    )
    if after.status is not SubscriberStatus.ACTIVE:
        raise InputError(
            f"{after.email} became {after.status} meanwhile (it was {before.status}); "
            "nothing changed: look again"
        )
    # An operator overrode the reader's choice or a bounce: that is kept on record.
    log.warning(
        "%s resubscribed by %s at %s (was %s)",
        before.email,
        by,
        now.isoformat(timespec="seconds"),
        before.status,
    )
    return Change(email=before.email, before=before.status, after=SubscriberStatus.ACTIVE)


def remove(store: Store, email: str) -> None:
    """Delete an address from the list (its deliveries stay, so it is never sent an
    issue twice if added again); :class:`NotFound` if it is not on the list."""
    if not store.subscribers.remove(email):
        raise NotFound(f"{email} is not on the list")


def suppression(store: Store, email: str) -> str:
    """Why and since when an address is suppressed: ``bounced 2026-12-06: hard: 5.1.1 …``."""
    event = store.returns.last_suppressing(email)
    if event is None:
        return ""
    what = "complained" if event.kind is BounceKind.COMPLAINT else "bounced"
    detail = " ".join(part for part in (event.status, event.reason) if part)
    detail = detail if len(detail) <= 100 else detail[:99] + "…"
    return f"{what} {event.created_at.date().isoformat()}: {event.kind.value}: {detail}"


def _found(store: Store, email: str) -> Subscriber:
    found = store.subscribers.find(email)
    if found is None:
        raise NotFound(f"{email} is not on the list")
    return found


def _moved(
    store: Store,
    email: str,
    to: SubscriberStatus,
    *,
    only_from: SubscriberStatus,
    cause: str,
    now: dt.datetime,
) -> Subscriber:
    """The subscriber after moving ``email`` to ``to``, only from ``only_from``."""
    after = store.subscribers.set_status(email, to, now=now, only_from=only_from, cause=cause)
    if after is None:  # removed meanwhile
        raise NotFound(f"{email} is not on the list")
    return after
