"""The picker: a pure function of articles, the date and what earlier issues featured."""

from __future__ import annotations

import datetime as dt

import pytest

from digest.content.loader import article_id
from digest.content.picker import pick
from digest.models import Article, PickLimits, RelatedStory

TODAY = dt.date(2026, 11, 23)


def story(title: str) -> RelatedStory:
    return RelatedStory(title=title, kicker=None, summary=f"About {title}")


def article(
    title: str,
    *,
    modified: dt.datetime | None = None,
    published: dt.date | None = None,
    related: tuple[str, ...] = (),
    source: str | None = None,
) -> Article:
    return Article(
        source=source or f"{title}.txt",
        id=article_id(title),
        title=title,
        standfirst="",
        paragraphs=(),
        related=tuple(story(name) for name in related),
        published=published,
        modified=modified,
    )


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, tzinfo=dt.UTC)


def titles(articles: tuple[Article, ...]) -> list[str]:
    return [item.title for item in articles]


def test_newest_first_by_modification_time() -> None:
    articles = [
        article("Old", modified=at(20)),
        article("New", modified=at(22)),
        article("Mid", modified=at(21)),
    ]

    issue = pick(articles, today=TODAY, already_featured=set(), limits=PickLimits())

    assert issue.date == TODAY
    assert titles(issue.articles) == ["New", "Mid", "Old"]


def test_a_date_from_the_data_wins_over_the_file_time() -> None:
    articles = [
        article(
            "Scraped today, published long ago", modified=at(23), published=dt.date(2025, 1, 1)
        ),
        article("Scraped yesterday", modified=at(22)),
    ]

    issue = pick(articles, today=TODAY, already_featured=set(), limits=PickLimits())

    assert titles(issue.articles) == ["Scraped yesterday", "Scraped today, published long ago"]


def test_articles_dated_after_the_issue_wait() -> None:
    articles = [
        article("Tomorrow's", published=dt.date(2026, 11, 24)),
        article("Today's", published=TODAY),
    ]

    issue = pick(articles, today=TODAY, already_featured=set(), limits=PickLimits())

    assert titles(issue.articles) == ["Today's"]


def test_already_featured_articles_are_skipped() -> None:
    articles = [article("Seen", modified=at(23)), article("Unseen", modified=at(22))]

    issue = pick(articles, today=TODAY, already_featured={article_id("Seen")}, limits=PickLimits())

    assert titles(issue.articles) == ["Unseen"]


def test_nothing_new_is_an_empty_issue() -> None:
    issue = pick(
        [article("Seen")], today=TODAY, already_featured={article_id("Seen")}, limits=PickLimits()
    )

    assert issue.is_empty
    assert issue.related_count == 0


def test_at_most_max_articles_and_max_related() -> None:
    articles = [
        article(
            f"Story {n}", modified=at(10 + n), related=tuple(f"Related {n}.{m}" for m in range(9))
        )
        for n in range(8)
    ]

    issue = pick(
        articles,
        today=TODAY,
        already_featured=set(),
        limits=PickLimits(max_articles=3, max_related=2),
    )

    assert titles(issue.articles) == ["Story 7", "Story 6", "Story 5"]
    assert [len(item.related) for item in issue.articles] == [2, 2, 2]
    assert issue.articles[0].related[0].title == "Related 7.0"


def test_a_related_story_appears_once_and_never_as_a_lead() -> None:
    articles = [
        article("Lead A", modified=at(23), related=("Shared", "Lead B", "Only A", "shared!")),
        article("Lead B", modified=at(22), related=("Shared", "Only B", "Lead A")),
    ]

    issue = pick(articles, today=TODAY, already_featured=set(), limits=PickLimits())

    assert [story.title for story in issue.articles[0].related] == ["Shared", "Only A"]
    assert [story.title for story in issue.articles[1].related] == ["Only B"]


def test_duplicates_skipped_before_the_limit_applies() -> None:
    articles = [
        article("Same story", modified=at(23), source="b.txt"),
        article("Same Story!", modified=at(23), source="a.txt"),
        article("Other", modified=at(22)),
    ]

    issue = pick(articles, today=TODAY, already_featured=set(), limits=PickLimits(max_articles=2))

    # Equal times keep source order, so a.txt's copy is the one kept.
    assert [item.source for item in issue.articles] == ["a.txt", "Other.txt"]


def test_the_same_input_gives_the_same_issue() -> None:
    articles = [article(f"Story {n}", modified=at(20)) for n in range(6)]

    first = pick(articles, today=TODAY, already_featured=set(), limits=PickLimits())
    second = pick(
        list(reversed(articles)), today=TODAY, already_featured=set(), limits=PickLimits()
    )

    assert first == second


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one article"):
        PickLimits(max_articles=0)
    with pytest.raises(ValueError, match="no negative number"):
        PickLimits(max_related=-1)
