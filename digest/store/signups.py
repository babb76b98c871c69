"""Signup attempts, counted for rate limits, and erased addresses, kept as keyed hashes.

Both hold keyed hashes only (made in :mod:`digest.audience.tokens`), never an IP or an
address: a rate limit needs to recognise a value, not to know it, and an erased address
must be recognised when it comes back without being kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update

from digest.store.clock import aware
from digest.store.operator import ERASED
from digest.store.tables import (
    admin_actions,
    bounce_events,
    deliveries,
    erasures,
    signup_attempts,
    subscribers,
)

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["ErasureRecords", "SignupRecords"]

_BATCH = 1000


class SignupRecords:
    """Signup attempts per keyed hash of an IP or address, shared by every server process."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def count_since(self, scope: str, key: str, since: dt.datetime) -> int:
        """Attempts for ``key`` in ``scope`` ("ip", "address") since ``since``."""
        query = (
            select(func.count())
            .select_from(signup_attempts)
            .where(
                signup_attempts.c.scope == scope,
                signup_attempts.c.key == key,
                signup_attempts.c.created_at >= since,
            )
        )
        with self._db.reading() as connection:
            return int(connection.scalar(query) or 0)

    def record(self, keys: dict[str, str], outcome: str, *, now: dt.datetime) -> None:
        """Count one attempt under each of ``keys`` (scope → keyed hash), with its outcome."""
        with self._db.writing() as connection:
            if keys:
                connection.execute(
                    signup_attempts.insert(),
                    [
                        {"scope": scope, "key": key, "outcome": outcome, "created_at": now}
                        for scope, key in keys.items()
                    ],
                )

    def prune(self, before: dt.datetime) -> int:
        """Forget attempts older than ``before``; how many."""
        with self._db.writing() as connection:
            result = connection.execute(
                delete(signup_attempts).where(signup_attempts.c.created_at < before)
            )
        return int(result.rowcount or 0)


class ErasureRecords:
    """Addresses erased at their reader's request: a keyed hash and the time, nothing else."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def erase(self, email: str, address_hash: str, *, now: dt.datetime) -> bool:
        """Delete everything that names ``email`` and keep its hash; False if nothing named it.

        The subscriber's row goes (with its consents and history), and so do the
        deliveries and bounce events keyed by the address. Issues' counts lose its copies.
        The operator's actions on it stay in their log, without the address.
        """
        key = email.casefold()
        with self._db.writing() as connection:
            ids = list(
                connection.scalars(select(subscribers.c.id).where(subscribers.c.email_key == key))
            )
            found = connection.execute(
                delete(bounce_events).where(
                    (bounce_events.c.email_key == key) | bounce_events.c.subscriber_id.in_(ids)
                )
            ).rowcount
            found += connection.execute(
                delete(subscribers).where(subscribers.c.email_key == key)
            ).rowcount
            found += connection.execute(
                delete(deliveries).where(deliveries.c.email_key == key)
            ).rowcount
            found += connection.execute(
                update(admin_actions)
                .where(func.lower(admin_actions.c.target) == key)
                .values(target=ERASED)
            ).rowcount
            known = connection.scalar(
                select(erasures.c.address_hash).where(erasures.c.address_hash == address_hash)
            )
            if known is None:
                connection.execute(
                    erasures.insert().values(address_hash=address_hash, erased_at=now)
                )
        return bool(found)

    def forget(self, address_hash: str) -> None:
        """Drop an erasure: its reader asked to come back."""
        with self._db.writing() as connection:
            connection.execute(delete(erasures).where(erasures.c.address_hash == address_hash))

    def any(self) -> bool:
        """True when some address was ever erased."""
        with self._db.reading() as connection:
            return connection.scalar(select(erasures.c.address_hash).limit(1)) is not None

    def erased_at(self, hashes: Iterable[str]) -> dict[str, dt.datetime]:
        """Of ``hashes``, those of erased addresses, with when."""
        wanted = list(set(hashes))
        found: dict[str, dt.datetime] = {}
        for start in range(0, len(wanted), _BATCH):
            with self._db.reading() as connection:
                rows = connection.execute(
                    select(erasures.c.address_hash, erasures.c.erased_at).where(
                        erasures.c.address_hash.in_(wanted[start : start + _BATCH])
                    )
                ).all()
            for address_hash, erased_at in rows:
                when = aware(erased_at)
                assert when is not None
                found[address_hash] = when
        return found
