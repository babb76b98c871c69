"""The mails a reader gets outside the issues: the confirmation of a signup and the
welcome once confirmed, rendered from their own templates and sent at once through the
configured transport (the relay, or the local outbox)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from functools import partial

from digest.audience.listid import current_list_id
from digest.audience.tokens import Purpose, subscriber_token
from digest.delivery.retries import with_retries
from digest.delivery.transport import transport_for
from digest.email.message import MessageOptions, personal_links
from digest.email.notice import build_notice
from digest.email.render import Renderer
from digest.errors import DeliveryFailed, DigestError
from digest.models import Subscriber
from digest.options import brand, dkim_key, list_naming, message_options
from digest.settings import Settings
from digest.store import Store

log = logging.getLogger(__name__)

# Anything shaped like an address, in a relay's reply that is logged.
_ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"']+")

__all__ = ["confirm_url", "confirmation_mail", "send_notice", "welcome_mail"]


def _options(settings: Settings, store: Store) -> MessageOptions:
    return message_options(settings, list_id=current_list_id(list_naming(settings), store.list_ids))


def confirm_url(
    settings: Settings, store: Store, subscriber: Subscriber, *, secret_key: str, now: dt.datetime
) -> str:
    """The subscriber's confirmation link, signed with the time it is made."""
    token = subscriber_token(
        secret_key,
        Purpose.CONFIRM,
        subscriber_id=subscriber.id,
        list_id=_options(settings, store).list_id,
        email=subscriber.email,
        issued_at=now,
    )
    return f"{settings.public_url}/confirm/{token}"


def _hours(hours: float) -> str:
    whole = round(hours)
    if whole % 24 == 0 and whole >= 48:
        return f"{whole // 24} days"
    return "1 hour" if whole == 1 else f"{whole:g} hours" if whole else f"{hours:g} hours"


def confirmation_mail(
    settings: Settings,
    store: Store,
    subscriber: Subscriber,
    *,
    secret_key: str,
    now: dt.datetime,
    renderer: Renderer | None = None,
) -> bytes:
    """The confirmation mail for a signup: one link, no List-Unsubscribe (not a list mail)."""
    renderer = renderer or Renderer(settings.templates_dir)
    notice = renderer.render_notice(
        "confirm",
        f"Confirm your subscription to {settings.newsletter_name}",
        {
            "newsletter_name": settings.newsletter_name,
            "brand": brand(settings),
            "confirm_url": confirm_url(settings, store, subscriber, secret_key=secret_key, now=now),
            "confirm_hours_text": _hours(settings.signup.confirm_hours),
            "pending_days": settings.signup.pending_days,
            "postal_address": settings.postal_address,
        },
    )
    return build_notice(
        notice,
        _options(settings, store),
        to_address=subscriber.email,
        to_name=subscriber.name,
        now=now,
        dkim=dkim_key(settings),
    )


def welcome_mail(
    settings: Settings,
    store: Store,
    subscriber: Subscriber,
    *,
    secret_key: str,
    now: dt.datetime,
    renderer: Renderer | None = None,
) -> bytes:
    """The welcome mail of a confirmed subscriber, with their unsubscribe and preference links."""
    renderer = renderer or Renderer(settings.templates_dir)
    options = _options(settings, store)
    https, mailto, preferences = personal_links(options, subscriber, secret_key=secret_key)
    public_url = settings.public_url
    notice = renderer.render_notice(
        "welcome",
        f"Welcome to {settings.newsletter_name}",
        {
            "newsletter_name": settings.newsletter_name,
            "brand": brand(settings),
            "archive_url": f"{public_url}/issues" if public_url else None,
            "preferences_url": preferences,
            "unsubscribe_url": https or mailto,
            "postal_address": settings.postal_address,
        },
    )
    return build_notice(
        notice,
        options,
        to_address=subscriber.email,
        to_name=subscriber.name,
        now=now,
        unsubscribe=(https, mailto),
        dkim=dkim_key(settings),
    )


async def send_notice(settings: Settings, data: bytes, recipient: str, *, what: str) -> bool:
    """Send one mail to ``recipient`` with the send's retries; False (logged) if it failed.

    ``what`` names the mail in the log ("confirmation"); the address is not logged.
    """
    transport, _ = transport_for(settings)
    sender = settings.bounce_address or settings.from_address
    try:
        await with_retries(
            settings.smtp, partial(transport.send, data, sender=sender, recipient=recipient)
        )
    except DeliveryFailed as exc:
        # Its message names the recipient, and a relay's reply often quotes it too.
        reason = _ADDRESS.sub("<address>", exc.reason or type(exc).__name__)
        log.warning("%s mail not sent: %s", what, reason)
        return False
    except DigestError as exc:
        # The outbox or the relay set-up: a reader's signup must not fail for it.
        log.warning("%s mail not sent: %s", what, exc)
        return False
    finally:
        await transport.close()
    return True
