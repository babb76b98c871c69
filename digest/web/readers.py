"""The pages readers manage themselves with: signup and its confirmation, and the
preference page (name, pause, leave, come back, download or delete their data).

A GET never changes anything (link scanners open every link): the confirmation link and
the preference page show a button, and only its POST acts. The signup's answer is the
same page whether or not the address is on the list, and its mail goes after the answer.
"""

from __future__ import annotations

import datetime as dt
import json
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
from digest.audience.subscribers import normalise_name
from digest.audience.tokens import Purpose
from digest.errors import InvalidName
from digest.models import Subscriber, SubscriberStatus
from digest.readers.erasure import erase
from digest.readers.notices import confirmation_mail, send_notice, welcome_mail
from digest.readers.record import held_about
from digest.readers.signup import (
    Confirmation,
    Signup,
    confirm,
    consent_text,
    sign_up,
    subscriber_of,
)
from digest.web.site import Site

log = logging.getLogger(__name__)

__all__ = ["PAUSE_LIMIT", "ReaderPages"]

# The longest break the preference page offers; longer, and unsubscribing is clearer.
PAUSE_LIMIT = dt.timedelta(days=365)
_BAD_LINK = (
    "This link is not valid: it may have been cut short, changed, or be for an address "
    "no longer on the list. Use the link in your own most recent email."
)


