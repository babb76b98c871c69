"""The preference page every copy links to: a reader changes their name, pauses until a
day, unsubscribes or comes back, downloads their data, or deletes themselves.

The link is the reader's key (signed like the unsubscribe link); a GET only shows the
page, and every change is a POST. No page shows the address.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from http import HTTPStatus

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import pipeline
from digest.audience.subscribers import normalise_name
from digest.audience.tokens import Purpose
from digest.errors import InvalidName
from digest.models import Subscriber, SubscriberStatus
from digest.readers.erasure import erase
from digest.readers.record import held_about
from digest.readers.signup import subscriber_of
from digest.web.readers import BAD_LINK, form_field, reader_words
from digest.web.site import Site

log = logging.getLogger(__name__)

__all__ = ["PAUSE_LIMIT", "PreferencePages"]

# The longest break the page offers; longer, and unsubscribing is clearer.
PAUSE_LIMIT = dt.timedelta(days=365)


class PreferencePages:
    """/preferences and /preferences/TOKEN of one site."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        """The routes these pages answer."""
        return [
            Route("/preferences", self.preferences_help, methods=["GET", "HEAD"]),
            Route("/preferences/{token}", self.preferences_page, methods=["GET", "HEAD"]),
            Route("/preferences/{token}", self.preferences, methods=["POST"]),
        ]

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
        action = form_field(form, "action")
        site = self.site
        store = site.store
        now = site.clock()
        if action == "name":
            try:
                name = normalise_name(form_field(form, "name"))
            except InvalidName as exc:
                return self._preferences(
                    request, subscriber, problem=reader_words(str(exc)), bad=True
                )
            await run_in_threadpool(store.preferences.rename, subscriber.id, name, now=now)
            notice = "Your name is saved." if name else "Your name is removed."
        elif action == "pause" and subscriber.status is SubscriberStatus.ACTIVE:
            until = _date(form_field(form, "until"))
            # Issues are dated in the schedule's zone: so is the pause's day.
            today = pipeline.today(site.settings, now)
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
            raise HTTPException(HTTPStatus.BAD_REQUEST, BAD_LINK)
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
        today = pipeline.today(site.settings, site.clock())
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


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _day(date: dt.date) -> str:
    return f"{date:%A} {date.day} {date:%B %Y}"
