"""Domain values: frozen, keyword-only and free of I/O."""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Article",
    "BounceKind",
    "Issue",
    "JoinedVia",
    "LoadFailure",
    "LoadResult",
    "PickLimits",
    "RelatedStory",
    "RenderedIssue",
    "Subscriber",
    "SubscriberStatus",
    "title_key",
]


_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


def title_key(title: str) -> str:
    """What two titles share when they name the same story: letters and digits, case-folded."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    # A title of punctuation alone still needs a key of its own.
    return " ".join(_NOT_ALPHANUMERIC.sub(" ", folded).split()) or " ".join(folded.split())


@dataclass(frozen=True, kw_only=True, slots=True)
class RelatedStory:
    """A story the site lists under a lead article."""

    title: str
    kicker: str | None
    summary: str
    authors: tuple[str, ...] = ()
    publisher: str | None = None
    published: dt.date | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape ``digest load --json`` prints."""
        return {
            "title": self.title,
            "kicker": self.kicker,
            "summary": self.summary,
            "authors": list(self.authors),
            "publisher": self.publisher,
            "published": self.published.isoformat() if self.published else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelatedStory:
        """Inverse of :meth:`to_dict`."""
        published = data.get("published")
        return cls(
            title=data["title"],
            kicker=data.get("kicker"),
            summary=data.get("summary", ""),
            authors=tuple(data.get("authors", ())),
            publisher=data.get("publisher"),
            published=dt.date.fromisoformat(published) if published else None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Article:
    """A lead article parsed from one seed file."""

    source: str
    id: str
    title: str
    standfirst: str
    paragraphs: tuple[str, ...]
    related: tuple[RelatedStory, ...] = ()
    # The article's own byline, when the scrape kept it: who wrote it, and where.
    authors: tuple[str, ...] = ()
    publisher: str | None = None
    # The date printed in the article's own byline, when the scrape kept one.
    published: dt.date | None = None
    # When the seed file was last written; the picker's fallback for recency.
    modified: dt.datetime | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape ``digest load --json`` prints."""
        return {
            "source": self.source,
            "id": self.id,
            "title": self.title,
            "standfirst": self.standfirst,
            "paragraphs": list(self.paragraphs),
            "authors": list(self.authors),
            "publisher": self.publisher,
            "related": [story.to_dict() for story in self.related],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, published: dt.date | None = None) -> Article:
        """Inverse of :meth:`to_dict`; ``published`` is kept beside the JSON, not in it."""
        return cls(
            source=data["source"],
            id=data["id"],
            title=data["title"],
            standfirst=data.get("standfirst", ""),
            paragraphs=tuple(data.get("paragraphs", ())),
            related=tuple(RelatedStory.from_dict(story) for story in data.get("related", ())),
            # Issues frozen before bylines were kept have neither.
            authors=tuple(data.get("authors", ())),
            publisher=data.get("publisher"),
            published=published,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadFailure:
    """A seed file that could not be loaded, and why."""

    source: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadResult:
    """Everything one load produced: the good articles and the per-file failures."""

    articles: tuple[Article, ...]
    failures: tuple[LoadFailure, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class PickLimits:
    """How much one issue may hold."""

    max_articles: int = 5
    max_related: int = 6

    def __post_init__(self) -> None:
        if self.max_articles < 1 or self.max_related < 0:
            raise ValueError(
                "an issue holds at least one article and no negative number of stories"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class Issue:
    """One day's digest: its date and the articles picked for it, in order."""

    date: dt.date
    articles: tuple[Article, ...]

    @property
    def is_empty(self) -> bool:
        """True when there was nothing new to pick."""
        return not self.articles

    @property
    def related_count(self) -> int:
        """How many related stories the issue carries in all."""
        return sum(len(article.related) for article in self.articles)


class JoinedVia(enum.StrEnum):
    """How an address got onto the list: the first line of its consent evidence."""

    FORM = "form"
    IMPORT = "import"
    CLI = "cli"
    API = "api"


class SubscriberStatus(enum.StrEnum):
    """Whether a subscriber gets the digest."""

    # Signed up through the form, not yet confirmed: sent the confirmation mail only.
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    # Suppressed: the address does not exist (a hard bounce, or soft ones in a row), or
    # its reader reported the digest as spam. Only an operator's --force brings it back.
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class BounceKind(enum.StrEnum):
    """What a message that came back says of an address."""

    HARD = "hard"  # the address does not exist or takes no mail: suppressed at once
    SOFT = "soft"  # temporary (mailbox full, expired): suppressed after several in a row
    REFUSED = "refused"  # permanent, about the message or sender: the address stays
    COMPLAINT = "complaint"  # marked as spam (ARF): suppressed at once
    UNSUBSCRIBE = "unsubscribe"  # a mail to the List-Unsubscribe address
    IGNORED = "ignored"  # an automatic reply, a delivery report, a not-spam report


@dataclass(frozen=True, kw_only=True, slots=True)
class Subscriber:
    """Someone the digest is sent to."""

    id: int
    email: str
    name: str | None = None
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    # How the address got onto the list: "cli", or an import's label ("example").
    source: str | None = None
    # form, import, cli or api.
    joined_via: str | None = None
    confirmed_at: dt.datetime | None = None
    # No copies of issues dated before this day.
    paused_until: dt.date | None = None
    created_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderedIssue:
    """An issue rendered once for everyone, with per-recipient values left as markers.

    ``html`` is inlined already; :func:`digest.email.render.personalise` fills in the markers.
    """

    date: dt.date
    subject: str
    html: str
    text: str
    article_count: int
    related_count: int
