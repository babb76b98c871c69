"""The copy a send would build, checked as mailbox providers read it."""

from __future__ import annotations

import datetime as dt
import html.parser
from dataclasses import dataclass

from digest.checks.outcome import Check
from digest.clock import utc_now
from digest.email.render import personalise
from digest.errors import DigestError
from digest.models import RenderedIssue, Subscriber
from digest.pipeline import build_issue, rendering, unsent_template
from digest.settings import Settings
from digest.store import Store

__all__ = ["GMAIL_CLIP_BYTES", "SUBJECT_LIMIT", "SampleCopy", "check_message", "sample_copy"]

# Gmail shows "[Message clipped]" and hides the rest (the unsubscribe link among it)
# past about this much HTML.
GMAIL_CLIP_BYTES = 102 * 1024
# Longer subjects are cut in most inbox lists.
SUBJECT_LIMIT = 78


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleCopy:
    """One copy of the day's issue as a send would build it, for a sample reader."""

    rendered: RenderedIssue
    data: bytes  # the whole message, as handed to the relay
    page: str  # its HTML part, personalised


def sample_copy(settings: Settings, store: Store, date: dt.date) -> SampleCopy | Check:
    """The copy for the From address, or the check that says why there is none."""
    try:
        built = build_issue(settings, store, date, freeze=False)
        if built.issue.is_empty:
            return Check(
                name="message",
                status="warn",
                detail=f"nothing new to send for {date.isoformat()}: no message to check",
            )
        rendered = rendering(settings, store, built.issue)
        template = unsent_template(settings, store, rendered, now=utc_now())
        sample = Subscriber(id=0, email=settings.from_address)
        page, _ = personalise(rendered, template.personal(sample))
        data = template.render(sample)
    except DigestError as exc:
        return Check(name="message", status="FAIL", detail=str(exc))
    return SampleCopy(rendered=rendered, data=data, page=page)


def check_message(copy: SampleCopy) -> list[Check]:
    """Size, subject, parts, unsubscribe headers, links and images of the copy."""
    rendered, data, page = copy.rendered, copy.data, copy.page
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
                else f"{len(links.hrefs)} link{'s' * (len(links.hrefs) != 1)}, all https or mailto"
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
