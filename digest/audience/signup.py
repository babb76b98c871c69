"""The signup form's defences against bots, without I/O: a signed form token that carries
the time the form was served, and a honeypot field that people never see.

A bot that posts the form without loading it has no token; one that loads and posts at
once is too fast for a person (under two seconds); one that replays an old form finds it
expired (after a day). A field hidden from people but named like a real one catches bots
that fill every field.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer

__all__ = [
    "FORM_MAX_AGE",
    "FORM_MIN_AGE",
    "HONEYPOT_FIELD",
    "TOKEN_FIELD",
    "FormToken",
    "SignupForm",
    "form_token",
    "read_form_token",
    "screen",
]

# Quicker than a person types an address; older than a page is left open.
FORM_MIN_AGE = dt.timedelta(seconds=2)
FORM_MAX_AGE = dt.timedelta(days=1)
# Named like a field a bot would fill; hidden from people, labelled for screen readers.
HONEYPOT_FIELD = "website"
TOKEN_FIELD = "form_token"
_SALT = "digest.signup-form"


@dataclass(frozen=True, kw_only=True, slots=True)
class SignupForm:
    """What a POST to /subscribe carried, and where it came from."""

    email: str
    name: str | None = None
    honeypot: str = ""
    token: str = ""
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FormToken:
    """What a valid form token says: when the form was served, and which consent wording
    it showed (the SHA-256 of the text, in hex, as the text is stored)."""

    served_at: dt.datetime
    consent_sha256: str


def form_token(secret_key: str, now: dt.datetime, consent_sha256: str) -> str:
    """A token for a form served at ``now`` showing the consent with that hash; a nonce
    makes no two alike."""
    payload = f"{int(now.timestamp())}.{secrets.token_urlsafe(6)}.{consent_sha256}"
    return Signer(secret_key, salt=_SALT).sign(payload).decode("ascii")


def read_form_token(secret_key: str, token: str) -> FormToken | None:
    """What a form token says, or None when it is forged, altered or malformed."""
    try:
        payload = Signer(secret_key, salt=_SALT).unsign(token.encode("ascii")).decode("ascii")
        served, _, consent = payload.split(".")
        return FormToken(
            served_at=dt.datetime.fromtimestamp(int(served), dt.UTC), consent_sha256=consent
        )
    except (BadSignature, UnicodeError, ValueError, OverflowError, OSError):
        return None


def screen(form: SignupForm, secret_key: str, now: dt.datetime) -> str | None:
    """Why the post looks like a bot's ("honeypot", "no-token", "too-fast", "expired"),
    or None when it looks like a person's."""
    if form.honeypot.strip():
        return "honeypot"
    token = read_form_token(secret_key, form.token)
    if token is None:
        return "no-token"
    age = now - token.served_at
    if age < FORM_MIN_AGE:
        return "too-fast"
    if age > FORM_MAX_AGE:
        return "expired"
    return None
