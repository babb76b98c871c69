"""Signed tokens for a subscriber's links (unsubscribe, preferences, confirmation) and keyed
hashes of addresses and IPs: they name a subscriber and a list, and cannot be forged.

A token also carries a short keyed hash of the subscriber's address, never the address:
if a subscriber is removed and SQLite later gives their id to someone new, the old link
no longer matches anyone and unsubscribes nobody.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, Signer
from itsdangerous.encoding import base64_encode, want_bytes
from pydantic import SecretStr

from digest.errors import ConfigError

__all__ = [
    "MIN_SECRET_KEY_LENGTH",
    "PREVIEW_KEY",
    "Purpose",
    "UnsubscribeToken",
    "keyed_hash",
    "personal_tokens",
    "read_subscriber_token",
    "read_unsubscribe_token",
    "required_key",
    "subscriber_token",
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


class Purpose(enum.StrEnum):
    """What a subscriber's token is for: each is signed apart, so one is never another."""

    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    # Signed with the time it was made: it expires (signup.confirm_hours).
    CONFIRM = "confirm"


@dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    """What a valid token says."""

    subscriber_id: int
    list_id: str
    address_tag: str
    # When it was made, for a token that carries it (a confirmation link's).
    issued_at: dt.datetime | None = None

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


@lru_cache(maxsize=8)
def _signer(secret_key: str, salt: str = _SALT) -> Signer:
    # One signer per key and purpose: a token is made for every message of every send.
    return _OnceDerivedSigner(secret_key, salt=salt)


class _OnceDerivedSigner(Signer):
    """A Signer that derives its key from the secret and salt once, not at every signature
    as itsdangerous does (its documented place to change the derivation): two tokens a
    copy made that HMAC twice per copy. Signatures are the same."""

    def __init__(self, secret_key: str, *, salt: str) -> None:
        super().__init__(secret_key, salt=salt)
        self._derived = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._derived if secret_key is None else super().derive_key(secret_key)

    def get_signature(self, value: str | bytes) -> bytes:
        # The same HMAC as itsdangerous's algorithm makes, in one call into OpenSSL rather
        # than through an hmac object: two of these go into every copy.
        return base64_encode(hmac.digest(self._derived, want_bytes(value), self.digest_method))


def _salt(purpose: Purpose) -> str:
    # The unsubscribe salt is the one links already in inboxes were signed with.
    return _SALT if purpose is Purpose.UNSUBSCRIBE else f"digest.{purpose.value}"


def keyed_hash(secret_key: str, value: str, *, purpose: str) -> str:
    """A hex HMAC-SHA256 of ``value`` (case-folded) for ``purpose`` ("ip", "address"): it
    recognises a value without keeping it, and without the key cannot be tested by guessing."""
    message = f"digest.{purpose}\n{value.strip().casefold()}".encode()
    return hmac.new(_checked(secret_key).encode("utf-8"), message, hashlib.sha256).hexdigest()


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
    return subscriber_token(
        secret_key, Purpose.UNSUBSCRIBE, subscriber_id=subscriber_id, list_id=list_id, email=email
    )


def subscriber_token(
    secret_key: str,
    purpose: Purpose,
    *,
    subscriber_id: int,
    list_id: str,
    email: str,
    issued_at: dt.datetime | None = None,
) -> str:
    """A URL-safe token for one subscriber of one list and ``purpose``; no address in it.

    A confirmation token carries ``issued_at`` (required for it), so it can expire.
    """
    fields = [str(subscriber_id), list_id, _address_tag(_checked(secret_key), email)]
    if purpose is Purpose.CONFIRM:
        if issued_at is None:
            raise ValueError("a confirmation token needs the time it is issued")
        fields.append(str(int(issued_at.timestamp())))
    return _signed(secret_key, purpose, fields)


def personal_tokens(
    secret_key: str, *, subscriber_id: int, list_id: str, email: str
) -> tuple[str, str]:
    """The unsubscribe and preferences tokens of one copy, the address's tag made once."""
    fields = [str(subscriber_id), list_id, _address_tag(_checked(secret_key), email)]
    return (
        _signed(secret_key, Purpose.UNSUBSCRIBE, fields),
        _signed(secret_key, Purpose.PREFERENCES, fields),
    )


def _signed(secret_key: str, purpose: Purpose, fields: list[str]) -> str:
    payload = base64.urlsafe_b64encode("\n".join(fields).encode()).rstrip(b"=")
    return _signer(secret_key, _salt(purpose)).sign(payload).decode("ascii")


def read_unsubscribe_token(secret_key: str, token: str) -> UnsubscribeToken | None:
    """What a token says, or None if it is forged, altered or malformed.

    Raises ValueError for a key too short to sign with (see :func:`unsubscribe_token`).
    """
    return read_subscriber_token(secret_key, Purpose.UNSUBSCRIBE, token)


def read_subscriber_token(secret_key: str, purpose: Purpose, token: str) -> UnsubscribeToken | None:
    """What a token for ``purpose`` says, or None if it is forged, altered, malformed or made
    for another purpose. Whether a confirmation token has expired is the caller's to judge
    from ``issued_at``."""
    _checked(secret_key)
    try:
        payload = _signer(secret_key, _salt(purpose)).unsign(token.encode("ascii"))
        decoded = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)).decode("utf-8")
    except (BadSignature, UnicodeError, binascii.Error, ValueError):
        return None
    parts = decoded.split("\n")
    if len(parts) != (4 if purpose is Purpose.CONFIRM else 3):
        return None
    subscriber_id, list_id, tag = parts[:3]
    if not subscriber_id.isdigit() or not list_id or len(tag) != _TAG_LENGTH:
        return None
    issued_at = None
    if purpose is Purpose.CONFIRM:
        if not parts[3].isdigit():
            return None
        issued_at = dt.datetime.fromtimestamp(int(parts[3]), dt.UTC)
    return UnsubscribeToken(int(subscriber_id), list_id, tag, issued_at)
