"""The return path of each copy (VERP): ``bounces+TOKEN@domain``, TOKEN naming its delivery.

A bounce comes back to the envelope sender of the copy that failed. With one return
address per delivery, the bounce says which copy it is about even when it quotes nothing
of it. TOKEN is the delivery's id and a MAC made with the secret key, in base32: short,
of letters and digits only, and unchanged by a server that folds the address's case.
A token that does not verify names nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["ReturnPath", "delivery_of", "is_return_path"]

# 64 bits: forging a token for a chosen delivery takes ~2**63 tries against the list.
_MAC_BYTES = 8
_CONTEXT = b"digest return path\x00"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReturnPath:
    """Makes each delivery's envelope sender from the ``bounce_address`` setting."""

    bounce_address: str
    secret_key: str

    def for_delivery(self, delivery_id: int) -> str:
        """``bounces+TOKEN@domain`` for the delivery."""
        local, _, domain = self.bounce_address.rpartition("@")
        return f"{local}+{_token(delivery_id, self.secret_key)}@{domain}"


def is_return_path(address: str, bounce_address: str) -> bool:
    """True for ``bounces+ANYTHING@domain``: one of ours, if its token verifies."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base_local, _, base_domain = bounce_address.rpartition("@")
    return domain.lower() == base_domain.lower() and local.lower().startswith(
        base_local.lower() + "+"
    )


def delivery_of(address: str, *, bounce_address: str, secret_key: str) -> int | None:
    """The delivery an address of ours names (any case), or None: not ours, or forged."""
    if not is_return_path(address, bounce_address):
        return None
    local = address.strip().strip("<>").rpartition("@")[0]
    prefix = bounce_address.rpartition("@")[0] + "+"
    token = local[len(prefix) :].upper()
    if not token.isalnum():
        return None
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8))
    except ValueError:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, _mac(payload, secret_key)):
        return None
    # Only the token digest wrote: base32's last letter carries spare bits, and another
    # letter there would decode the same.
    if _token(int.from_bytes(payload, "big"), secret_key) != token.lower():
        return None
    return int.from_bytes(payload, "big")


def _token(delivery_id: int, secret_key: str) -> str:
    payload = delivery_id.to_bytes(max(1, (delivery_id.bit_length() + 7) // 8), "big")
    raw = payload + _mac(payload, secret_key)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _mac(payload: bytes, secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _CONTEXT + payload, hashlib.sha256).digest()[:_MAC_BYTES]
