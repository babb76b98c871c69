"""``digest check``: what would make today's send fail or land in spam, found before it.

Each check gives one line: ``ok``, ``warn``, ``FAIL`` or ``skip``, with what to do. The
settings and the message are checked from data; the relay is tried for real (connect,
EHLO, STARTTLS or TLS, AUTH, QUIT), the From domain's DNS is looked up (SPF, DMARC, the
DKIM key), the last issue's bounce and complaint rates are read, and SpamAssassin scores
the message where it is installed. Nothing is sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from digest.checks.domain import check_domain, resolver_for
from digest.checks.message import (
    GMAIL_CLIP_BYTES,
    SUBJECT_LIMIT,
    SampleCopy,
    check_message,
    sample_copy,
)
from digest.checks.outcome import Check, Status, failed
from digest.checks.relay import check_relay
from digest.checks.reputation import check_reputation
from digest.checks.settings import check_settings, reserved_domain
from digest.checks.spam import check_spam
from digest.settings import Settings
from digest.store import Store

__all__ = [
    "GMAIL_CLIP_BYTES",
    "SUBJECT_LIMIT",
    "Check",
    "SampleCopy",
    "Status",
    "check_domain",
    "check_message",
    "check_relay",
    "check_reputation",
    "check_settings",
    "check_spam",
    "failed",
    "reserved_domain",
    "resolver_for",
    "run_checks",
    "sample_copy",
]


async def run_checks(
    settings: Settings, date: dt.date, *, store: Store | None = None
) -> list[Check]:
    """Every check for the send of ``date``, in the order ``digest check`` prints them.

    The relay and the DNS are tried at the same time; the message is built off the event
    loop (it reads the database, ``store`` or the one the settings name, and renders
    templates), then scored.
    """
    found = check_settings(settings)
    network = asyncio.gather(check_relay(settings.smtp), check_domain(settings))
    try:
        copy, reputation = await asyncio.to_thread(_from_the_database, settings, date, store)
    finally:
        relay, domain = await network
    found += relay + domain + reputation
    if isinstance(copy, Check):
        return [*found, copy]
    found += check_message(copy)
    found.append(await check_spam(copy.data, timeout=settings.check.spam_timeout))
    return found


def _from_the_database(
    settings: Settings, date: dt.date, store: Store | None
) -> tuple[SampleCopy | Check, list[Check]]:
    if store is not None:
        return sample_copy(settings, store, date), check_reputation(store)
    with Store.open(settings.database_url) as opened:
        return sample_copy(settings, opened, date), check_reputation(opened)
