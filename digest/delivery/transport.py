"""The transport a send goes through, chosen from the settings: the SMTP relays, or the
local outbox when none is set; and what a send through a real relay requires first."""

from __future__ import annotations

from digest.audience.tokens import PREVIEW_KEY, required_key
from digest.delivery.mailer import OutboxTransport, RelayPool, Transport
from digest.errors import ConfigError
from digest.options import dkim_key
from digest.settings import Settings

__all__ = ["check_ready_for_relay", "destination", "transport_for", "uses_preview_key"]


def check_ready_for_relay(settings: Settings) -> None:
    """Refuse a send through a real relay without what its links need."""
    required_key(settings.secret_key, needed_by="a real send")
    if settings.public_url is None:
        raise ConfigError(
            "DIGEST_PUBLIC_URL is not set: a real send needs it for one-click "
            "unsubscribe links (RFC 8058; Gmail and Yahoo require them)"
        )
    # A DKIM key that cannot sign is refused before the issue is frozen, not by every copy.
    dkim_key(settings)


def transport_for(settings: Settings) -> tuple[Transport, str]:
    """The transport a send uses and the key that signs its links.

    The SMTP relays when ``smtp.host`` or ``smtp.hosts`` is set, else the local outbox.
    Nothing leaves the machine through the outbox, so the preview key signs its links
    when no secret key is set (see :func:`uses_preview_key`).
    """
    if settings.smtp.relays:
        check_ready_for_relay(settings)
        assert settings.secret_key is not None
        return RelayPool(settings.smtp), settings.secret_key.get_secret_value()
    key = settings.secret_key.get_secret_value() if settings.secret_key else PREVIEW_KEY
    return OutboxTransport(settings.outbox_dir), key


def uses_preview_key(settings: Settings) -> bool:
    """True when copies go to the outbox signed with the preview key."""
    return not settings.smtp.relays and settings.secret_key is None


def destination(settings: Settings) -> str:
    """Where a send goes, for messages: "smtp (host:port)" or "outbox (folder)"."""
    if settings.smtp.relays:
        return "smtp (" + ", ".join(f"{host}:{port}" for host, port in settings.smtp.relays) + ")"
    return f"outbox ({settings.outbox_dir})"
