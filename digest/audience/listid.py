"""The list identifier: chosen at the first send and kept for the life of the list.

It names the list in every copy's List-Id header (RFC 2919) and inside every unsubscribe
token, and ``digest serve`` checks tokens against it. Derived from ``newsletter_name``
and the From domain, it would change with either, and every one-click link already in an
inbox would stop working. So the one the first send used is kept in the database and
used from then on; an operator may set another (``list_id``), and tokens naming any id
ever sent under are still honoured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from digest.content.text import slug

__all__ = [
    "ListIdStore",
    "ListNaming",
    "accepted_list_ids",
    "current_list_id",
    "derive_list_id",
    "effective_list_id",
    "list_id_for_send",
]


def derive_list_id(newsletter_name: str, sending_domain: str) -> str:
    """The RFC 2919 list identifier made from the name, e.g. ``the-digest.news.example.org``."""
    return f"{slug(newsletter_name) or 'digest'}.{sending_domain}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ListNaming:
    """What the settings say about the list id: the operator's own, and the derived one."""

    configured: str | None
    derived: str


class ListIdStore(Protocol):
    """What this module needs of the store's list ids (``store.list_ids``)."""

    def known(self) -> tuple[str, ...]:
        """Every list id copies went out under, the first first."""
        ...

    def remember(self, list_id: str, *, now: dt.datetime) -> bool:
        """Keep ``list_id`` as sent under; False if it was kept before."""
        ...


def effective_list_id(naming: ListNaming, known: Sequence[str]) -> str:
    """The id new copies carry: the ``list_id`` setting, else the first kept, else derived.

    ``known`` is every id sent under, the first first (:meth:`ListIdStore.known`).
    """
    if naming.configured:
        return naming.configured
    if known:
        return known[0]
    return naming.derived


def current_list_id(naming: ListNaming, records: ListIdStore) -> str:
    """The id for copies that are not a send (preview, dry run, test copies); keeps nothing."""
    return effective_list_id(naming, records.known())


def list_id_for_send(naming: ListNaming, records: ListIdStore, *, now: dt.datetime) -> str:
    """The id for a real send, kept in the store first if it is new there."""
    known = records.known()
    ident = effective_list_id(naming, known)
    if ident not in known:
        # Kept before any copy carries it, so digest serve honours every link sent.
        records.remember(ident, now=now)
    return ident


def accepted_list_ids(naming: ListNaming, records: ListIdStore) -> frozenset[str]:
    """Every id an unsubscribe token may name: each one sent under, and the current one."""
    known = records.known()
    return frozenset((*known, effective_list_id(naming, known)))
