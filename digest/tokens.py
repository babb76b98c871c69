"""Signed unsubscribe tokens: they name a subscriber and a list, and cannot be forged."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

__all__ = ["PREVIEW_KEY", "read_unsubscribe_token", "unsubscribe_token"]

# Used by `digest preview` only, which says so: real sends refuse to start without a key.
PREVIEW_KEY = "digest-preview-key-not-secret"
_SALT = "digest.unsubscribe"


def unsubscribe_token(secret_key: str, *, subscriber_id: int, list_id: str) -> str:
    """A URL-safe token for one subscriber of one list; it carries no address."""
    return str(URLSafeSerializer(secret_key, salt=_SALT).dumps([subscriber_id, list_id]))


def read_unsubscribe_token(secret_key: str, token: str) -> tuple[int, str] | None:
    """The subscriber id and list a token names, or None if it is forged, altered or malformed."""
    try:
        payload = URLSafeSerializer(secret_key, salt=_SALT).loads(token)
    except BadSignature:
        return None
    match payload:
        case [int() as subscriber_id, str() as list_id]:
            return subscriber_id, list_id
        case _:
            return None
