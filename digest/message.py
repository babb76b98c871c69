"""One subscriber's copy of an issue as a MIME message, built as EMAIL.md asks."""

from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from digest.errors import DigestError
from digest.models import RenderedIssue, Subscriber
from digest.render import Personal, personalise
from digest.settings import Settings
from digest.tokens import unsubscribe_token

__all__ = [
    "WIRE_POLICY",
    "MessageError",
    "build_message",
    "list_id",
    "sending_domain",
    "unsubscribe_links",
]

_SLUG_NOISE = re.compile(r"[^a-z0-9]+")
# How messages are written out. Header lines may run to RFC 5322's hard limit of 998:
# folded at 78, a List-Unsubscribe URL longer than a line would be turned into encoded
# words, which no client reads as a URL. Bodies are quoted-printable, lines of 76.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)


class MessageError(DigestError):
    """A message could not be built from the data it was given."""


def sending_domain(settings: Settings) -> str:
    """The domain of the From address: Message-IDs and the List-Id live under it."""
    return settings.from_address.rpartition("@")[2]


def list_id(settings: Settings) -> str:
    """The RFC 2919 list identifier, e.g. ``the-digest.news.example.org``."""
    slug = _SLUG_NOISE.sub("-", settings.newsletter_name.casefold()).strip("-") or "digest"
    return f"{slug}.{sending_domain(settings)}"


def unsubscribe_links(
    settings: Settings, subscriber: Subscriber, *, secret_key: str
) -> tuple[str | None, str]:
    """The one-click https URL (only with a public URL) and the mailto URL for a subscriber."""
    token = unsubscribe_token(secret_key, subscriber_id=subscriber.id, list_id=list_id(settings))
    https = f"{settings.public_url}/unsubscribe/{token}" if settings.public_url else None
    # The reply's own From says who is leaving; the address is not put in the URL.
    mailto = f"mailto:{settings.from_address}?subject=unsubscribe"
    return https, mailto


def build_message(
    rendered: RenderedIssue,
    subscriber: Subscriber,
    settings: Settings,
    *,
    secret_key: str,
    now: dt.datetime,
    test: bool = False,
) -> EmailMessage:
    """The complete message for ``subscriber``: text part first, then HTML, every header set."""
    https, mailto = unsubscribe_links(settings, subscriber, secret_key=secret_key)
    recipient = _address(subscriber.name, subscriber.email, "the subscriber's address")
    html, text = personalise(
        rendered, Personal(unsubscribe_url=https or mailto, recipient=str(recipient))
    )
    message = EmailMessage()
    message["From"] = _address(
        settings.from_name or settings.newsletter_name, settings.from_address, "from_address"
    )
    message["To"] = recipient
    message["Subject"] = _one_line(("[TEST] " if test else "") + rendered.subject, "the subject")
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sending_domain(settings))
    message["List-Id"] = (
        f"{_one_line(settings.newsletter_name, 'newsletter_name')} <{list_id(settings)}>"
    )
    if https:
        message["List-Unsubscribe"] = f"<{https}>, <{mailto}>"
        # RFC 8058: the https URL takes a POST with this body and unsubscribes at once.
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        message["List-Unsubscribe"] = f"<{mailto}>"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message


def _address(name: str | None, address: str, what: str) -> Address:
    _one_line(address, what)
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        raise MessageError(f"{what} {address!r} is not an email address")
    return Address(
        display_name=_one_line(name or "", f"the name for {address}"), username=local, domain=domain
    )


def _one_line(value: str, what: str) -> str:
    # A line break in a header value would end the header and start one of the data's.
    if "\r" in value or "\n" in value:
        raise MessageError(f"{what} {value!r} contains a line break; it cannot go in a header")
    return value
