"""Choosing what goes into one day's issue: a pure function of the articles and the past."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import replace

from digest.models import Article, Issue, PickLimits, RelatedStory, title_key

__all__ = ["pick", "recency"]

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
    candidates = sorted(
        (
            article
            for article in articles
            if article.id not in already_featured
            and (article.published is None or article.published <= today)
        ),
        key=lambda article: article.source,
    )
    # Stable: equal dates keep source order.
    candidates.sort(key=lambda article: recency(article.published, article.modified), reverse=True)

    leads: dict[str, Article] = {}
    for article in candidates:
        if len(leads) == limits.max_articles:
            break
        leads.setdefault(article.id, article)

    taken = {title_key(article.title) for article in leads.values()}
    picked = []
    for article in leads.values():
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


def recency(published: dt.date | None, modified: dt.datetime | None) -> tuple[dt.date, dt.datetime]:
    """How new an article is: the date from the data when there is one, else the file's; the
    file's time breaks ties."""
    day = published or (modified.date() if modified else dt.date.min)
    return day, modified or _NEVER
