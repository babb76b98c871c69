"""``/admin`` in ``digest serve``: the operator's view, behind a login.

Only with ``admin.password_hash`` set (otherwise every /admin path is a 404). A login is
an argon2-checked password, rate-limited per address (``admin.login_attempts`` wrong
ones within ``admin.login_window_minutes``); it gives a signed session cookie that is
``Secure``, ``HttpOnly``, ``SameSite=Strict`` and scoped to /admin. Every form carries a
CSRF token bound to the session. No /admin answer is cached or indexed.

The overview: the next scheduled send (with a button to skip or resume it), a form for
a test copy, the list by status, the latest issues with their copies, bounces and
complaints and their rates, two charts drawn on the server as SVG (each with a table of
its figures): the list over the last 90 days and copies per issue, and the latest
actions. An issue's page is :mod:`digest.web.adminissue`; the actions,
:mod:`digest.web.adminactions`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from http import HTTPStatus
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import pipeline
from digest.audience.tokens import keyed_hash
from digest.crontab import cron_trigger
from digest.errors import NotFound
from digest.models import SubscriberStatus
from digest.readers.record import held_about
from digest.web.adminauth import (
    SESSION_COOKIE,
    csrf_token,
    login_token,
    login_token_good,
    new_session,
    read_session,
    verify_password,
)
from digest.web.charts import bar_chart, line_chart
from digest.web.site import Site

log = logging.getLogger(__name__)

__all__ = ["ACTIONS_SHOWN", "DONE", "ISSUES_SHOWN", "LIST_DAYS", "PRIVATE", "AdminPages"]

# The overview's reach: the list's last 90 days, the last 12 issues.
LIST_DAYS = 90
ISSUES_SHOWN = 12
# The overview's last actions taken here.
ACTIONS_SHOWN = 10
# What the subscriber page says after an action, by the action's ``done`` word.
DONE = {
    "unsubscribed": "Unsubscribed",
    "resubscribed": "Resubscribed",
    "removed": "Removed from the list:",
    "unchanged": "Nothing changed for",
}
# How long a login form's token stays good.
_FORM_HOURS = 1.0
# Headers of every /admin answer: never cached, never indexed, and never framed by
# another page (whose overlay could trick a click on an action's button).
PRIVATE = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


class AdminPages:
    """The routes of /admin, for a site whose ``admin.password_hash`` is set."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.settings = site.settings
        configured = site.settings.admin.password_hash
        assert configured is not None
        self._hash = configured.get_secret_value()

    def routes(self) -> list[Route]:
        """Every /admin route; the catch-all last."""
        # Here, not at the top: those modules build on this one.
        from digest.web.adminactions import AdminActions
        from digest.web.adminissue import IssuePage

        return [
            Route("/admin", self.overview, methods=["GET"]),
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            Route("/admin/subscribers", self.subscriber, methods=["GET"]),
            *IssuePage(self).routes(),
            *AdminActions(self).routes(),
            # Everything else under /admin: not found, and only once logged in.
            Route("/admin/{rest:path}", self.unknown, methods=["GET", "POST"]),
        ]

    # The session, and what every page and action shares

    def session(self, request: Request) -> str | None:
        """The request's session, or None without a good one."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        return read_session(
            self.site.secret_key,
            self._hash,
            value,
            now=self.site.clock(),
            hours=self.settings.admin.session_hours,
        )

    def to_login(self) -> Response:
        """The redirect to the login page."""
        return RedirectResponse("/admin/login", status_code=HTTPStatus.SEE_OTHER, headers=PRIVATE)

    async def checked_post(self, request: Request) -> tuple[str, dict[str, str]] | Response:
        """A POST's session and form, or the refusal: no session, or no or a wrong token."""
        session = self.session(request)
        if session is None:
            return self.page("admin_message.html.j2", HTTPStatus.FORBIDDEN, heading="Log in first")
        form = await request.form(max_files=0, max_fields=16)
        given = str(form.get("csrf", ""))
        if not hmac.compare_digest(given, csrf_token(self.site.secret_key, session)):
            return self.page(
                "admin_message.html.j2",
                HTTPStatus.FORBIDDEN,
                heading="This form has expired: open the page again",
            )
        return session, {name: value for name, value in form.items() if isinstance(value, str)}

    def page(
        self,
        template: str,
        status: HTTPStatus = HTTPStatus.OK,
        *,
        session: str | None = None,
        **values: Any,
    ) -> Response:
        """An /admin page: private, never cached; with ``session``, its forms' CSRF token."""
        values.setdefault("notice", None)
        values.setdefault("paragraphs", [])
        csrf = csrf_token(self.site.secret_key, session) if session is not None else ""
        answer = self.site.page(template=f"web/{template}", status=status, csrf=csrf, **values)
        answer.headers.update(PRIVATE)
        return answer

    def record(self, request: Request, action: str, target: str, detail: str) -> None:
        """Keep an action in the log (database and log file), with the time and the
        address it came from (call from a worker thread)."""
        origin = request.client.host if request.client is not None else "unknown"
        self.site.store.operator.record(
            action, target, detail, origin=origin, now=self.site.clock()
        )
        log.info("/admin: %s %s: %s (from %s)", action, target, detail, origin)

    def message(
        self,
        heading: str,
        *paragraphs: str,
        session: str | None,
        status: HTTPStatus = HTTPStatus.OK,
    ) -> Response:
        """A page that says what happened."""
        return self.page(
            "admin_message.html.j2",
            status,
            session=session,
            heading=heading,
            paragraphs=list(paragraphs),
        )

    # Pages

    async def login_form(self, request: Request) -> Response:
        if self.session(request) is not None:
            return RedirectResponse("/admin", status_code=HTTPStatus.SEE_OTHER, headers=PRIVATE)
        return self._login_page()

    def _login_page(
        self, problem: str | None = None, status: HTTPStatus = HTTPStatus.OK
    ) -> Response:
        token = login_token(self.site.secret_key, now=self.site.clock())
        return self.page("admin_login.html.j2", status, token=token, problem=problem)

    async def login(self, request: Request) -> Response:
        now = self.site.clock()
        form = await request.form(max_files=0, max_fields=8)
        if not login_token_good(
            self.site.secret_key, str(form.get("token", "")), now=now, hours=_FORM_HOURS
        ):
            return self._login_page("This form has expired: try again.", HTTPStatus.BAD_REQUEST)
        admin = self.settings.admin
        address = request.client.host if request.client is not None else "unknown"
        # Counted beside the signup form's attempts, in a scope of their own.
        key = {"admin": keyed_hash(self.site.secret_key, address, purpose="admin-login")}
        since = now - dt.timedelta(minutes=admin.login_window_minutes)
        store = self.site.store
        tried = await run_in_threadpool(store.signups.count_since, "admin", key["admin"], since)
        if tried >= admin.login_attempts:
            return self._login_page(
                f"Too many wrong passwords: try again in {admin.login_window_minutes} minutes.",
                HTTPStatus.TOO_MANY_REQUESTS,
            )
        password = str(form.get("password", ""))
        if not await run_in_threadpool(verify_password, self._hash, password):
            await run_in_threadpool(store.signups.record, key, "wrong-password", now=now)
            return self._login_page("Wrong password.", HTTPStatus.UNAUTHORIZED)
        answer = RedirectResponse("/admin", status_code=HTTPStatus.SEE_OTHER, headers=PRIVATE)
        answer.set_cookie(
            SESSION_COOKIE,
            new_session(self.site.secret_key, self._hash, now=now),
            max_age=int(admin.session_hours * 3600),
            path="/admin",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return answer

    async def logout(self, request: Request) -> Response:
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        answer = self.to_login()
        answer.delete_cookie(
            SESSION_COOKIE, path="/admin", secure=True, httponly=True, samesite="strict"
        )
        return answer

    async def subscriber(self, request: Request) -> Response:
        """Look up an address: the subscriber, their history, deliveries and what came back."""
        session = self.session(request)
        if session is None:
            return self.to_login()
        email = request.query_params.get("email", "").strip()
        done = request.query_params.get("done", "")
        if not email:
            return self.page("admin_subscriber.html.j2", session=session, email="", record=None)
        try:
            record = await run_in_threadpool(
                held_about, self.site.store, email, now=self.site.clock()
            )
        except NotFound:
            record = None
        # After an action (see digest.web.adminactions): what it did, said only when the
        # list agrees (the word comes in the address bar, where anyone can write it).
        status = record["subscriber"]["status"] if record else None
        agrees = {
            "unsubscribed": status == SubscriberStatus.UNSUBSCRIBED,
            "resubscribed": status == SubscriberStatus.ACTIVE,
            "removed": record is None,
            "unchanged": record is not None,
        }.get(done, False)
        notice = f"{DONE[done]} {email}." if agrees else None
        missing = record is None and not agrees
        return self.page(
            "admin_subscriber.html.j2",
            HTTPStatus.NOT_FOUND if missing else HTTPStatus.OK,
            session=session,
            email=email,
            record=record,
            notice=notice,
        )

    async def unknown(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login()
        return self.message("Not found", session=session, status=HTTPStatus.NOT_FOUND)

    async def overview(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login()
        values = await run_in_threadpool(self._overview)
        return self.page("admin.html.j2", session=session, **values)

    def _overview(self) -> dict[str, Any]:
        store, settings = self.site.store, self.settings
        now = self.site.clock()
        zone = settings.schedule.zone
        trigger = cron_trigger(settings.schedule.cron, zone)
        next_send = trigger.get_next_fire_time(None, now.astimezone(zone))
        figures = store.figures.snapshot(now=now)
        issues = store.figures.issues(last=ISSUES_SHOWN)
        today = now.date()
        days = store.figures.list_days(since=today - dt.timedelta(days=LIST_DAYS - 1), until=today)
        oldest_first = list(reversed(issues))
        issue_dates = [issue.date.isoformat() for issue in oldest_first]
        skipped_at = store.operator.skipped_at(next_send.date()) if next_send else None
        return {
            "now": now.astimezone(zone),
            "today": pipeline.today(settings, now),
            "next_send": next_send,
            "skipped_at": skipped_at.astimezone(zone) if skipped_at else None,
            "zone": settings.schedule.timezone,
            "zone_info": zone,
            "actions": store.operator.recent(limit=ACTIONS_SHOWN),
            "scheduler_up": store.scheduler_running(),
            "statuses": [
                (status.value, figures.subscribers[status]) for status in SubscriberStatus
            ],
            "issues": issues,
            "days": days,
            "list_chart": line_chart(
                title=f"The list over the last {LIST_DAYS} days",
                description="Addresses that joined, left and bounced each day.",
                labels=[day.day.isoformat() for day in days],
                series=[
                    ("joined", [day.joined for day in days]),
                    ("left", [day.left for day in days]),
                    ("bounced", [day.bounced for day in days]),
                ],
            ),
            "issues_chart": bar_chart(
                title="Copies per issue",
                description="Copies sent, failed and pending for each of the latest issues.",
                labels=issue_dates,
                series=[
                    ("sent", [issue.sent for issue in oldest_first]),
                    ("failed", [issue.failed for issue in oldest_first]),
                    ("pending", [issue.pending for issue in oldest_first]),
                ],
                slots=ISSUES_SHOWN,
            ),
            "rates_chart": line_chart(
                title="Hard bounces and complaints per issue (%)",
                description="The share of each issue's copies sent that bounced for good "
                "or were reported as spam.",
                labels=issue_dates,
                series=[
                    ("hard bounces", [100 * issue.bounce_rate for issue in oldest_first]),
                    ("complaints", [100 * issue.complaint_rate for issue in oldest_first]),
                ],
                markers=True,
            ),
        }
