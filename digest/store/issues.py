"""Issue records: the frozen pick of each day, its rendering, and what earlier issues featured."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from digest.errors import StoreError
from digest.models import Article, Issue
from digest.store.clock import aware
from digest.store.tables import issue_articles, issues

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["IssueRecords", "PublishedIssue"]


class IssueRecords:
    """The issues of one database."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def get(self, date: dt.date) -> Issue | None:
        """The frozen issue for ``date``, or None if none was created."""
        with self._db.reading() as connection:
            issue_id = connection.scalar(select(issues.c.id).where(issues.c.date == date))
            if issue_id is None:
                return None
            rows = connection.execute(
                select(issue_articles.c.content, issue_articles.c.published)
                .where(issue_articles.c.issue_id == issue_id)
                .order_by(issue_articles.c.position)
            )
            articles = tuple(
                Article.from_dict(row.content, published=row.published) for row in rows
            )
        return Issue(date=date, articles=articles)

    def number(self, date: dt.date) -> int:
        """The issue of ``date``'s number: one more than the issues sent before it."""
        with self._db.reading() as connection:
            before = connection.scalar(
                select(func.count())
                .select_from(issues)
                .where(issues.c.date < date, issues.c.queued_at.is_not(None))
            )
        return int(before or 0) + 1

    def latest_date(self, *, before: dt.date) -> dt.date | None:
        """The date of the newest stored issue before ``before``, if any."""
        query = select(func.max(issues.c.date)).where(issues.c.date < before)
        with self._db.reading() as connection:
            latest: dt.date | None = connection.scalar(query)
        return latest

    def featured_article_ids(self, *, excluding: dt.date | None = None) -> set[str]:
        """Ids of the articles every stored issue (but the one for ``excluding``) featured."""
        query = select(issue_articles.c.article_id).join(
            issues, issues.c.id == issue_articles.c.issue_id
        )
        if excluding is not None:
            query = query.where(issues.c.date != excluding)
        with self._db.reading() as connection:
            return set(connection.scalars(query.distinct()))

    def save(
        self, issue: Issue, *, created_at: dt.datetime, send_started: bool = False
    ) -> tuple[Issue, bool]:
        """Freeze ``issue``; if one for its date exists already, keep that one instead.

        Returns the stored issue and whether this call created it. The unique date settles
        a race between two processes: the loser reads the winner's issue. With
        ``send_started`` the issue is saved by a send, marked as begun in the same write
        (see :meth:`mark_send_started`).
        """
        try:
            with self._db.writing() as connection:
                issue_id = connection.execute(
                    issues.insert()
                    .values(
                        date=issue.date,
                        created_at=created_at,
                        send_started_at=created_at if send_started else None,
                    )
                    .returning(issues.c.id)
                ).scalar_one()
                rows = [
                    _article_row(issue_id, position, article)
                    for position, article in enumerate(issue.articles)
                ]
                if rows:
                    connection.execute(issue_articles.insert(), rows)
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            existing = self.get(issue.date)
            if existing is None:
                raise
            return existing, False
        return issue, True

    def id_of(self, date: dt.date) -> int | None:
        """The stored issue's row id, or None."""
        with self._db.reading() as connection:
            found: int | None = connection.scalar(select(issues.c.id).where(issues.c.date == date))
        return found

    def rendering(self, date: dt.date) -> tuple[str, str, str] | None:
        """The subject, HTML and text frozen with the issue at its first send, if any."""
        query = select(issues.c.subject, issues.c.html, issues.c.text).where(issues.c.date == date)
        with self._db.reading() as connection:
            row = connection.execute(query).first()
        if row is None or row.html is None:
            return None
        return row.subject, row.html, row.text

    def sent(self) -> list[tuple[dt.date, str]]:
        """Date and subject of each issue that went out (its rendering is frozen), newest first."""
        query = (
            select(issues.c.date, issues.c.subject)
            .where(issues.c.html.is_not(None))
            .order_by(issues.c.date.desc())
        )
        with self._db.reading() as connection:
            return [(row.date, row.subject) for row in connection.execute(query)]

    def published(self, *, limit: int, offset: int = 0) -> list[PublishedIssue]:
        """Issues that went out, newest first, ``limit`` from ``offset``, with the lead
        article's title and standfirst (for the archive's pages and its feed)."""
        lead = issue_articles.alias("lead")
        query = (
            select(
                issues.c.date,
                issues.c.subject,
                issues.c.send_started_at,
                issues.c.created_at,
                lead.c.content,
            )
            .outerjoin(lead, (lead.c.issue_id == issues.c.id) & (lead.c.position == 0))
            .where(issues.c.html.is_not(None))
            .order_by(issues.c.date.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._db.reading() as connection:
            rows = connection.execute(query).all()
        return [
            PublishedIssue(
                date=row.date,
                subject=row.subject,
                sent_at=_aware(row.send_started_at or row.created_at),
                lead_title=(row.content or {}).get("title", ""),
                lead_standfirst=(row.content or {}).get("standfirst", ""),
            )
            for row in rows
        ]

    def earlier_leads(
        self, article_ids: Collection[str], *, before: dt.date
    ) -> dict[str, tuple[dt.date, int]]:
        """Of ``article_ids``, those that were lead articles of an issue sent before
        ``before``: each with the latest such issue's date and the article's position."""
        if not article_ids:
            return {}
        query = (
            select(issue_articles.c.article_id, issues.c.date, issue_articles.c.position)
            .join(issues, issues.c.id == issue_articles.c.issue_id)
            .where(
                issue_articles.c.article_id.in_(list(article_ids)),
                issues.c.date < before,
                issues.c.html.is_not(None),
            )
            .order_by(issues.c.date)
        )
        with self._db.reading() as connection:
            # Ordered by date: the latest issue that featured it wins.
            return {row.article_id: (row.date, row.position) for row in connection.execute(query)}

    def published_count(self) -> int:
        """How many issues went out."""
        with self._db.reading() as connection:
            count = connection.scalar(
                select(func.count()).select_from(issues).where(issues.c.html.is_not(None))
            )
        return int(count or 0)

    def neighbours(self, date: dt.date) -> tuple[dt.date | None, dt.date | None]:
        """The issues that went out just before and just after ``date``."""
        sent = issues.c.html.is_not(None)
        with self._db.reading() as connection:
            before = connection.scalar(
                select(func.max(issues.c.date)).where(sent, issues.c.date < date)
            )
            after = connection.scalar(
                select(func.min(issues.c.date)).where(sent, issues.c.date > date)
            )
        return before, after

    def hold(self, date: dt.date, reason: str, *, at: dt.datetime) -> None:
        """Hold the issue's send for a person to look at: no catch-up resumes it."""
        with self._db.writing() as connection:
            connection.execute(
                issues.update().where(issues.c.date == date).values(held_at=at, held_reason=reason)
            )

    def release(self, date: dt.date) -> str | None:
        """Lift the hold on the issue's send; why it was held, or None if it was not."""
        with self._db.writing() as connection:
            reason: str | None = connection.scalar(
                select(issues.c.held_reason).where(
                    issues.c.date == date, issues.c.held_at.is_not(None)
                )
            )
            if reason is not None:
                connection.execute(
                    issues.update()
                    .where(issues.c.date == date)
                    .values(held_at=None, held_reason=None)
                )
        return reason

    def mark_send_started(self, date: dt.date, *, at: dt.datetime) -> None:
        """Note that a send of the issue began, unless one began before.

        Set before the rendering is frozen: a send killed at any later step is found
        unfinished (see :meth:`DeliveryRecords.unfinished_issues`) until its copies are queued.
        """
        statement = (
            issues.update()
            .where(issues.c.date == date, issues.c.send_started_at.is_(None))
            .values(send_started_at=at)
        )
        with self._db.writing() as connection:
            connection.execute(statement)

    def freeze_rendering(self, date: dt.date, *, subject: str, html: str, text: str) -> None:
        """Keep the issue's rendering; one frozen before (by another sender) stays."""
        statement = (
            issues.update()
            .where(issues.c.date == date, issues.c.html.is_(None))
            .values(subject=subject, html=html, text=text)
        )
        with self._db.writing() as connection:
            connection.execute(statement)


@dataclass(frozen=True, kw_only=True, slots=True)
class PublishedIssue:
    """An issue that went out, as the archive lists it."""

    date: dt.date
    subject: str
    sent_at: dt.datetime
    lead_title: str
    lead_standfirst: str


def _aware(value: dt.datetime) -> dt.datetime:
    found = aware(value)
    assert found is not None
    return found


def _article_row(issue_id: int, position: int, article: Article) -> dict[str, Any]:
    return {
        "issue_id": issue_id,
        "position": position,
        "article_id": article.id,
        "source": article.source,
        "title": article.title,
        "published": article.published,
        "content": article.to_dict(),
    }
