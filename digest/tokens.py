"""Signed unsubscribe tokens: they name a subscriber and a list, and cannot be forged."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from itsdangerous import BadSignature, Signer

__all__ = ["PREVIEW_KEY", "read_unsubscribe_token", "unsubscribe_token"]

# Used by `digest preview` only, which says so: real sends refuse to start without a key.
PREVIEW_KEY = "digest-preview-key-not-secret"
_SALT = "digest.unsubscribe"


@lru_cache(maxsize=4)
def _signer(secret_key: str) -> Signer:
    # One signer per key: a token is made for every message of every send.
    return Signer(secret_key, salt=_SALT)


def unsubscribe_token(secret_key: str, *, subscriber_id: int, list_id: str) -> str:
    """A URL-safe token for one subscriber of one list; it carries no address."""
    payload = base64.urlsafe_b64encode(f"{subscriber_id}\n{list_id}".encode()).rstrip(b"=")
    return _signer(secret_key).sign(payload).decode("ascii")


def read_unsubscribe_token(secret_key: str, token: str) -> tuple[int, str] | None:
    """The subscriber id and list a token names, or None if it is forged, altered or malformed."""
    try:
        payload = _signer(secret_key).unsign(token.encode("ascii"))
        decoded = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)).decode("utf-8")
    except (BadSignature, UnicodeError, binascii.Error, ValueError):
        return None
    subscriber_id, _, list_id = decoded.partition("\n")
    if not subscriber_id.isdigit() or not list_id:
        return None
    return int(subscriber_id), list_id
