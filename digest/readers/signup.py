"""Signup with double opt-in: a form post becomes a pending address and a confirmation
mail; the mail's link, posted, makes it active. Pending addresses never confirmed are
removed after ``signup.pending_days``.

What the form's poster is told never depends on whether the address is on the list: every
outcome but a malformed address shows the same page, and the mail (if any) is sent after
the answer. Each attempt is counted under a keyed hash of its IP and of its address,
whatever its outcome, and refused ones are logged with the reason.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass

from digest.audience.listid import accepted_list_ids
from digest.audience.signup import SignupForm, read_form_token, screen
from digest.audience.subscribers import normalise_address, normalise_name
from digest.audience.tokens import Purpose, keyed_hash, read_subscriber_token
from digest.errors import InvalidAddress, InvalidName
from digest.models import JoinedVia, Subscriber, SubscriberStatus
from digest.options import list_naming
from digest.settings import Settings
from digest.store import Store
from digest.store.consent import Evidence

log = logging.getLogger(__name__)

__all__ = [
    "RESEND_AFTER",
    "Confirmation",
    "Signup",
    "SignupResult",
    "confirm",
    "consent_text",
    "judge_link",
    "remove_unconfirmed",
    "sign_up",
    "subscriber_of",
    "typing_problem",
]

_HOUR = dt.timedelta(hours=1)
# A pending address gets one confirmation mail an hour at most, however often it signs up.
RESEND_AFTER = _HOUR


class Signup(enum.StrEnum):
    """What became of a signup; only ``INVALID`` shows the poster anything different."""

    # A new address, or one that had left: a confirmation mail goes out.
    ACCEPTED = "accepted"
    # Pending already: the confirmation again, once an hour at most.
    RESENT = "resent"
    TOO_SOON = "too-soon"
    ALREADY_ACTIVE = "already-active"
    SUPPRESSED = "suppressed"
    ERASED = "erased"
    RATE_LIMITED = "rate-limited"
    # A bot, by the form's defences: honeypot, no-token, too-fast, expired.
    BOT = "bot"
    INVALID = "invalid"


@dataclass(frozen=True, kw_only=True, slots=True)
class SignupResult:
    """The outcome; ``confirm_to`` is whom a confirmation mail goes to now, if anyone."""

    outcome: Signup
    detail: str = ""
    confirm_to: Subscriber | None = None


def consent_text(settings: Settings) -> str:
    """The consent wording the form shows, as it is kept with each signup."""
    return settings.signup.consent_text.format(newsletter_name=settings.newsletter_name)


def typing_problem(form: SignupForm) -> str | None:
    """What is wrong with the address or name as typed, or None: nothing about the list."""
    try:
        normalise_address(form.email)
        normalise_name(form.name or None)
    except (InvalidAddress, InvalidName) as exc:
        return str(exc)
    return None


def sign_up(
    settings: Settings, store: Store, form: SignupForm, *, secret_key: str, now: dt.datetime
) -> SignupResult:
    """Judge one form post and record it; the caller sends the confirmation, if any."""
    try:
        email = normalise_address(form.email)
        name = normalise_name(form.name or None)
    except (InvalidAddress, InvalidName) as exc:
        # About the text typed, not the list: the poster may be told and try again.
        return SignupResult(outcome=Signup.INVALID, detail=str(exc))
    keys = {"address": keyed_hash(secret_key, email, purpose="address")}
    if form.ip:
        keys["ip"] = keyed_hash(secret_key, form.ip, purpose="ip")
    result = _judge(settings, store, form, email, name, keys, secret_key=secret_key, now=now)
    store.signups.record(keys, str(result.outcome), now=now)
    if result.outcome not in (Signup.ACCEPTED, Signup.RESENT):
        # No address in the log: the reason, and which rule.
        log.info("signup not confirmed by mail: %s%s", result.outcome, _detail(result))
    return result


def _detail(result: SignupResult) -> str:
    return f" ({result.detail})" if result.detail else ""


def _judge(
    settings: Settings,
    store: Store,
    form: SignupForm,
    email: str,
    name: str | None,
    keys: dict[str, str],
    *,
    secret_key: str,
    now: dt.datetime,
) -> SignupResult:
    bot = screen(form, secret_key, now)
    if bot is not None:
        return SignupResult(outcome=Signup.BOT, detail=bot)
    limits = settings.signup
    for scope, limit in (("ip", limits.per_ip_per_hour), ("address", limits.per_address_per_hour)):
        if scope in keys and store.signups.count_since(scope, keys[scope], now - _HOUR) >= limit:
            return SignupResult(outcome=Signup.RATE_LIMITED, detail=f"{limit} an hour per {scope}")
    if store.erasures.erased_at([keys["address"]]):
        return SignupResult(outcome=Signup.ERASED)
    token = read_form_token(secret_key, form.token)
    assert token is not None  # screened above
    # The wording the form showed when it was served, even if the setting changed since.
    shown = store.consent.text(token.consent_sha256) or consent_text(settings)
    evidence = Evidence(
        method=JoinedVia.FORM,
        text=shown,
        ip=form.ip if settings.privacy.store_ip else None,
        ip_hash=keys.get("ip"),
        user_agent=(form.user_agent or "")[:500] or None,
    )
    subscriber = store.subscribers.find(email)
    if subscriber is None:
        held = store.subscribers.held_by_history(email)
        if held is not None:
            # It bounced or complained before it was removed: nothing is kept of this
            # post (it may be someone else's data), and nothing is sent.
            return SignupResult(outcome=Signup.SUPPRESSED, detail=str(held))
        subscriber, added = store.subscribers.add(
            email,
            name,
            now=now,
            source="form",
            evidence=evidence,
            pending=True,
            cause="signed up through the form",
        )
        if added:
            if subscriber.status is not SubscriberStatus.PENDING:
                # Removed once, and it had bounced or complained: it stays suppressed.
                return SignupResult(outcome=Signup.SUPPRESSED, detail=str(subscriber.status))
            store.preferences.claim_confirmation(subscriber.id, now=now, every=RESEND_AFTER)
            return SignupResult(outcome=Signup.ACCEPTED, confirm_to=subscriber)
    status = subscriber.status
    if status is SubscriberStatus.ACTIVE:
        return SignupResult(outcome=Signup.ALREADY_ACTIVE)
    if status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
        store.preferences.note(
            subscriber.id,
            "signup-refused",
            f"signed up again through the form while {status}",
            now=now,
        )
        return SignupResult(outcome=Signup.SUPPRESSED, detail=str(status))
    if not store.preferences.claim_confirmation(subscriber.id, now=now, every=RESEND_AFTER):
        return SignupResult(outcome=Signup.TOO_SOON)
    if status is SubscriberStatus.PENDING:
        return SignupResult(outcome=Signup.RESENT, confirm_to=subscriber)
    # Unsubscribed, and asking to come back: their new consent, confirmed by mail.
    store.consent.add(subscriber.id, evidence, now=now)
    store.preferences.note(
        subscriber.id, "signed-up", "signed up again through the form after leaving", now=now
    )
    return SignupResult(outcome=Signup.ACCEPTED, confirm_to=subscriber)


class Confirmation(enum.StrEnum):
    """What a confirmation link did."""

    CONFIRMED = "confirmed"
    ALREADY = "already"
    EXPIRED = "expired"
    # Forged, altered, for another list, or for an address no longer on the list.
    INVALID = "invalid"


def subscriber_of(
    settings: Settings, store: Store, purpose: Purpose, token: str, *, secret_key: str
) -> tuple[Subscriber, dt.datetime | None] | None:
    """Whom a token for ``purpose`` names, with when it was issued (a confirmation's), or
    None when it is forged, for another list, or its address is no longer on the list."""
    found = read_subscriber_token(secret_key, purpose, token)
    if found is None or found.list_id not in accepted_list_ids(
        list_naming(settings), store.list_ids
    ):
        return None
    subscriber = store.subscribers.by_id(found.subscriber_id)
    if subscriber is None or not found.is_for(secret_key, subscriber.email):
        return None
    return subscriber, found.issued_at


def judge_link(
    settings: Settings,
    store: Store,
    subscriber: Subscriber,
    issued_at: dt.datetime,
    *,
    now: dt.datetime,
) -> Confirmation | None:
    """What a confirmation link issued at ``issued_at`` can do for ``subscriber``: None when
    it may confirm them, else why not."""
    status = subscriber.status
    if status is SubscriberStatus.ACTIVE:
        return Confirmation.ALREADY
    if status not in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        # Bounced or complained since: a link never brings those back.
        return Confirmation.INVALID
    if status is SubscriberStatus.UNSUBSCRIBED:
        # Only a link from a signup made after they left: an older one, still in their
        # inbox, must not undo the unsubscribe.
        left = store.consent.last_change_to(subscriber.id, SubscriberStatus.UNSUBSCRIBED)
        if left is not None and issued_at < left.replace(microsecond=0):
            return Confirmation.INVALID
    if now - issued_at > dt.timedelta(hours=settings.signup.confirm_hours):
        return Confirmation.EXPIRED
    return None


def confirm(
    settings: Settings, store: Store, token: str, *, secret_key: str, now: dt.datetime
) -> tuple[Confirmation, Subscriber | None]:
    """Confirm the signup a link's token names; the subscriber, when it named one."""
    found = subscriber_of(settings, store, Purpose.CONFIRM, token, secret_key=secret_key)
    if found is None:
        return Confirmation.INVALID, None
    subscriber, issued_at = found
    assert issued_at is not None
    refused = judge_link(settings, store, subscriber, issued_at, now=now)
    if refused is not None:
        return refused, subscriber
    if not store.preferences.confirm(subscriber.id, now=now):
        # Changed between the two reads (bounced, or confirmed by another click).
        return Confirmation.INVALID, subscriber
    log.info("subscriber %d confirmed their signup", subscriber.id)
    return Confirmation.CONFIRMED, store.subscribers.by_id(subscriber.id)


def remove_unconfirmed(settings: Settings, store: Store, *, now: dt.datetime) -> int:
    """Delete the addresses that signed up and never confirmed within ``signup.pending_days``,
    and forget signup attempts older than a day; how many addresses."""
    removed = store.preferences.remove_unconfirmed(
        before=now - dt.timedelta(days=settings.signup.pending_days)
    )
    store.signups.prune(now - dt.timedelta(days=1))
    if removed:
        log.info("removed %d signups never confirmed", removed)
    return removed
