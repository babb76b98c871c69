"""The web archive: the latest issue at ``/``, every issue sent (a page of them at a
time), each as it went out (without anyone's personal parts) with links to the ones
before and after, each lead article in full on a page of its own (the one "Continue
reading" links to, with a canonical URL and Open Graph tags so that a shared link looks
right), and an Atom feed of them all."""

from __future__ import annotations

import datetime as dt
import math
import re
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
from digest.web.feed import FeedEntry, atom_feed
from digest.web.site import Site

__all__ = ["FEED_ENTRIES", "PER_PAGE", "ArchivePages"]

# Issues per page of the archive, and in the feed.
PER_PAGE = 30
FEED_ENTRIES = 30
_BODY_START = re.compile(r"<body[^>]*>", re.IGNORECASE)


class ArchivePages:
    """/issues, /issues/DATE and /issues/DATE/SLUG of one site."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        """The routes these pages answer."""
        return [
            Route("/", self.front, methods=["GET", "HEAD"]),
            Route("/feed.xml", self.feed, methods=["GET", "HEAD"]),
            Route("/issues", self.archive, methods=["GET", "HEAD"]),
            Route("/issues/{date}", self.issue, methods=["GET", "HEAD"]),
            Route("/issues/{date}/{slug}", self.article, methods=["GET", "HEAD"]),
        ]

    async def front(self, request: Request) -> Response:
        site = self.site
        latest = await run_in_threadpool(site.store.issues.published, limit=1)
        if not latest:
            return site.page(
                template="web/archive.html.j2",
                issues=[],
                page=1,
                pages=1,
                signup=self._signup,
                feed=self._feed_url,
            )
        return await self._issue_page(latest[0].date)

    async def archive(self, request: Request) -> Response:
        site = self.site
        store = site.store
        total = await run_in_threadpool(store.issues.published_count)
        pages = max(1, math.ceil(total / PER_PAGE))
        page = _page_number(request.query_params.get("page", "1"), pages)
        issues = await run_in_threadpool(
            store.issues.published, limit=PER_PAGE, offset=(page - 1) * PER_PAGE
        )
        return site.page(
            template="web/archive.html.j2",
            issues=issues,
            page=page,
            pages=pages,
            signup=self._signup,
            feed=self._feed_url,
        )

    async def issue(self, request: Request) -> Response:
        return await self._issue_page(_date(request))

    async def _issue_page(self, date: dt.date) -> Response:
        store = self.site.store
        frozen = await run_in_threadpool(store.issues.rendering, date)
        if frozen is None:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"No issue went out on {date.isoformat()}.")
        _, html, _ = frozen
        before, after = await run_in_threadpool(store.issues.neighbours, date)
        # The copy as sent, with the reader's own parts left out: the footer says "you"
        # and the unsubscribe link explains where each reader's own link is.
        anyone = Personal(
            unsubscribe_url="/unsubscribe", recipient="you", preferences_url="/preferences"
        )
        nav = self.site.templates.get_template("web/issue_nav.html.j2").render(
            before=before, after=after, signup=self._signup
        )
        page = personalise_html(html, anyone)
        # The page's own links go above the copy, and the feed is announced in its head.
        page = _BODY_START.sub(lambda found: found[0] + nav, page, count=1)
        if self._feed_url:
            link = f'<link rel="alternate" type="application/atom+xml" href="{self._feed_url}">'
            page = page.replace("</head>", link + "</head>", 1)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def feed(self, request: Request) -> Response:
        site = self.site
        public_url = site.settings.public_url
        if public_url is None:
            raise HTTPException(HTTPStatus.NOT_FOUND, "The feed needs the site's public URL.")
        issues = await run_in_threadpool(site.store.issues.published, limit=FEED_ENTRIES)
        document = atom_feed(
            title=site.settings.newsletter_name,
            site_url=f"{public_url}/",
            feed_url=f"{public_url}/feed.xml",
            entries=[
                FeedEntry(
                    title=issue.subject,
                    url=f"{public_url}/issues/{issue.date.isoformat()}",
                    updated=issue.sent_at,
                    summary=smarten(issue.lead_standfirst),
                )
                for issue in issues
            ],
        )
        return Response(document, media_type="application/atom+xml")

    @property
    def _signup(self) -> bool:
        # Signup is served only with a public URL (see create_app).
        return self.site.settings.public_url is not None

    @property
    def _feed_url(self) -> str | None:
        return "/feed.xml" if self.site.settings.public_url else None

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


def _page_number(text: str, pages: int) -> int:
    if not text.isdigit() or not 1 <= int(text) <= pages:
        raise HTTPException(HTTPStatus.NOT_FOUND, "The archive has no such page.")
    return int(text)
