"""A relay's event webhook, Mailgun's: its signature checked, its events read as findings.

Mailgun signs each POST with HMAC-SHA256 of ``timestamp + token`` under the webhook
signing key (https://documentation.mailgun.com, "Securing Webhooks"). The token also
names the event: one already recorded is not applied twice, so a replayed request, or
Mailgun's own retry, changes nothing. Only ``failed``, ``complained`` and
``unsubscribed`` matter to the list; the others (delivered, opened, …) are answered and
dropped.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from digest.bounces.classify import classify
from digest.bounces.parse import Finding, Returned
from digest.models import BounceKind

__all__ = ["MailgunEvent", "read_mailgun"]


@dataclass(frozen=True, kw_only=True, slots=True)
class MailgunEvent:
    """One verified webhook request: what to record, or nothing (an event of no interest)."""

    returned: Returned | None
    # Names the event, once: the SHA-256 of the signed token.
    digest: str


def read_mailgun(payload: Any, signing_key: str) -> MailgunEvent | None:
    """The event of a webhook request body (JSON, parsed), or None when its signature does
    not verify (or it has none)."""
    if not isinstance(payload, Mapping):
        return None
    signature = payload.get("signature")
    if not isinstance(signature, Mapping):
        return None
    timestamp, token, given = (
        str(signature.get(name, "")) for name in ("timestamp", "token", "signature")
    )
    if not (timestamp and token and given):
        return None
    expected = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        return None
    digest = hashlib.sha256(f"mailgun:{token}".encode()).hexdigest()
    data = payload.get("event-data")
    if not isinstance(data, Mapping):
        return MailgunEvent(returned=None, digest=digest)
    return MailgunEvent(returned=_returned(data), digest=digest)


def _returned(data: Mapping[str, Any]) -> Returned | None:
    event = str(data.get("event", ""))
    recipient = str(data.get("recipient", "")) or None
    headers = _mapping(_mapping(data.get("message")).get("headers"))
    message_id = str(headers.get("message-id", "")).strip() or None
    if message_id and not message_id.startswith("<"):
        message_id = f"<{message_id}>"  # Mailgun gives it without its angle brackets
    if event == "failed":
        status = _mapping(data.get("delivery-status"))
        words = " ".join(
            str(status.get(name, ""))
            for name in ("code", "enhanced-code", "message", "description")
        ).strip()
        found, code = classify(None, words)
        if data.get("severity") == "temporary":
            kind = BounceKind.SOFT
        elif data.get("reason") == "suppress-bounce":
            kind = BounceKind.HARD  # Mailgun bounced this address before, and says so
        else:
            kind = found or BounceKind.REFUSED
        finding = Finding(kind=kind, address=recipient, status=code, reason=words or "failed")
    elif event == "complained":
        finding = Finding(
            kind=BounceKind.COMPLAINT, address=recipient, reason="complaint (Mailgun)"
        )
    elif event == "unsubscribed":
        finding = Finding(
            kind=BounceKind.UNSUBSCRIBE, address=recipient, reason="unsubscribed (Mailgun)"
        )
    else:
        return None
    return Returned(
        form="webhook",
        signed=True,
        message_id=str(data.get("id", "")) or None,
        original_message_id=message_id,
        findings=(finding,),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
