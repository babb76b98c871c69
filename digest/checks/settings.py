"""What a real send needs of the settings, each named with the setting to change."""

from __future__ import annotations

from digest.audience.tokens import PREVIEW_KEY
from digest.checks.outcome import Check
from digest.settings import Settings

__all__ = ["check_settings", "reserved_domain"]

# RFC 2606 and RFC 6761: names that are never anyone's real mail domain.
_RESERVED = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost", ".local")


def reserved_domain(domain: str) -> bool:
    """True for a name that is no one's real mail domain (``localhost``, ``example.org``)."""
    domain = domain.lower().rstrip(".")
    return (
        "." not in domain
        or domain in _RESERVED
        or domain.endswith(tuple("." + name for name in _RESERVED))
        or domain.endswith(_RESERVED_TLDS)
    )


def check_settings(settings: Settings) -> list[Check]:
    """What a real send needs of the settings, each named with the setting to change."""
    checks = []
    reserved = reserved_domain(settings.sending_domain)
    checks.append(
        Check(
            name="settings.from_address",
            status="FAIL" if reserved else "ok",
            detail=(
                f"{settings.from_address} is not on a real domain: set DIGEST_FROM_ADDRESS "
                "to an address on your own domain"
                if reserved
                else settings.from_address
            ),
        )
    )
    checks.append(
        Check(
            name="settings.postal_address",
            status="ok" if settings.postal_address else "FAIL",
            detail=settings.postal_address
            or "not set: bulk mail must carry the sender's postal address (CAN-SPAM); "
            "set postal_address",
        )
    )
    checks.append(
        Check(
            name="settings.public_url",
            status="ok" if settings.public_url else "FAIL",
            detail=settings.public_url
            or "not set: one-click unsubscribe links need it (RFC 8058; Gmail and Yahoo "
            "require them); set DIGEST_PUBLIC_URL to where digest serve answers",
        )
    )
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    checks.append(
        Check(
            name="settings.secret_key",
            status="ok" if key and key != PREVIEW_KEY else "FAIL",
            detail="set" if key and key != PREVIEW_KEY else "not set: set DIGEST_SECRET_KEY",
        )
    )
    if not settings.smtp.relays:
        checks.append(
            Check(
                name="settings.smtp",
                status="warn",
                detail="no relay set (smtp.host): copies go to the local outbox only",
            )
        )
    return checks
