"""``/admin/issues/DATE``: one issue for the operator.

Its copies as they stand (a progress bar, and the page refreshes itself every few
seconds while a send is under way, which the reader can turn off), the reasons copies
failed or wait grouped with their counts, one address's copy, and the copy as sent
(without anyone's own parts) in a sandboxed frame.
"""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.audience.subscribers import normalise_address
from digest.email.render import Personal, personalise_html
from digest.errors import InvalidAddress
from digest.web.admin import AdminPages

__all__ = ["REASONS_SHOWN", "REFRESH_SECONDS", "IssuePage"]

# While a send is under way the page asks to be loaded again this often.
REFRESH_SECONDS = 5
# Reasons copies failed or wait, most first.
REASONS_SHOWN = 20
# The window for "sent in the last minute".
_RECENT = dt.timedelta(minutes=1)


class IssuePage:
    """The page of one issue under /admin."""

    def __init__(self, admin: AdminPages) -> None:
        self.admin = admin
        self.site = admin.site

    def routes(self) -> list[Route]:
        """The routes this page answers."""
        return [Route("/admin/issues/{date}", self.issue, methods=["GET"])]

    async def issue(self, request: Request) -> Response:
        admin = self.admin
        session = admin.session(request)
        if session is None:
            return admin.to_login()
        try:
            date = dt.date.fromisoformat(request.path_params["date"])
        except ValueError:
            return admin.message(
                "No issue has that date", session=session, status=HTTPStatus.NOT_FOUND
            )
        live = request.query_params.get("live", "1") != "0"
        email = request.query_params.get("email", "").strip()
        values = await run_in_threadpool(self._values, date, email)
        if values is None:
            return admin.message(
                f"No issue of {date.isoformat()}", session=session, status=HTTPStatus.NOT_FOUND
            )
        answer = admin.page(
            "admin_issue.html.j2",
            session=session,
            date=date,
            email=email,
            live=live,
            refresh=REFRESH_SECONDS,
            **values,
        )
        if live and values["under_way"]:
            # A header, not a meta tag: the page stays valid, and "Stop refreshing" drops it.
            answer.headers["Refresh"] = str(REFRESH_SECONDS)
        return answer

    def _values(self, date: dt.date, email: str) -> dict[str, Any] | None:
        store = self.site.store
        issue_id = store.issues.id_of(date)
        if issue_id is None:
            return None
        now = self.site.clock()
        counts = store.deliveries.counts(issue_id, now=now)
        per_minute = store.deliveries.sent_since(issue_id, now - _RECENT)
        frozen = store.issues.rendering(date)
        preview = None
        if frozen is not None:
            # As the archive shows it: the footer says "you", no reader's own links.
            anyone = Personal(
                unsubscribe_url="/unsubscribe", recipient="you", preferences_url="/preferences"
            )
            preview = personalise_html(frozen[1], anyone)
        problem, copies = None, []
        if email:
            try:
                address = normalise_address(email)
            except InvalidAddress as exc:
                problem = str(exc)
            else:
                copies = [
                    copy for copy in store.deliveries.to_address(address) if copy.issue_date == date
                ]
        total = counts.sent + counts.failed + counts.pending + counts.claimed
        return {
            "subject": frozen[0] if frozen else None,
            "counts": counts,
            "total": total,
            "done": counts.sent + counts.failed,
            "per_minute": per_minute,
            # Copies in a sender's hands, or some left and one sent within the minute
            # (between two claims): a send runs. Once none is left, the page stops.
            "under_way": counts.claimed > 0 or (counts.pending > 0 and per_minute > 0),
            "errors": store.deliveries.errors(issue_id, limit=REASONS_SHOWN),
            "problem": problem,
            "copies": copies,
            "preview": preview,
            "zone_info": self.site.settings.schedule.zone,
        }
