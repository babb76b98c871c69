"""The operator's login: the password's argon2 hash, the signed session cookie, and the
CSRF token every form of /admin carries."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, Signer

__all__ = [
    "SESSION_COOKIE",
    "csrf_token",
    "hash_password",
    "login_token",
    "login_token_good",
    "new_session",
    "read_session",
    "verify_password",
]

SESSION_COOKIE = "digest_admin"
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash ``admin.password_hash`` keeps."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` is the one ``password_hash`` was made from."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _signer(secret_key: str, password_hash: str) -> Signer:
    # The hash is part of the key: a new password ends every session made with the old.
    key = hashlib.sha256(f"{secret_key}\n{password_hash}".encode()).digest()
    return Signer(key, salt="digest.admin.session")


def new_session(secret_key: str, password_hash: str, *, now: dt.datetime) -> str:
    """A fresh session cookie's value: a random id and the time it was made, signed."""
    payload = f"{secrets.token_urlsafe(24)}:{int(now.timestamp())}"
    return _signer(secret_key, password_hash).sign(payload).decode("ascii")


def read_session(
    secret_key: str, password_hash: str, value: str, *, now: dt.datetime, hours: float
) -> str | None:
    """The session id in a cookie's ``value``, or None if it is forged, altered or old."""
    try:
        payload = _signer(secret_key, password_hash).unsign(value).decode("ascii")
    except (BadSignature, UnicodeDecodeError):
        return None
    session_id, _, made = payload.rpartition(":")
    if not session_id or not made.isdigit():
        return None
    issued = dt.datetime.fromtimestamp(int(made), tz=dt.UTC)
    if not dt.timedelta(0) <= now - issued <= dt.timedelta(hours=hours):
        return None
    return session_id


def csrf_token(secret_key: str, session_id: str) -> str:
    """The token every form of a session carries: bound to the session, unguessable."""
    return hmac.new(
        secret_key.encode(), f"digest.admin.csrf\n{session_id}".encode(), hashlib.sha256
    ).hexdigest()


def login_token(secret_key: str, *, now: dt.datetime) -> str:
    """The login form's token: signed with the time the form was served."""
    payload = f"{int(now.timestamp())}:{secrets.token_urlsafe(6)}"
    return Signer(secret_key, salt="digest.admin.login").sign(payload).decode("ascii")


def login_token_good(secret_key: str, token: str, *, now: dt.datetime, hours: float) -> bool:
    """True for a login form's token of ours, served within the last ``hours``."""
    try:
        payload = Signer(secret_key, salt="digest.admin.login").unsign(token).decode("ascii")
    except (BadSignature, UnicodeDecodeError):
        return False
    served, _, _ = payload.partition(":")
    if not served.isdigit():
        return False
    age = now - dt.datetime.fromtimestamp(int(served), tz=dt.UTC)
    return dt.timedelta(0) <= age <= dt.timedelta(hours=hours)
