"""Choosing what goes into one day's issue: a pure function of the articles and the past."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Protocol, TypeVar

from digest.models import Article, Issue, PickLimits, RelatedStory, title_key

__all__ = ["Candidate", "choose_leads", "pick", "recency"]

_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def pick(
    articles: Iterable[Article],
    *,
    today: dt.date,
    already_featured: Collection[str],
    limits: PickLimits,
) -> Issue:
    """Today's issue: unfeatured articles, newest first, with their related stories trimmed.

    An article dated after ``today`` is not out yet and waits. The same article twice (two
    scrapes of one headline) counts once. A related story appears at most once in the issue
    and never when it is one of the issue's lead articles.
    """
    leads = choose_leads(
        articles, today=today, already_featured=already_featured, limit=limits.max_articles
    )
    taken = {title_key(article.title) for article in leads}
    picked = []
    for article in leads:
        related: list[RelatedStory] = []
        for story in article.related:
            if len(related) == limits.max_related:
                break
            key = title_key(story.title)
            if key not in taken:
                taken.add(key)
                related.append(story)
        picked.append(replace(article, related=tuple(related)))
    return Issue(date=today, articles=tuple(picked))


class Candidate(Protocol):
    """What choosing the leads looks at: an article, or what is kept of one."""

    @property
    def id(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def published(self) -> dt.date | None: ...

    @property
    def modified(self) -> dt.datetime | None: ...


_C = TypeVar("_C", bound=Candidate)


def choose_leads(
    candidates: Iterable[_C], *, today: dt.date, already_featured: Collection[str], limit: int
) -> list[_C]:
    """The issue's lead articles among ``candidates``: not featured before, not dated after
    ``today``, newest first (ties by source), the same id once, at most ``limit``."""
    eligible = sorted(
        (
            candidate
            for candidate in candidates
            if candidate.id not in already_featured
            and (candidate.published is None or candidate.published <= today)
        ),
        key=lambda candidate: candidate.source,
    )
    # Stable: equal dates keep source order.
    eligible.sort(key=lambda c: recency(c.published, c.modified), reverse=True)
    leads: dict[str, _C] = {}
    for candidate in eligible:
        if len(leads) == limit:
            break
        leads.setdefault(candidate.id, candidate)
    return list(leads.values())


def recency(published: dt.date | None, modified: dt.datetime | None) -> tuple[dt.date, dt.datetime]:
    """How new an article is: the date from the data when there is one, else the file's; the
    file's time breaks ties."""
    day = published or (modified.date() if modified else dt.date.min)
    return day, modified or _NEVER
