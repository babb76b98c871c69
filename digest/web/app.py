"""``digest serve``: one-click unsubscribe, the web archive, a health check and a relay's
event webhook (Starlette).

It sits behind the operator's reverse proxy at ``public_url``. A GET never changes
anything, since mail scanners follow links; unsubscribing takes a POST, as RFC 8058's
one-click does. No page shows a subscriber's address, and no response sets a cookie.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.audience.listid import accepted_list_ids
from digest.audience.tokens import UnsubscribeToken, read_unsubscribe_token, required_key
from digest.bounces.process import ProcessReport, apply_returned
from digest.bounces.webhook import read_mailgun
from digest.clock import utc_now
from digest.email.message import preferences_link
from digest.errors import StoreError
from digest.models import Subscriber
from digest.options import list_naming, message_options
from digest.settings import Settings
from digest.store import Store
from digest.web.admin import AdminPages
from digest.web.archive import ArchivePages
from digest.web.metrics import MetricsPage
from digest.web.preferences import PreferencePages
from digest.web.readers import ReaderPages
from digest.web.site import Site

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_WEBHOOK_BYTES",
    "ONE_CLICK",
    "HideTokens",
    "create_app",
    "hide_tokens",
]

# A one-click POST body is 26 bytes ("List-Unsubscribe=One-Click"), a little more as
# multipart; anything much bigger is not one.
MAX_BODY_BYTES = 4096
# A relay's webhook event carries the message's headers: a few KB, rarely more.
MAX_WEBHOOK_BYTES = 256 * 1024
ONE_CLICK = "One-Click"


def create_app(
    settings: Settings, store: Store, *, clock: Callable[[], dt.datetime] = utc_now
) -> ASGIApp:
    """The ASGI app for ``settings``; ``store`` must stay open while it serves.

    ``clock`` is the time tokens and rate limits are judged by.
    """
    secret_key = required_key(settings.secret_key, needed_by="digest serve")
    site = Site(settings=settings, store=store, secret_key=secret_key, clock=clock)
    pages = _Pages(site)
    # Signup and preferences live at public_url: the links in mails point there.
    readers = [
        *ReaderPages(site).routes(),
        *PreferencePages(site).routes(),
    ]
    app = Starlette(
        routes=[
            *(readers if settings.public_url else []),
            Route("/healthz", pages.healthz, methods=["GET", "HEAD"]),
            Route("/unsubscribe", pages.unsubscribe_help, methods=["GET", "HEAD"]),
            Route("/unsubscribe/{token}", pages.unsubscribe_page, methods=["GET", "HEAD"]),
            Route("/unsubscribe/{token}", pages.unsubscribe, methods=["POST"]),
            *ArchivePages(site).routes(),
            Route("/webhooks/mailgun", pages.mailgun, methods=["POST"]),
            *MetricsPage(site).routes(),
            *(AdminPages(site).routes() if settings.admin.password_hash else []),
        ],
        exception_handlers={HTTPException: pages.error, Exception: pages.crash},
    )
    return _BodyLimit(app, MAX_BODY_BYTES, webhook_limit=MAX_WEBHOOK_BYTES)


class _Pages:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.settings = site.settings
        self.store = site.store
        self.secret_key = site.secret_key

    # Pages

    async def healthz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self._ping)
        except StoreError as exc:
            log.error("health check: %s", exc)
            return PlainTextResponse("database unavailable\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def unsubscribe_help(self, request: Request) -> Response:
        return self._message(
            "Unsubscribe",
            [
                "To unsubscribe, use the link at the foot of any issue you received: it is "
                "your own, and it works in one click."
            ],
        )

    async def unsubscribe_page(self, request: Request) -> Response:
        await self._token(request)  # a bad token is a 400 here already
        name = self.settings.newsletter_name
        return self._message(
            f"Unsubscribe from {name}?",
            [f"You will get no more issues of {name}."],
            action=request.url.path,
            button="Unsubscribe",
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = await self._token(request)
        form = await request.form(max_files=0, max_fields=8)
        if form.get("List-Unsubscribe") != ONE_CLICK:
            raise HTTPException(
                HTTPStatus.BAD_REQUEST, "Expected the form field List-Unsubscribe=One-Click."
            )
        name = self.settings.newsletter_name
        subscriber = await run_in_threadpool(self._unsubscribe, token)
        if subscriber is None:
            return self._message(
                "Not on the list", [f"This link's subscriber is no longer on the list of {name}."]
            )
        log.info("subscriber %d unsubscribed through their link", token.subscriber_id)
        # Their way back, should they change their mind: the preference page, one click.
        options = message_options(self.settings, list_id=token.list_id)
        preferences = preferences_link(options, subscriber, secret_key=self.secret_key)
        return self.site.message(
            "Unsubscribed",
            [f"You will get no more issues of {name}."],
            links=[(preferences, "Changed your mind? Resubscribe from your preferences")]
            if preferences
            else None,
        )

    async def mailgun(self, request: Request) -> Response:
        """Mailgun's event webhook: bounces, complaints and unsubscribes, signature checked."""
        key = self.settings.webhooks.mailgun_signing_key
        if key is None:
            raise HTTPException(HTTPStatus.NOT_FOUND)
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "not JSON"}, status_code=HTTPStatus.BAD_REQUEST)
        event = read_mailgun(payload, key.get_secret_value())
        if event is None:
            log.warning("a Mailgun webhook request with no valid signature was refused")
            return JSONResponse({"error": "bad signature"}, status_code=HTTPStatus.UNAUTHORIZED)
        if event.returned is None:
            return JSONResponse({"recorded": False})
        returned = event.returned
        report = ProcessReport(source="mailgun webhook")
        recorded = await run_in_threadpool(
            apply_returned,
            self.settings,
            self.store,
            returned,
            digest=event.digest,
            source="mailgun webhook",
            into=report,
        )
        return JSONResponse({"recorded": recorded})

    # Errors

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = HTTPStatus(exc.status_code)
        detail = exc.detail if exc.detail != status.phrase else _EXPLAINED.get(status, "")
        return self._message(status.phrase, [detail] if detail else [], status=status)

    async def crash(self, request: Request, exc: Exception) -> Response:
        path = hide_tokens(request.url.path)
        log.error("%s %s failed: %s: %s", request.method, path, type(exc).__name__, exc)
        return self._message(
            "Something went wrong",
            ["The page could not be shown. Please try again later."],
            status=HTTPStatus.INTERNAL_SERVER_ERROR,
        )

    # Helpers

    def _unsubscribe(self, token: UnsubscribeToken) -> Subscriber | None:
        """Unsubscribe whom the token names; None if nobody on the list matches it."""
        subscriber = self.store.subscribers.by_id(token.subscriber_id)
        if subscriber is None or not token.is_for(self.secret_key, subscriber.email):
            return None
        if not self.store.subscribers.unsubscribe(subscriber.id, now=self.site.clock()):
            return None
        return subscriber

    async def _token(self, request: Request) -> UnsubscribeToken:
        found = read_unsubscribe_token(self.secret_key, request.path_params["token"])
        # Any id the list was ever sent under: links in old issues keep working after a
        # rename (see digest.audience.listid). Read each time, since a send may keep a new one.
        if found is None or found.list_id not in await run_in_threadpool(
            accepted_list_ids, list_naming(self.settings), self.store.list_ids
        ):
            raise HTTPException(
                HTTPStatus.BAD_REQUEST,
                "This unsubscribe link is not valid: it may have been cut short or changed. "
                "Use the link in your own copy of the email.",
            )
        return found

    def _ping(self) -> None:
        with self.store.reading() as connection:
            connection.exec_driver_sql("SELECT 1")

    def _message(
        self,
        heading: str,
        paragraphs: list[str],
        *,
        action: str | None = None,
        button: str | None = None,
        status: HTTPStatus = HTTPStatus.OK,
    ) -> Response:
        fields = {"List-Unsubscribe": ONE_CLICK} if action else None
        return self.site.message(
            heading, paragraphs, action=action, button=button, fields=fields, status=status
        )

    def _page(self, name: str, *, status: HTTPStatus = HTTPStatus.OK, **values: Any) -> Response:
        return self.site.page(template=name, status=status, **values)


