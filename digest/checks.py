"""``digest check``: what would make today's send fail or land in spam, found before it.

Each check gives one line: ``ok``, ``warn`` or ``FAIL``, with what to do. The settings
and the message are checked here from data; the relay is tried for real (connect, EHLO,
STARTTLS or TLS, AUTH, QUIT), sending nothing. Checking the From domain's DNS (SPF,
DMARC, the DKIM record) is not done yet.
"""

from __future__ import annotations

import datetime as dt
import html.parser
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from digest.audience.tokens import PREVIEW_KEY
from digest.clock import utc_now
from digest.delivery.mailer import RelayPool, connect, disconnect
from digest.email.render import personalise
from digest.errors import DigestError, RelayUnavailable, RelayUnusable
from digest.models import Subscriber
from digest.pipeline import build_issue, rendering, unsent_template
from digest.settings import Settings, SmtpSettings
from digest.store import Store

__all__ = [
    "GMAIL_CLIP_BYTES",
    "SUBJECT_LIMIT",
    "Check",
    "Status",
    "check_message",
    "check_relay",
    "check_settings",
    "failed",
]

# Gmail shows "[Message clipped]" and hides the rest (the unsubscribe link among it)
# past about this much HTML.
GMAIL_CLIP_BYTES = 102 * 1024
# Longer subjects are cut in most inbox lists.
SUBJECT_LIMIT = 78
# RFC 2606 and RFC 6761: names that are never anyone's real mail domain.
_RESERVED = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost", ".local")

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    """One check's outcome: what was checked, how it stands, and what to do."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        """``"FAIL  settings.from_address: …"``, as ``digest check`` prints it."""
        return f"{self.status:<5} {self.name}: {self.detail}"


def failed(checks: Sequence[Check]) -> bool:
    """True when any check failed: the send should not go."""
    return any(check.status == "FAIL" for check in checks)


def check_settings(settings: Settings) -> list[Check]:
    """What a real send needs of the settings, each named with the setting to change."""
    checks = []
    domain = settings.sending_domain.lower()
    reserved = (
        "." not in domain
        or domain in _RESERVED
        or domain.endswith(tuple("." + name for name in _RESERVED))
        or domain.endswith(_RESERVED_TLDS)
    )
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


async def check_relay(smtp: SmtpSettings) -> list[Check]:
    """Each relay tried as a send would use it: connect, EHLO, TLS, AUTH, then QUIT."""
    checks = []
    for transport in RelayPool(smtp).relays:
        relay = transport.relay
        try:
            client = await connect(transport.settings)
        except (RelayUnusable, RelayUnavailable) as failure:
            checks.append(Check(name=f"relay {relay}", status="FAIL", detail=str(failure)))
            continue
        await disconnect(client)
        steps = ["connected", "EHLO"]
        if smtp.security != "none":
            steps.append("TLS")
        if smtp.username:
            steps.append("AUTH")
        checks.append(Check(name=f"relay {relay}", status="ok", detail=", ".join(steps)))
    return checks


def check_message(settings: Settings, store: Store, date: dt.date) -> list[Check]:
    """The copy a send would build for ``date``, checked as mailbox providers read it."""
    try:
        built = build_issue(settings, store, date, freeze=False)
    except DigestError as exc:
        return [Check(name="message", status="FAIL", detail=str(exc))]
    if built.issue.is_empty:
        return [
            Check(
                name="message",
                status="warn",
                detail=f"nothing new to send for {date.isoformat()}: no message to check",
            )
        ]
    rendered = rendering(settings, store, built.issue)
    template = unsent_template(settings, store, rendered, now=utc_now())
    sample = Subscriber(id=0, email=settings.from_address)
    data = template.render(sample)
    page, _ = personalise(rendered, template.personal(sample))
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    checks = []
    size = len(rendered.html.encode("utf-8"))
    checks.append(
        Check(
            name="message.size",
            status="warn" if size > GMAIL_CLIP_BYTES else "ok",
            detail=f"HTML {size / 1024:.1f} KB"
            + (
                f": Gmail clips past {GMAIL_CLIP_BYTES // 1024} KB, hiding the rest and the "
                "unsubscribe link; set excerpt_paragraphs or max_articles lower"
                if size > GMAIL_CLIP_BYTES
                else ""
            ),
        )
    )
    subject = rendered.subject
    checks.append(
        Check(
            name="message.subject",
            status="warn" if len(subject) > SUBJECT_LIMIT else "ok",
            detail=f"{len(subject)} characters"
            + (
                f": over {SUBJECT_LIMIT}, cut in most inboxes"
                if len(subject) > SUBJECT_LIMIT
                else ""
            ),
        )
    )
    text = data.decode("ascii")
    parts = [kind for kind in ("text/plain", "text/html") if f"Content-Type: {kind}" in text]
    checks.append(
        Check(
            name="message.parts",
            status="ok" if len(parts) == 2 else "FAIL",
            detail=" and ".join(parts) or "no text or HTML part",
        )
    )
    missing = [
        name
        for name in ("List-Unsubscribe", "List-Unsubscribe-Post")
        if f"\r\n{name}:" not in "\r\n" + head
    ]
    checks.append(
        Check(
            name="message.unsubscribe",
            status="FAIL" if missing else "ok",
            detail=(
                f"{', '.join(missing)} missing (set DIGEST_PUBLIC_URL for one-click)"
                if missing
                else "List-Unsubscribe and List-Unsubscribe-Post present"
            ),
        )
    )
    links = _Links()
    links.feed(page)
    bad = sorted(
        {
            link
            for link in links.hrefs
            if not link.startswith(("https://", "mailto:", "#")) or "localhost" in link.lower()
        }
    )
    checks.append(
        Check(
            name="message.links",
            status="FAIL" if bad else "ok",
            detail=(
                "not absolute https, or to localhost: " + ", ".join(bad[:5])
                if bad
                else f"{len(links.hrefs)} links, all https or mailto"
            ),
        )
    )
    checks.append(
        Check(
            name="message.images",
            status="warn" if links.images_without_alt else "ok",
            detail=(
                f"{links.images_without_alt} images without alt text"
                if links.images_without_alt
                else f"{links.images} images, each with alt text"
            ),
        )
    )
    return checks


class _Links(html.parser.HTMLParser):
    """The links and images of an HTML part."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images = 0
        self.images_without_alt = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href") is not None:
            self.hrefs.append(str(values["href"]).strip())
        if tag == "img":
            self.images += 1
            if values.get("alt") is None:
                self.images_without_alt += 1
