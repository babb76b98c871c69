"""An issue as its templates see it: the masthead, the list of stories, each lead article's
excerpt, byline and reading time, typographic text, and the links to the web archive.

Every link goes to a page digest serves (``public_url``) or to a URL the settings give
(``article_url_template``); none is made up. Without either, an article is shown whole,
since there would be nowhere to continue reading.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from digest.content.excerpt import excerpt, reading_minutes
from digest.content.loader import article_id
from digest.content.text import slug
from digest.email.markers import PREFERENCES_MARK, RECIPIENT_MARK, UNSUBSCRIBE_MARK
from digest.email.note import note_html
from digest.email.typography import keep_last_words_together, smarten
from digest.models import Article, Issue

__all__ = [
    "DEFAULT_EXCERPT_WORDS",
    "Brand",
    "RenderOptions",
    "article_slugs",
    "article_url",
    "byline_text",
    "issue_context",
]

_SERIF = "Georgia, 'Times New Roman', serif"
_SANS = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
# About a minute's reading per lead article: a digest, not the articles themselves.
DEFAULT_EXCERPT_WORDS = 120


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderOptions:
    """What rendering an issue needs of the settings, and nothing else."""

    newsletter_name: str
    # Words of each lead article shown before "Continue reading"; 0 shows them all.
    excerpt_words: int = DEFAULT_EXCERPT_WORDS
    # Paragraphs of each article shown at most; None: as many as the words allow.
    excerpt_paragraphs: int | None = None
    article_url_template: str | None = None
    public_url: str | None = None
    postal_address: str | None = None
    brand: Brand = field(default_factory=lambda: Brand())


@dataclass(frozen=True, kw_only=True, slots=True)
class Brand:
    """The look the ``[brand]`` settings give: colours, faces, and a logo instead of the
    wordmark (its https URL, size and alternative text)."""

    accent_color: str = "#8c1d18"
    # The accent in a reader's dark mode: derived from accent_color by the settings.
    dark_accent_color: str = "#e4645f"
    background_color: str = "#f1efe9"
    serif: bool = True
    logo_url: str | None = None
    logo_width: int = 200
    logo_height: int = 40
    logo_alt: str = ""

    @property
    def text_font(self) -> str:
        """The face of headlines and article text."""
        return _SERIF if self.serif else _SANS

    @property
    def ui_font(self) -> str:
        """The face of everything else: labels, bylines, the footer."""
        return _SANS


def article_url(article: Article, template: str | None) -> str | None:
    """The article's URL from the ``article_url_template`` setting, or None: never invented."""
    if template is None:
        return None
    return template.format(id=article.id, slug=slug(article.title))


def article_slugs(articles: Sequence[Article]) -> list[str]:
    """Each article's name in its archive page's path (/issues/DATE/SLUG), unique in the issue."""
    seen: dict[str, int] = {}
    slugs = []
    for article in articles:
        base = slug(article.title) or "article"
        seen[base] = seen.get(base, 0) + 1
        slugs.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return slugs


def byline_text(authors: Sequence[str], publisher: str | None, published: dt.date | None) -> str:
    """ "By A and B, Publisher, 14 March 2025", from whatever parts there are."""
    parts = []
    if authors:
        names = list(authors)
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"By {who}")
    if publisher:
        parts.append(publisher)
    if published:
        parts.append(f"{published.day} {published:%B %Y}")
    return ", ".join(parts)


def issue_context(
    issue: Issue,
    options: RenderOptions,
    *,
    number: int | None = None,
    note: str | None = None,
    earlier: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the templates get for ``issue``; ``number`` is its count among issues sent,
    ``note`` the editor's note in Markdown, ``earlier`` the archive page of each related
    story that led an earlier issue, by article id."""
    earlier = earlier or {}
    lead = issue.articles[0]
    public_url = options.public_url
    issue_url = f"{public_url}/issues/{issue.date.isoformat()}" if public_url else None
    articles = []
    for index, (article, name) in enumerate(
        zip(issue.articles, article_slugs(issue.articles), strict=True), start=1
    ):
        url = (
            f"{issue_url}/{name}"
            if issue_url
            else article_url(article, options.article_url_template)
        )
        paragraphs = article.paragraphs[: options.excerpt_paragraphs]
        # Only cut what a reader can finish elsewhere.
        shown = excerpt(paragraphs, options.excerpt_words if url else 0)
        title = smarten(article.title)
        articles.append(
            {
                "anchor": f"story-{index}",
                "title": title,
                "headline": keep_last_words_together(title),
                "standfirst": smarten(article.standfirst),
                "byline": byline_text(article.authors, article.publisher, article.published),
                "reading_minutes": reading_minutes(
                    article.paragraphs, standfirst=article.standfirst
                ),
                "paragraphs": [smarten(paragraph) for paragraph in shown.paragraphs],
                "truncated": shown.truncated or len(paragraphs) < len(article.paragraphs),
                "url": url,
                "related": [
                    {
                        "title": smarten(story.title),
                        "kicker": story.kicker,
                        "summary": smarten(story.summary),
                        "byline": byline_text(story.authors, story.publisher, story.published),
                        # The seeds carry no links for related stories: only one that led
                        # an earlier issue has a page of ours.
                        "url": earlier.get(article_id(story.title)),
                    }
                    for story in article.related
                ],
            }
        )
    return {
        # As the seed has it: a Subject in ASCII stays readable in every client's list,
        # and needs no encoded words.
        "subject": f"{options.newsletter_name}, {issue.date.day} {issue.date:%B}: {lead.title}",
        "preheader": smarten(lead.standfirst or lead.title),
        # Short, as a page title should be (the subject names the lead story too).
        "page_title": f"{options.newsletter_name}, {issue.date.day} {issue.date:%B %Y}",
        "newsletter_name": options.newsletter_name,
        "brand": options.brand,
        "issue_date": issue.date,
        "issue_date_text": f"{issue.date:%A} {issue.date.day} {issue.date:%B %Y}",
        "issue_number": number,
        "note_html": Markup(note_html(note)) if note else None,
        # The Markdown itself reads as text: a paragraph per block, wrapped by the template.
        "note_paragraphs": [block.strip() for block in note.split("\n\n") if block.strip()]
        if note
        else [],
        "articles": articles,
        "web_url": issue_url,
        "postal_address": options.postal_address,
        "unsubscribe_url": UNSUBSCRIBE_MARK,
        "recipient": RECIPIENT_MARK,
        # The preferences page is served at the public URL: without one, no link.
        "preferences_url": PREFERENCES_MARK if public_url else None,
    }
