"""What every page of ``digest serve`` shares: the settings, the database, the signing key,
the clock, and the page templates in the archive's look."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse, Response

from digest.email.render import template_loader
from digest.options import brand
from digest.settings import Settings
from digest.store import Store

__all__ = ["MAX_TITLE", "Site", "page_title"]

# Search engines and html-validate cut a page title past 70 characters.
MAX_TITLE = 70


def page_title(title: str) -> Markup:
    """A page's <title> from its block ("Headline · Name"), at most MAX_TITLE characters:
    the name goes first, then the headline is cut at a word with an ellipsis. Counted as
    written, entities and all, since some checkers count them so."""
    text = Markup(title).unescape()
    if len(escape(text)) > MAX_TITLE and " · " in text:
        text = text.rsplit(" · ", 1)[0]
    while len(escape(text)) > MAX_TITLE and " " in text.strip():
        text = text.rstrip("…").rsplit(" ", 1)[0].rstrip(" ,;:\u2013\u2014-") + "…"
    return escape(text)


@dataclass(kw_only=True)
class Site:
    """One served site: ``clock`` is the time pages judge tokens and limits by."""

    settings: Settings
    store: Store
    secret_key: str
    clock: Callable[[], dt.datetime]
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=template_loader(self.settings.templates_dir),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["page_title"] = page_title

    def message(
        self,
        heading: str,
        paragraphs: list[str],
        *,
        action: str | None = None,
        button: str | None = None,
        fields: dict[str, str] | None = None,
        links: list[tuple[str, str]] | None = None,
        status: HTTPStatus = HTTPStatus.OK,
    ) -> Response:
        """A page that says something, with at most one button that POSTs ``fields``."""
        return self.page(
            template="web/message.html.j2",
            status=status,
            heading=heading,
            paragraphs=paragraphs,
            action=action,
            button=button,
            fields=fields or {},
            links=links or [],
        )

    def page(self, *, template: str, status: HTTPStatus = HTTPStatus.OK, **values: Any) -> Response:
        """The page ``template`` with ``values``; never cached (it may be personal)."""
        html = self.templates.get_template(template).render(
            newsletter_name=self.settings.newsletter_name,
            # The email's look, so that the site and the issues read as one.
            brand=brand(self.settings),
            # The archive's feed, announced on every page (served with a public URL).
            feed_url="/feed.xml" if self.settings.public_url else None,
            **values,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
