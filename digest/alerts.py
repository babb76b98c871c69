"""Telling the operator when something goes wrong, without their watching a terminal.

``digest schedule`` calls :func:`after_send` with each day's outcome and
:func:`after_bounces` after reading bounces. What goes wrong becomes one :class:`Alert`
per cause per day (kept in the database, so a second process or a second failure of the
same kind does not send it again): by mail to ``alerts.email``, and as JSON
``{"text": ...}``, which Slack's and Mattermost's incoming webhooks take, to
``alerts.webhook_url``.

The mail goes through ``alerts.relay`` when set, else as the issue goes. When that relay
is what failed, the mail is tried once and its failure logged: the webhook and the log
still carry the alert.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from digest import pipeline, sending
from digest.clock import utc_now
from digest.delivery.mailer import OutboxTransport, RelayPool, Transport
from digest.errors import CheckFailed, DigestError
from digest.models import BounceKind
from digest.settings import Settings
from digest.store import Store

__all__ = ["Alert", "after_bounces", "after_send", "alert_message", "send_alert", "send_stopped"]

log = logging.getLogger(__name__)

# How long the webhook may take to answer.
_WEBHOOK_TIMEOUT = 10.0
# Issues whose rates are looked at after bounces are read: those of the last days.
_RECENT_ISSUES = 7


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    """One thing the operator should know: its cause (one a day), a title, the detail."""

    cause: str
    title: str
    detail: str


def send_stopped(day: dt.date, outcome: DigestError) -> Alert:
    """The alert for a send of ``day`` that stopped or could not start."""
    when = day.isoformat()
    if isinstance(outcome, CheckFailed):
        return Alert(
            cause="check-failed",
            title=f"The send of {when} did not start",
            detail=f"{outcome}. `digest check` shows what failed; the send is retried "
            "after schedule.retry_minutes.",
        )
    return Alert(
        cause="send-stopped",
        title=f"The send of {when} stopped",
        detail=f"{outcome}. `digest status --date {when}` shows where it stands; what is "
        "left is retried after schedule.retry_minutes, or sent by `digest send --date "
        f"{when}`.",
    )


async def after_send(
    settings: Settings,
    store: Store,
    day: dt.date,
    outcome: sending.SendReport | DigestError,
    *,
    now: dt.datetime | None = None,
) -> list[Alert]:
    """The alerts a day's send gives (sent, once a day each); interrupted sends give none."""
    found: list[Alert] = []
    if isinstance(outcome, sending.SendInterrupted):
        return found
    if isinstance(outcome, DigestError):
        found.append(send_stopped(day, outcome))
    elif outcome.nothing_new:
        days = settings.alerts.empty_days
        latest = await asyncio.to_thread(
            store.issues.latest_date, before=day + dt.timedelta(days=1)
        )
        if latest is None or (day - latest).days >= days:
            since = "no issue has gone out yet" if latest is None else f"the last was {latest}"
            found.append(
                Alert(
                    cause="nothing-new",
                    title=f"Nothing new to send for {days} days",
                    detail=f"No new article in {settings.seeds_dir} for {days} days in a row "
                    f"up to {day.isoformat()} ({since}). Are the seeds still being scraped?",
                )
            )
    for alert in found:
        await send_alert(settings, store, alert, now=now)
    return found


async def after_bounces(
    settings: Settings, store: Store, *, now: dt.datetime | None = None
) -> list[Alert]:
    """The alerts for recent issues whose hard bounces or complaints passed their rate."""
    found = []
    limits = (
        (BounceKind.HARD, settings.alerts.bounce_rate, "hard bounces", "bounce-rate"),
        (BounceKind.COMPLAINT, settings.alerts.complaint_rate, "complaints", "complaint-rate"),
    )
    for stats in await asyncio.to_thread(store.returns.stats, last=_RECENT_ISSUES):
        for kind, limit, what, cause in limits:
            rate = stats.rate(kind)
            if rate > limit:
                found.append(
                    Alert(
                        cause=f"{cause}-{stats.date.isoformat()}",
                        title=f"The issue of {stats.date.isoformat()}: {what} at {rate:.2%}",
                        detail=f"{stats.by_kind.get(kind.value, 0)} {what} for {stats.sent} "
                        f"copies sent ({rate:.2%}, over {limit:.2%}). Mailbox providers "
                        "throttle and then block senders past their limits: `digest bounces "
                        "stats` and `digest bounces list` show what came back.",
                    )
                )
    for alert in found:
        await send_alert(settings, store, alert, now=now)
    return found


async def send_alert(
    settings: Settings, store: Store, alert: Alert, *, now: dt.datetime | None = None
) -> bool:
    """Tell the operator, unless ``alert``'s cause was told today; True if told now."""
    now = now or utc_now()
    today = pipeline.today(settings, now)
    log.error("alert: %s: %s", alert.title, alert.detail)
    claimed = await asyncio.to_thread(
        store.alerts.claim, alert.cause, today, title=alert.title, detail=alert.detail, now=now
    )
    if not claimed:
        return False
    if settings.alerts.email:
        await _mail(settings, alert, now)
    if settings.alerts.webhook_url is not None:
        await asyncio.to_thread(_post, settings, alert)
    return True


def alert_message(settings: Settings, alert: Alert, now: dt.datetime) -> bytes:
    """The alert as a mail to ``alerts.email``: plain text, marked as sent by a machine."""
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.from_address
    message["To"] = settings.alerts.email
    message["Subject"] = f"[{settings.newsletter_name}] {alert.title}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=settings.sending_domain)
    # RFC 3834: no auto-responder answers it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"{alert.title}\n\n{alert.detail}\n\n-- \ndigest schedule\n")
    return message.as_bytes()


def _transport(settings: Settings) -> Transport:
    relay = settings.alerts.relay_address
    if relay is not None:
        host, port = relay
        return RelayPool(
            settings.smtp.model_copy(
                update={"host": host, "port": port or settings.smtp.port, "hosts": None}
            )
        )
    if settings.smtp.relays:
        return RelayPool(settings.smtp)
    return OutboxTransport(settings.outbox_dir)


async def _mail(settings: Settings, alert: Alert, now: dt.datetime) -> None:
    recipient = settings.alerts.email
    assert recipient is not None
    transport = _transport(settings)
    try:
        # Once: the relay may be what failed, and the webhook does not wait for it.
        await transport.send(
            alert_message(settings, alert, now), sender=settings.from_address, recipient=recipient
        )
    except DigestError as exc:
        log.error("the alert mail to %s could not be sent: %s", recipient, exc)
    finally:
        await transport.close()


def _post(settings: Settings, alert: Alert) -> None:
    webhook = settings.alerts.webhook_url
    assert webhook is not None
    body = json.dumps({"text": f"*{alert.title}*\n{alert.detail}"}).encode()
    request = urllib.request.Request(
        webhook.get_secret_value(),
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_WEBHOOK_TIMEOUT) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        # The URL holds the webhook's token: never in a log line.
        log.error("the alert webhook answered %d", exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        log.error("the alert webhook could not be reached: %s", reason)
