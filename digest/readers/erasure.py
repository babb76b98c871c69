"""Erasure at a reader's request (GDPR article 17): everything that names the address goes,
and only a keyed hash of it stays, with the date, so that it is never added back silently."""

from __future__ import annotations

import datetime as dt
import logging

from digest.audience.tokens import keyed_hash
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = ["address_hash", "erase"]


def address_hash(secret_key: str, email: str) -> str:
    """The keyed hash an erased address is kept as (and a signup attempt counted under)."""
    return keyed_hash(secret_key, email, purpose="address")


def erase(store: Store, email: str, *, secret_key: str, now: dt.datetime, by: str) -> bool:
    """Erase ``email``: its subscriber, consents, history, deliveries and bounce events.

    ``by`` says who asked ("the reader, on the preferences page"), for the log, which
    never names the address. False when nothing named it (its hash is kept all the same).
    """
    found = store.erasures.erase(email, address_hash(secret_key, email), now=now)
    log.info("an address was erased at the request of %s", by)
    return found
