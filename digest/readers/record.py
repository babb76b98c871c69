"""Everything held about one address, as data: what ``digest subscribers show`` prints and
``export`` (and the preference page's "download my data") writes as JSON (GDPR articles
15 and 20)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from digest.errors import NotFound
from digest.store import Store

__all__ = ["FORMAT", "held_about"]

# Names the shape of the export, so a reader (or another tool) knows what it holds.
FORMAT = "digest-subscriber-export/1"


def _when(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def held_about(store: Store, email: str, *, now: dt.datetime) -> dict[str, Any]:
    """Everything the database holds about ``email``: the subscriber, their consents,
    history, deliveries and what came back. Raises NotFound when the address is not on
    the list."""
    subscriber = store.subscribers.find(email)
    if subscriber is None:
        raise NotFound(f"{email} is not on the list")
    return {
        "format": FORMAT,
        "exported_at": now.isoformat(),
        "subscriber": {
            "email": subscriber.email,
            "name": subscriber.name,
            "status": str(subscriber.status),
            "joined_via": subscriber.joined_via,
            "source": subscriber.source,
            "joined_at": _when(subscriber.created_at),
            "confirmed_at": _when(subscriber.confirmed_at),
            "paused_until": _when(subscriber.paused_until),
        },
        "consents": [
            {
                "method": consent.method,
                "at": _when(consent.created_at),
                "confirmed_at": _when(consent.confirmed_at),
                "consent_text": consent.text,
                "consent_text_sha256": consent.text_sha256,
                "ip": consent.ip,
                "ip_hash": consent.ip_hash,
                "user_agent": consent.user_agent,
                "file": consent.file_name,
                "note": consent.note,
            }
            for consent in store.consent.of(subscriber.id)
        ],
        "history": [
            {
                "at": _when(event.at),
                "kind": event.kind,
                "status": event.status,
                "cause": event.cause,
            }
            for event in store.consent.history(subscriber.id)
        ],
        "deliveries": [
            {
                "issue": _when(delivery.issue_date),
                "status": delivery.status,
                "attempts": delivery.attempts,
                "sent_at": _when(delivery.sent_at),
                "sent_via": delivery.sent_via,
                "last_error": delivery.last_error,
                "message_id": delivery.message_id,
            }
            for delivery in store.deliveries.to_address(subscriber.email)
        ],
        "came_back": [
            {
                "at": _when(event.created_at),
                "issue": _when(event.issue_date),
                "kind": str(event.kind),
                "status": event.status,
                "reason": event.reason,
                "traced_by": event.matched_by,
                "changed_status": event.applied,
            }
            for event in store.returns.events(email_key=subscriber.email.casefold())
        ],
        # What the operator did to the address at /admin (not where they did it from).
        "operator_actions": [
            {"at": _when(action.at), "action": action.action, "detail": action.detail}
            for action in store.operator.about(subscriber.email)
        ],
    }
