"""Why a relay could not be used, in words an operator can act on, naming the setting.

aiosmtplib reports a refused connection, a relay without STARTTLS, a TLS handshake with
a plain-text server, a bad certificate and a refused login as different exceptions, some
wrapped in others. Here each becomes one short reason ("server does not offer
STARTTLS") and, where a setting is the likely cause, what to change; and whether the
relay can be used at all with these settings (then the send stops at once, rather than
retrying every copy against a relay that will never take one).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import aiosmtplib

from digest.errors import RelayUnavailable, RelayUnusable

__all__ = ["connect_failure", "lost_connection"]


def connect_failure(
    exc: BaseException, *, relay: str, security: str, timeout: float
) -> RelayUnusable | RelayUnavailable:
    """What failed while connecting to ``relay`` (connect, greeting, EHLO, TLS, login)."""
    unusable = _unusable(exc, security)
    if unusable is not None:
        reason, hint = unusable
        return RelayUnusable(f"{relay}: {reason} ({hint})", reason=reason, relay=relay)
    reason = _transient_reason(exc, timeout)
    return RelayUnavailable(f"cannot connect to {relay}: {reason}", reason=reason, relay=relay)


def lost_connection(exc: BaseException, *, relay: str, recipient: str) -> RelayUnavailable:
    """A connection that failed in the middle of a copy: the relay's fault, tried again."""
    reason = _transient_reason(exc, None)
    return RelayUnavailable(f"{recipient}: {relay}: {reason}", reason=reason, relay=relay)


def _unusable(exc: BaseException, security: str) -> tuple[str, str] | None:
    """(reason, what to change) when the relay cannot be used with these settings."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return (
            f"authentication failed: {exc.code} {exc.message}",
            "check smtp.username and DIGEST_SMTP__PASSWORD",
        )
    text = str(exc)
    if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS extension not supported" in text:
        return (
            "server does not offer STARTTLS",
            "smtp.security = none for a relay on this machine or a trusted network; "
            "smtp.security = tls if the port expects TLS from the start",
        )
    if isinstance(exc, aiosmtplib.SMTPException) and "AUTH extension is not supported" in text:
        return (
            "server does not offer AUTH",
            "most servers offer it only after STARTTLS: smtp.security = starttls, "
            "or no smtp.username if the relay needs no login",
        )
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or str(cause)
            return (
                f"certificate verify failed: {detail}",
                "fix the relay's certificate or smtp.host (the name it is issued for); "
                "smtp.validate_certs = false only for a relay you trust",
            )
        if isinstance(cause, ssl.SSLError):
            detail = cause.reason or str(cause)
            hint = (
                "the port speaks plain SMTP: smtp.security = starttls (port 587) or none"
                if security == "tls"
                else "check smtp.security and smtp.port"
            )
            return f"TLS handshake failed: {detail.lower().replace('_', ' ')}", hint
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", "check smtp.host and smtp.port; is the relay running?"
        if isinstance(cause, socket.gaierror):
            return "name does not resolve", "check smtp.host"
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600:
        return f"refused the connection: {exc.code} {exc.message}", "check smtp.host"
    return None


def _transient_reason(exc: BaseException, timeout: float | None) -> str:
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    for cause in _chain(exc):
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
    return " ".join(str(exc).split()) or type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, outermost first (aiosmtplib wraps socket errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
