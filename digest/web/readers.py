"""The pages readers join by: the signup form and the confirmation link.

A GET never changes anything (link scanners open every link): the confirmation link
shows a button, and only its POST confirms. The signup's answer is the same page whether
or not the address is on the list, and its mail goes after the answer.
"""

from __future__ import annotations

import datetime as dt
import logging
from http import HTTPStatus

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.audience.signup import HONEYPOT_FIELD, TOKEN_FIELD, SignupForm, form_token
from digest.audience.tokens import Purpose
from digest.errors import DigestError
from digest.models import Subscriber
from digest.readers.notices import confirmation_mail, send_notice, welcome_mail
from digest.readers.signup import (
    Confirmation,
    confirm,
    consent_text,
    judge_link,
    sign_up,
    subscriber_of,
    typing_problem,
)
from digest.web.site import Site

log = logging.getLogger(__name__)

__all__ = ["BAD_LINK", "ReaderPages", "form_field", "reader_words"]

BAD_LINK = (
    "This link is not valid: it may have been cut short, changed, or be for an address "
    "no longer on the list. Use the link in your own most recent email."
)


class ReaderPages:
    """/subscribe and /confirm/TOKEN of one site."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        """The routes these pages answer."""
        return [
            Route("/subscribe", self.subscribe_page, methods=["GET", "HEAD"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/confirm/{token}", self.confirm_page, methods=["GET", "HEAD"]),
            Route("/confirm/{token}", self.confirm, methods=["POST"]),
        ]

    # Signup

    async def subscribe_page(self, request: Request) -> Response:
        return await self._form()

    async def subscribe(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=8)
        posted = SignupForm(
            email=form_field(form, "email"),
            name=form_field(form, "name") or None,
            honeypot=form_field(form, HONEYPOT_FIELD),
            token=form_field(form, TOKEN_FIELD),
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
        if not posted.token and not posted.honeypot:
            # A form pasted on another site (digest form) has no token: the reader
            # presses Subscribe once more here, on a form that has one.
            return await self._form(
                email=posted.email,
                name=posted.name or "",
                prompt="Check your address and press Subscribe to continue.",
            )
        problem = typing_problem(posted)
        if problem is not None:
            # About what was typed, not about the list: the poster may be told.
            return await self._form(
                email=posted.email,
                name=posted.name or "",
                problem=reader_words(problem),
                status=HTTPStatus.BAD_REQUEST,
            )
        # Everything else is judged after the answer, so that neither the page nor the
        # time it takes says anything about the address's standing.
        response = self.site.message(
            "Check your inbox",
            [
                "If the address can be subscribed, a message is on its way to it with a link "
                "to confirm. Nothing is sent until you do.",
                "Nothing there after a few minutes? Look in the spam folder, or sign up "
                "again in an hour.",
            ],
        )
        response.background = BackgroundTask(self._sign_up, posted, self.site.clock())
        return response

    async def _sign_up(self, posted: SignupForm, now: dt.datetime) -> None:
        site = self.site
        try:
            result = await run_in_threadpool(
                sign_up, site.settings, site.store, posted, secret_key=site.secret_key, now=now
            )
            if result.confirm_to is not None:
                await self._confirm_by_mail(result.confirm_to)
        except DigestError as exc:
            # After the answer: nobody to tell but the log (which never gets the address).
            log.error("a signup could not be recorded: %s", type(exc).__name__)

    async def _confirm_by_mail(self, subscriber: Subscriber) -> None:
        site = self.site
        data = await run_in_threadpool(
            confirmation_mail,
            site.settings,
            site.store,
            subscriber,
            secret_key=site.secret_key,
            now=site.clock(),
        )
        if await send_notice(site.settings, data, subscriber.email, what="confirmation"):
            log.info("confirmation mail sent to subscriber %d", subscriber.id)

    async def _form(
        self,
        *,
        email: str = "",
        name: str = "",
        prompt: str = "",
        problem: str = "",
        status: HTTPStatus = HTTPStatus.OK,
    ) -> Response:
        site = self.site
        now = site.clock()
        consent = consent_text(site.settings)
        # Kept before it is shown: a signup records the wording its form showed.
        shown = await run_in_threadpool(site.store.consent.remember_text, consent, now=now)
        return site.page(
            template="web/subscribe.html.j2",
            status=status,
            email=email,
            name=name,
            prompt=prompt,
            problem=problem,
            consent=consent,
            honeypot_field=HONEYPOT_FIELD,
            token_field=TOKEN_FIELD,
            form_token=form_token(site.secret_key, now, shown),
        )

    # Confirmation

    async def confirm_page(self, request: Request) -> Response:
        site = self.site
        token = request.path_params["token"]
        found = await run_in_threadpool(
            subscriber_of,
            site.settings,
            site.store,
            Purpose.CONFIRM,
            token,
            secret_key=site.secret_key,
        )
        if found is None:
            raise HTTPException(HTTPStatus.BAD_REQUEST, BAD_LINK)
        subscriber, issued_at = found
        assert issued_at is not None
        refused = await run_in_threadpool(
            judge_link,
            site.settings,
            site.store,
            subscriber,
            issued_at,
            now=site.clock(),
        )
        if refused is Confirmation.INVALID:
            raise HTTPException(HTTPStatus.BAD_REQUEST, BAD_LINK)
        if refused is Confirmation.EXPIRED:
            return self._expired()
        if refused is Confirmation.ALREADY:
            return self._subscribed("You are already subscribed")
        name = site.settings.newsletter_name
        return site.message(
            f"Confirm your subscription to {name}",
            [f"Press Confirm to start receiving {name}."],
            action=request.url.path,
            button="Confirm",
        )

    async def confirm(self, request: Request) -> Response:
        site = self.site
        outcome, subscriber = await run_in_threadpool(
            confirm,
            site.settings,
            site.store,
            request.path_params["token"],
            secret_key=site.secret_key,
            now=site.clock(),
        )
        if outcome is Confirmation.INVALID:
            raise HTTPException(HTTPStatus.BAD_REQUEST, BAD_LINK)
        if outcome is Confirmation.EXPIRED:
            return self._expired()
        if outcome is Confirmation.ALREADY:
            return self._subscribed("You are already subscribed")
        response = self._subscribed("You are subscribed")
        if site.settings.signup.welcome and subscriber is not None:
            response.background = BackgroundTask(self._welcome, subscriber)
        return response

    async def _welcome(self, subscriber: Subscriber) -> None:
        site = self.site
        data = await run_in_threadpool(
            welcome_mail,
            site.settings,
            site.store,
            subscriber,
            secret_key=site.secret_key,
            now=site.clock(),
        )
        await send_notice(site.settings, data, subscriber.email, what="welcome")

    def _subscribed(self, heading: str) -> Response:
        name = self.site.settings.newsletter_name
        return self.site.message(
            heading,
            [
                f"The next issue of {name} will come to your inbox. Every issue has a link to "
                "your preferences and one to unsubscribe."
            ],
            links=[("/issues", "Past issues")],
        )

    def _expired(self) -> Response:
        return self.site.message(
            "This link has expired",
            [
                f"Confirmation links work for {self.site.settings.signup.confirm_hours:g} "
                "hours. Sign up again to get a new one."
            ],
            links=[("/subscribe", "Sign up again")],
            status=HTTPStatus.BAD_REQUEST,
        )


def form_field(form: FormData, name: str) -> str:
    """A posted field, stripped; "" when absent or a file."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def reader_words(detail: str) -> str:
    """A check's message as a sentence for a reader."""
    # The checks' messages name what they refused; a reader needs the gist, capitalised.
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
