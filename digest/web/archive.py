"""The web archive: every issue sent, each as it went out (without anyone's personal
parts), and each lead article in full on a page of its own, the one "Continue reading"
links to, with a canonical URL and Open Graph tags so that a shared link looks right."""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.content.excerpt import reading_minutes
from digest.email.render import Personal, personalise_html
from digest.email.typography import keep_last_words_together, smarten
from digest.email.view import article_slugs, byline_text
from digest.models import Article
from digest.web.site import Site

__all__ = ["ArchivePages"]


class ArchivePages:
    """/issues, /issues/DATE and /issues/DATE/SLUG of one site."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        """The routes these pages answer."""
        return [
            Route("/issues", self.archive, methods=["GET", "HEAD"]),
            Route("/issues/{date}", self.issue, methods=["GET", "HEAD"]),
            Route("/issues/{date}/{slug}", self.article, methods=["GET", "HEAD"]),
        ]

    async def archive(self, request: Request) -> Response:
        site = self.site
        issues = await run_in_threadpool(site.store.issues.sent)
        # Signup is served only with a public URL (see create_app).
        return site.page(
            template="web/archive.html.j2",
            issues=issues,
            signup=site.settings.public_url is not None,
        )

    async def issue(self, request: Request) -> Response:
        date = _date(request)
        frozen = await run_in_threadpool(self.site.store.issues.rendering, date)
        if frozen is None:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"No issue went out on {date.isoformat()}.")
        _, html, _ = frozen
        # The copy as sent, with the reader's own parts left out: the footer says "you"
        # and the unsubscribe link explains where each reader's own link is.
        anyone = Personal(
            unsubscribe_url="/unsubscribe", recipient="you", preferences_url="/preferences"
        )
        return HTMLResponse(personalise_html(html, anyone))

    async def article(self, request: Request) -> Response:
        date = _date(request)
        site = self.site
        store = site.store
        # Only issues that went out: an article of a mere preview is not published.
        sent = await run_in_threadpool(store.issues.rendering, date)
        issue = await run_in_threadpool(store.issues.get, date) if sent else None
        if issue is None:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"No issue went out on {date.isoformat()}.")
        wanted = request.path_params["slug"]
        for article, name in zip(issue.articles, article_slugs(issue.articles), strict=True):
            if name == wanted:
                return self._article_page(article, date, name)
        raise HTTPException(HTTPStatus.NOT_FOUND, "That issue has no such article.")

    def _article_page(self, article: Article, date: dt.date, name: str) -> Response:
        site = self.site
        issue_path = f"/issues/{date.isoformat()}"
        public_url = site.settings.public_url
        title = smarten(article.title)
        return site.page(
            template="web/article.html.j2",
            title=title,
            headline=keep_last_words_together(title),
            standfirst=smarten(article.standfirst),
            byline=byline_text(article.authors, article.publisher, article.published),
            reading_minutes=reading_minutes(article.paragraphs, standfirst=article.standfirst),
            paragraphs=[smarten(paragraph) for paragraph in article.paragraphs],
            related=[
                {
                    "kicker": story.kicker,
                    "title": smarten(story.title),
                    "summary": smarten(story.summary),
                    "byline": byline_text(story.authors, story.publisher, story.published),
                }
                for story in article.related
            ],
            issue_path=issue_path,
            issue_date_text=f"{date:%A} {date.day} {date:%B %Y}",
            canonical=f"{public_url}{issue_path}/{name}" if public_url else None,
        )


def _date(request: Request) -> dt.date:
    try:
        return dt.date.fromisoformat(request.path_params["date"])
    except ValueError:
        raise HTTPException(HTTPStatus.NOT_FOUND, "No issue has that date.") from None