class ReaderPages:
    """/subscribe, /confirm/TOKEN and /preferences/TOKEN of one site."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        """The routes these pages answer."""
        return [
            Route("/subscribe", self.subscribe_page, methods=["GET", "HEAD"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/confirm/{token}", self.confirm_page, methods=["GET", "HEAD"]),
            Route("/confirm/{token}", self.confirm, methods=["POST"]),
            Route("/preferences", self.preferences_help, methods=["GET", "HEAD"]),
            Route("/preferences/{token}", self.preferences_page, methods=["GET", "HEAD"]),
            Route("/preferences/{token}", self.preferences, methods=["POST"]),
        ]

    # Signup

    async def subscribe_page(self, request: Request) -> Response:
        return self._form()

    async def subscribe(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=8)
        posted = SignupForm(
            email=_field(form, "email"),
            name=_field(form, "name") or None,
            honeypot=_field(form, HONEYPOT_FIELD),
            token=_field(form, TOKEN_FIELD),
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
        if not posted.token and not posted.honeypot:
            # A form pasted on another site (digest form) has no token: the reader
            # presses Subscribe once more here, on a form that has one.
            return self._form(
                email=posted.email,
                name=posted.name or "",
                prompt="Check your address and press Subscribe to continue.",
            )
        site = self.site
        result = await run_in_threadpool(
            sign_up,
            site.settings,
            site.store,
            posted,
            secret_key=site.secret_key,
            now=site.clock(),
        )
        if result.outcome is Signup.INVALID:
            return self._form(
                email=posted.email,
                name=posted.name or "",
                problem=_reader_words(result.detail),
                status=HTTPStatus.BAD_REQUEST,
            )
        task = (
            BackgroundTask(self._confirm_by_mail, result.confirm_to) if result.confirm_to else None
        )
        response = site.message(
            "Check your inbox",
            [
                "If the address can be subscribed, a message is on its way to it with a link "
                "to confirm. Nothing is sent until you do.",
                "Nothing there after a few minutes? Look in the spam folder, or sign up "
                "again in an hour.",
            ],
        )
        response.background = task
        return response

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

    def _form(
        self,
        *,
        email: str = "",
        name: str = "",
        prompt: str = "",
        problem: str = "",
        status: HTTPStatus = HTTPStatus.OK,
    ) -> Response:
        site = self.site
        return site.page(
            template="web/subscribe.html.j2",
            status=status,
            email=email,
            name=name,
            prompt=prompt,
            problem=problem,
            consent=consent_text(site.settings),
            honeypot_field=HONEYPOT_FIELD,
            token_field=TOKEN_FIELD,
            form_token=form_token(site.secret_key, site.clock()),
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
            raise HTTPException(HTTPStatus.BAD_REQUEST, _BAD_LINK)
        subscriber, issued_at = found
        assert issued_at is not None
        if subscriber.status is SubscriberStatus.ACTIVE:
            return self._subscribed("You are already subscribed")
        if site.clock() - issued_at > dt.timedelta(hours=site.settings.signup.confirm_hours):
            return self._expired()
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
            raise HTTPException(HTTPStatus.BAD_REQUEST, _BAD_LINK)
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

    # Preferences

    async def preferences_help(self, request: Request) -> Response:
        return self.site.message(
            "Your preferences",
            [
                "Your preferences page is linked at the foot of every issue you receive: the "
                "link is your own, and works without a password."
            ],
        )

    async def preferences_page(self, request: Request) -> Response:
        subscriber = await self._reader(request)
        return self._preferences(request, subscriber)

    async def preferences(self, request: Request) -> Response:
        subscriber = await self._reader(request)
        form = await request.form(max_files=0, max_fields=8)
        action = _field(form, "action")
        site = self.site
        store = site.store
        now = site.clock()
        if action == "name":
            try:
                name = normalise_name(_field(form, "name"))
            except InvalidName as exc:
                return self._preferences(
                    request, subscriber, problem=_reader_words(str(exc)), bad=True
                )
            await run_in_threadpool(store.preferences.rename, subscriber.id, name, now=now)
            notice = "Your name is saved." if name else "Your name is removed."
        elif action == "pause" and subscriber.status is SubscriberStatus.ACTIVE:
            until = _date(_field(form, "until"))
            today = now.date()
            if until is None or not today < until <= today + PAUSE_LIMIT:
                return self._preferences(
                    request,
                    subscriber,
                    problem="Choose a day after today and within a year.",
                    bad=True,
                )
            await run_in_threadpool(store.preferences.pause, subscriber.id, until, now=now)
            notice = f"Paused: issues start again on {_day(until)}."
        elif action == "resume":
            await run_in_threadpool(store.preferences.pause, subscriber.id, None, now=now)
            notice = "Resumed: the next issue will come to you."
        elif action == "unsubscribe":
            await run_in_threadpool(
                store.subscribers.unsubscribe,
                subscriber.id,
                now=now,
                cause="the preferences page",
            )
            notice = (
                f"Unsubscribed: you will get no more issues of {site.settings.newsletter_name}."
            )
        elif action == "resubscribe":
            if await run_in_threadpool(store.preferences.resubscribe, subscriber.id, now=now):
                log.info("subscriber %d resubscribed from their preferences", subscriber.id)
                notice = "Welcome back: the next issue will come to you."
            else:
                notice = ""
        elif action == "export":
            return await self._export(subscriber)
        elif action == "erase":
            return site.message(
                "Delete everything?",
                [
                    "Your address, name, the record of your subscription and of the issues "
                    "sent to you will be deleted, and you will get no more issues. This cannot "
                    "be undone. Only a scrambled form of the address is kept, so that it is "
                    "never added back without you."
                ],
                action=request.url.path,
                button="Delete me",
                fields={"action": "erase-confirmed"},
            )
        elif action == "erase-confirmed":
            await run_in_threadpool(
                erase,
                store,
                subscriber.email,
                secret_key=site.secret_key,
                now=now,
                by="the reader, on the preferences page",
            )
            return site.message(
                "Your data is deleted",
                [f"Nothing more will be sent to you from {site.settings.newsletter_name}."],
            )
        else:
            raise HTTPException(HTTPStatus.BAD_REQUEST, "This form asked for nothing known.")
        changed = await run_in_threadpool(store.subscribers.by_id, subscriber.id)
        return self._preferences(request, changed or subscriber, notice=notice)

    async def _export(self, subscriber: Subscriber) -> Response:
        site = self.site
        data = await run_in_threadpool(held_about, site.store, subscriber.email, now=site.clock())
        log.info("subscriber %d downloaded their data", subscriber.id)
        return Response(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n",
            media_type="application/json",
            headers={
                "Content-Disposition": 'attachment; filename="my-subscription-data.json"',
                "Cache-Control": "no-store",
            },
        )

    async def _reader(self, request: Request) -> Subscriber:
        site = self.site
        found = await run_in_threadpool(
            subscriber_of,
            site.settings,
            site.store,
            Purpose.PREFERENCES,
            request.path_params["token"],
            secret_key=site.secret_key,
        )
        if found is None or found[0].status is SubscriberStatus.PENDING:
            raise HTTPException(HTTPStatus.BAD_REQUEST, _BAD_LINK)
        return found[0]

    def _preferences(
        self,
        request: Request,
        subscriber: Subscriber,
        *,
        notice: str = "",
        problem: str = "",
        bad: bool = False,
    ) -> Response:
        site = self.site
        today = site.clock().date()
        return site.page(
            template="web/preferences.html.j2",
            status=HTTPStatus.BAD_REQUEST if bad else HTTPStatus.OK,
            action=request.url.path,
            notice=notice,
            problem=problem,
            state=_state(subscriber, site.settings.newsletter_name, today),
            standing=str(subscriber.status),
            name=subscriber.name or "",
            paused_until=(
                subscriber.paused_until.isoformat()
                if subscriber.paused_until is not None and subscriber.paused_until > today
                else None
            ),
            pause_min=(today + dt.timedelta(days=1)).isoformat(),
            pause_max=(today + PAUSE_LIMIT).isoformat(),
        )


def _state(subscriber: Subscriber, newsletter: str, today: dt.date) -> str:
    match subscriber.status:
        case SubscriberStatus.ACTIVE:
            until = subscriber.paused_until
            if until is not None and until > today:
                return f"You are subscribed, and paused: issues start again on {_day(until)}."
            return f"You are subscribed to {newsletter}."
        case SubscriberStatus.UNSUBSCRIBED:
            return f"You have unsubscribed from {newsletter}."
        case SubscriberStatus.BOUNCED:
            return (
                "Issues are not sent to this address: mail to it was refused. If it works "
                "again, write to us to be added back."
            )
        case SubscriberStatus.COMPLAINED:
            return "Issues are not sent to this address: an issue was reported as spam from it."
        case _:
            return "Your subscription is not confirmed yet."


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _day(date: dt.date) -> str:
    return f"{date:%A} {date.day} {date:%B %Y}"


def _reader_words(detail: str) -> str:
    # The checks' messages name what they refused; a reader needs the gist, capitalised.
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
