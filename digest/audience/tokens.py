"""Signed unsubscribe tokens: they name a subscriber and a list, and cannot be forged.

A token also carries a short keyed hash of the subscriber's address, never the address:
if a subscriber is removed and SQLite later gives their id to someone new, the old link
no longer matches anyone and unsubscribes nobody.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, Signer
from pydantic import SecretStr

from digest.errors import ConfigError

__all__ = [
    "MIN_SECRET_KEY_LENGTH",
    "PREVIEW_KEY",
    "UnsubscribeToken",
    "read_unsubscribe_token",
    "required_key",
    "unsubscribe_token",
]

# Unsubscribe links are signed with the secret key: shorter ones can be guessed.
MIN_SECRET_KEY_LENGTH = 32
# Used by `digest preview` only, which says so: real sends refuse to start without a key.
PREVIEW_KEY = "digest-preview-key-not-secret"
_SALT = "digest.unsubscribe"
_ADDRESS_SALT = b"digest.unsubscribe.address\n"
# 60 bits: enough that a reused id is never mistaken, short enough for the URL.
_TAG_LENGTH = 10


@dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    """What a valid token says."""

    subscriber_id: int
    list_id: str
    address_tag: str

    def is_for(self, secret_key: str, email: str) -> bool:
        """True when the token was made for the subscriber with this address.

        Raises ValueError for a key too short to sign with (see :func:`unsubscribe_token`).
        """
        return hmac.compare_digest(self.address_tag, _address_tag(_checked(secret_key), email))


def required_key(secret_key: SecretStr | None, *, needed_by: str) -> str:
    """The configured key for ``needed_by`` ("a real send", "digest serve"), or why not.

    Settings refuse a short key when they are read; this holds for settings made
    otherwise, with one message wherever a key is required.
    """
    if secret_key is None:
        raise ConfigError(
            f"DIGEST_SECRET_KEY is not set: {needed_by} needs the key that signs unsubscribe links"
        )
    key = secret_key.get_secret_value()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"DIGEST_SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters: "
            f"{needed_by} refuses it, since links signed with it could be forged"
        )
    return key


def _checked(secret_key: str) -> str:
    # Settings refuse short keys already; this is the last line, because a token signed
    # with an empty key can be made by anyone who knows a subscriber's id.
    if len(secret_key) < MIN_SECRET_KEY_LENGTH and secret_key != PREVIEW_KEY:
        raise ValueError(
            f"an unsubscribe token key must be at least {MIN_SECRET_KEY_LENGTH} characters"
        )
    return secret_key


@lru_cache(maxsize=4)
def _signer(secret_key: str) -> Signer:
    # One signer per key: a token is made for every message of every send.
    return Signer(secret_key, salt=_SALT)


def _address_tag(secret_key: str, email: str) -> str:
    # Keyed, so a token cannot be tested against a guessed address without the key.
    digest = hmac.new(
        secret_key.encode("utf-8"), _ADDRESS_SALT + email.casefold().encode("utf-8"), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:_TAG_LENGTH]


def unsubscribe_token(secret_key: str, *, subscriber_id: int, list_id: str, email: str) -> str:
    """A URL-safe token for one subscriber of one list; it carries no address.

    Raises ValueError when ``secret_key`` is shorter than 32 characters (the preview key
    aside): links signed with it could be forged.
    """
    tag = _address_tag(_checked(secret_key), email)
    payload = base64.urlsafe_b64encode(f"{subscriber_id}\n{list_id}\n{tag}".encode()).rstrip(b"=")
    return _signer(secret_key).sign(payload).decode("ascii")


def read_unsubscribe_token(secret_key: str, token: str) -> UnsubscribeToken | None:
    """What a token says, or None if it is forged, altered or malformed.

    Raises ValueError for a key too short to sign with (see :func:`unsubscribe_token`).
    """
    _checked(secret_key)
    try:
        payload = _signer(secret_key).unsign(token.encode("ascii"))
        decoded = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)).decode("utf-8")
    except (BadSignature, UnicodeError, binascii.Error, ValueError):
        return None
    parts = decoded.split("\n")
    if len(parts) != 3:
        return None
    subscriber_id, list_id, tag = parts
    if not subscriber_id.isdigit() or not list_id or len(tag) != _TAG_LENGTH:
        return None
    return UnsubscribeToken(int(subscriber_id), list_id, tag)
