"""DKIM signing of each copy (dkimpy), with a key checked once before any copy is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim

from digest.errors import ConfigError

__all__ = ["DKIM_HEADERS", "DkimKey", "load_dkim_key"]

# Signed, so that no relay on the way can alter them unnoticed; RFC 8058 asks for both
# List-Unsubscribe headers to be among them.
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"Feedback-ID",
    b"MIME-Version",
    b"Content-Type",
)
# What load_dkim_key signs to check the key.
_PROBE = b"From: digest@example.org\r\nSubject: key check\r\n\r\nkey check\r\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class DkimKey:
    """What DKIM signing needs: the selector, the signing domain and the private key (PEM)."""

    selector: str
    domain: str
    private_key: bytes

    def sign(self, data: bytes) -> bytes:
        """``data`` with its DKIM-Signature header in front."""
        signature = dkim.sign(
            data,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            include_headers=list(DKIM_HEADERS),
        )
        return bytes(signature) + data


def load_dkim_key(
    *, private_key_file: Path | None, selector: str | None, domain: str
) -> DkimKey | None:
    """The DKIM key the ``dkim`` settings name, or None when signing is not set up.

    The key signs a small message here, so a key that cannot sign is a
    :class:`ConfigError` now, not a failure of every copy once the issue is frozen.
    """
    if private_key_file is None and selector is None:
        return None
    if private_key_file is None or selector is None:
        raise ConfigError("dkim: set both private_key_file and selector, or neither")
    try:
        private_key = private_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{private_key_file}: cannot read the DKIM key (setting "
            f"dkim.private_key_file): {exc.strerror}"
        ) from exc
    if b"PRIVATE KEY" not in private_key:
        raise ConfigError(f"{private_key_file}: not a PEM private key")
    try:
        dkim.sign(
            _PROBE,
            selector.encode(),
            domain.encode(),
            private_key,
            include_headers=[b"From", b"Subject"],
        )
    except Exception as exc:  # dkimpy raises its own errors, ValueError and others
        # One line, and never the key: dkimpy's messages name the fault, not the bytes.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(
            f"{private_key_file}: the DKIM key cannot sign (setting "
            f"dkim.private_key_file): {reason}"
        ) from exc
    return DkimKey(selector=selector, domain=domain, private_key=private_key)
