"""What the operator does at /admin, each a POST with the session's CSRF token, kept in
the actions log with the time: unsubscribe, resubscribe or remove an address (each
confirmed on a page of its own first), send a test copy of today's issue, and skip or
resume the next scheduled send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import pipeline, sending
from digest.audience.subscribers import normalise_address
from digest.crontab import cron_trigger
from digest.delivery.transport import destination, transport_for
from digest.errors import DigestError, InputError, InvalidAddress, NotFound
from digest.models import Subscriber, SubscriberStatus
from digest.readers import operator
from digest.web.admin import PRIVATE, AdminPages

if TYPE_CHECKING:
    from digest.settings import Settings

__all__ = ["SUBSCRIBER_ACTIONS", "AdminActions"]

# Each action on one address: its confirmation's heading, what it does, its button, and
# the word the subscriber page says afterwards.
SUBSCRIBER_ACTIONS = {
    "unsubscribe": (
        "Unsubscribe {email}?",
        "No further issue goes to it. It stays on the list as unsubscribed, and can be "
        "resubscribed.",
        "Unsubscribe",
    ),
    "resubscribe": (
        "Resubscribe {email}?",
        "The next issue goes to it again.",
        "Resubscribe",
    ),
    "remove": (
        "Remove {email} from the list?",
        "Its subscription, name and history are deleted. The record of the copies it was "
        "sent stays, so that added again it is never sent an issue twice. (To erase "
        "everything held about it, use `digest subscribers erase`.)",
        "Remove",
    ),
}
# The same path for the confirmation (GET) and the action (POST).
_ACTION_PATH = "/admin/subscribers/{action}"


class AdminActions:
    """The POSTs of /admin, and the confirmation pages before the ones that need one."""

    def __init__(self, admin: AdminPages) -> None:
        self.admin = admin
        self.site = admin.site

    def routes(self) -> list[Route]:
        """The routes these actions answer."""
        return [
            Route("/admin/subscribers/{action}", self.confirm, methods=["GET"]),
            Route("/admin/subscribers/{action}", self.change, methods=["POST"]),
            Route("/admin/test-copy", self.test_copy, methods=["POST"]),
            Route("/admin/schedule/{action}", self.schedule, methods=["POST"]),
        ]

    async def _posted(
        self, request: Request, actions: Collection[str]
    ) -> tuple[str, dict[str, str], str] | Response:
        """A POST's session, form and action (the path's last part, one of ``actions``),
        or the refusal: no session, no or a wrong token, or no such action."""
        checked = await self.admin.checked_post(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        action = request.path_params["action"]
        if action not in actions:
            return self.admin.message("Not found", session=session, status=HTTPStatus.NOT_FOUND)
        return session, form, action

    # An address: unsubscribe, resubscribe, remove

    async def confirm(self, request: Request) -> Response:
        """The page that asks before an action on one address."""
        admin = self.admin
        session = admin.session(request)
        if session is None:
            return admin.to_login()
        action = request.path_params["action"]
        if action not in SUBSCRIBER_ACTIONS:
            return admin.message("Not found", session=session, status=HTTPStatus.NOT_FOUND)
        try:
            email = normalise_address(request.query_params.get("email", ""))
            subscriber = await run_in_threadpool(self._found, email)
        except (InvalidAddress, NotFound) as exc:
            return admin.message(str(exc), session=session, status=HTTPStatus.NOT_FOUND)
        force = None
        if action == "resubscribe":
            force = await run_in_threadpool(self._force_needed, subscriber.email, subscriber.status)
        return self._confirmation(session, action, subscriber.email, force=force)

    def _confirmation(
        self,
        session: str,
        action: str,
        email: str,
        *,
        force: str | None,
        problem: str | None = None,
        status: HTTPStatus = HTTPStatus.OK,
    ) -> Response:
        heading, what, button = SUBSCRIBER_ACTIONS[action]
        return self.admin.page(
            "admin_confirm.html.j2",
            status,
            session=session,
            heading=heading.format(email=email),
            paragraphs=[what],
            action=_ACTION_PATH.format(action=action),
            email=email,
            button=button,
            danger=action != "resubscribe",
            force=force,
            problem=problem,
        )

    def _found(self, email: str) -> Subscriber:
        found = self.site.store.subscribers.find(email)
        if found is None:
            raise NotFound(f"{email} is not on the list")
        return found

    def _force_needed(self, email: str, status: SubscriberStatus) -> str | None:
        """What the operator must tick to resubscribe an address that needs forcing."""
        if status in operator.SUPPRESSED:
            why = operator.suppression(self.site.store, email) or status.value
            return (
                f"It is suppressed ({why}). I am sure: mailing it again can hurt the "
                "list's standing with mailbox providers."
            )
        if status is SubscriberStatus.PENDING:
            return (
                "It signed up and never confirmed. I am sure its reader agreed to receive "
                "the digest without the confirmation they were promised."
            )
        return None

    async def change(self, request: Request) -> Response:
        """Unsubscribe, resubscribe or remove one address, as confirmed."""
        admin = self.admin
        posted = await self._posted(request, SUBSCRIBER_ACTIONS)
        if isinstance(posted, Response):
            return posted
        session, form, action = posted
        now = self.site.clock()
        # Not the request's address: a reader's copy of their data shows their history.
        by = "the operator"
        try:
            email = normalise_address(form.get("email", ""))
            if action == "remove":
                await run_in_threadpool(operator.remove, self.site.store, email)
                done = "removed"
            elif action == "unsubscribe":
                change = await run_in_threadpool(
                    lambda: operator.unsubscribe(
                        self.site.store, email, via="/admin", by=by, now=now
                    )
                )
                done = "unsubscribed" if change.changed else "unchanged"
            else:
                change = await run_in_threadpool(
                    lambda: operator.resubscribe(
                        self.site.store,
                        email,
                        via="/admin",
                        by=by,
                        now=now,
                        force=form.get("force") == "yes",
                        to_force='tick "I am sure"',
                    )
                )
                done = "resubscribed" if change.changed else "unchanged"
        except (InvalidAddress, NotFound) as exc:
            return admin.message(str(exc), session=session, status=HTTPStatus.NOT_FOUND)
        except InputError as exc:
            try:
                subscriber = await run_in_threadpool(self._found, email)
            except NotFound as gone:
                return admin.message(str(gone), session=session, status=HTTPStatus.NOT_FOUND)
            force = await run_in_threadpool(self._force_needed, subscriber.email, subscriber.status)
            return self._confirmation(
                session, action, email, force=force, problem=str(exc), status=HTTPStatus.CONFLICT
            )
        detail = done if done != "unchanged" else "nothing changed"
        await run_in_threadpool(admin.record, request, action, email, detail)
        query = urlencode({"email": email, "done": done})
        return RedirectResponse(
            f"/admin/subscribers?{query}", status_code=HTTPStatus.SEE_OTHER, headers=PRIVATE
        )

    # A test copy

    async def test_copy(self, request: Request) -> Response:
        """Send a [TEST] copy of today's issue to one address; no ledger is touched."""
        admin = self.admin
        checked = await admin.checked_post(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        settings = self.site.settings
        try:
            address = normalise_address(form.get("email", ""))
        except InvalidAddress as exc:
            return admin.message(
                "No test copy sent", str(exc), session=session, status=HTTPStatus.BAD_REQUEST
            )
        day = pipeline.today(settings, self.site.clock())
        try:
            transport, secret_key = transport_for(settings)
            try:
                report = await sending.send_test_copies(
                    settings, self.site.store, day, transport, [address], secret_key=secret_key
                )
            finally:
                await transport.close()
        except DigestError as exc:
            await run_in_threadpool(admin.record, request, "test copy", address, f"failed: {exc}")
            return admin.message(
                "No test copy sent",
                f"The test copy of {day.isoformat()} could not be made: {exc}",
                session=session,
                status=HTTPStatus.INTERNAL_SERVER_ERROR,
            )
        if report.nothing_new:
            outcome, status = f"nothing new to send for {day.isoformat()}", HTTPStatus.CONFLICT
        elif report.failed:
            outcome = f"not accepted by {destination(settings)} (the log says why)"
            status = HTTPStatus.BAD_GATEWAY
        else:
            outcome, status = f"sent to {destination(settings)}", HTTPStatus.OK
        await run_in_threadpool(
            admin.record, request, "test copy", address, f"{day.isoformat()}: {outcome}"
        )
        heading = "Test copy sent" if status is HTTPStatus.OK else "No test copy sent"
        return admin.message(
            heading,
            f"The test copy of the issue of {day.isoformat()} to {address}: {outcome}.",
            session=session,
            status=status,
        )

    # The next scheduled send

    async def schedule(self, request: Request) -> Response:
        """Skip the scheduled send of a day, or resume it."""
        admin = self.admin
        posted = await self._posted(request, ("skip", "resume"))
        if isinstance(posted, Response):
            return posted
        session, form, action = posted
        settings = self.site.settings
        now = self.site.clock()
        try:
            day = dt.date.fromisoformat(form.get("day", ""))
        except ValueError:
            return admin.message(
                "Nothing changed",
                f"day: {form.get('day', '')!r} is not a date (YYYY-MM-DD)",
                session=session,
                status=HTTPStatus.BAD_REQUEST,
            )
        if day < pipeline.today(settings, now):
            return admin.message(
                "Nothing changed",
                f"The send of {day.isoformat()} is past: only a day to come can be "
                f"{'skipped' if action == 'skip' else 'resumed'}.",
                session=session,
                status=HTTPStatus.BAD_REQUEST,
            )
        store = self.site.store
        if action == "skip":
            # A send that began is stopped by stopping `digest schedule`, not by a skip:
            # the skip would only keep its retries and catch-up from finishing it.
            began = await run_in_threadpool(store.issues.rendering, day)
            if began is not None:
                return admin.message(
                    "Nothing changed",
                    f"The send of {day.isoformat()} already began: it cannot be skipped.",
                    session=session,
                    status=HTTPStatus.CONFLICT,
                )
            changed = await run_in_threadpool(lambda: store.operator.skip(day, now=now))
        else:
            changed = await run_in_threadpool(store.operator.resume, day)
        detail = day.isoformat() if changed else f"{day.isoformat()}: it was already so"
        await run_in_threadpool(admin.record, request, f"{action} send", "schedule", detail)
        if action == "resume" and changed and not _still_to_come(settings, day, now):
            # Its time went by while it was skipped: the schedule will not make it today.
            return admin.message(
                "Resumed",
                f"The scheduled time of the send of {day.isoformat()} has passed: "
                f"`digest send --date {day.isoformat()}` sends it now.",
                session=session,
            )
        return RedirectResponse("/admin", status_code=HTTPStatus.SEE_OTHER, headers=PRIVATE)


def _still_to_come(settings: Settings, day: dt.date, now: dt.datetime) -> bool:
    """Whether the schedule still has a run on ``day`` (in its zone) after ``now``."""
    zone = settings.schedule.zone
    upcoming = cron_trigger(settings.schedule.cron, zone).get_next_fire_time(
        None, now.astimezone(zone)
    )
    return upcoming is not None and upcoming.date() == day