# A subscriber's token in a path (unsubscribe, preferences, confirmation links),
# wherever the app is mounted and whatever follows it.
_TOKEN_IN_PATH = re.compile(r"(/(?:unsubscribe|preferences|confirm)/)[^/?#\s\"]+")


def hide_tokens(text: str) -> str:
    """``text`` with each subscriber's token in a path replaced by "…", for the logs.

    A token in a log is as good as the link: whoever reads the log could unsubscribe
    its reader, or read and erase their data.
    """
    return _TOKEN_IN_PATH.sub(r"\1…", text)


class HideTokens(logging.Filter):
    """Takes unsubscribe tokens out of a logger's records (uvicorn's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = hide_tokens(record.msg)
        if isinstance(record.args, tuple):
            # Kept a tuple of the same length: uvicorn's access formatter unpacks it.
            record.args = tuple(
                hide_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


_EXPLAINED = {
    HTTPStatus.NOT_FOUND: "There is no page at this address.",
    HTTPStatus.METHOD_NOT_ALLOWED: "This page does not take that kind of request.",
}


class _BodyLimit:
    """Refuses a request body over ``limit`` bytes (``webhook_limit`` under /webhooks/) with
    413 before the app reads it."""

    def __init__(self, app: ASGIApp, limit: int, *, webhook_limit: int) -> None:
        self.app = app
        self.page_limit = limit
        self.webhook_limit = webhook_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        webhook = str(scope.get("path", "")).startswith("/webhooks/")
        limit = self.webhook_limit if webhook else self.page_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        # Read it all here (it is small), counting, whatever the client declared.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    response = PlainTextResponse(
        f"Request body too large: at most {limit} bytes.\n",
        status_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
