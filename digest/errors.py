"""The one error tree: every message here is meant for the person running digest.

Each failure kind has its own class, raised where the problem is found; where a standard
exception says the same, it is a second base, so callers may catch either (as
aiosmtplib's ``SMTPServerDisconnected(SMTPException, ConnectionError)``). The CLI turns
any :class:`DigestError` into ``Error: ...`` and an exit status, in one place.

The tree (the send's outcomes, which carry the send's report, are in
:mod:`digest.sending`: ``SendHalted``, ``SendStopped``, ``SendInterrupted``)::

    DigestError
    ├── ConfigError (ValueError)        a setting, the config file or a rules file
    ├── InputError (ValueError)         a file or an argument given to a command
    │   ├── InvalidAddress              an address that cannot be subscribed
    │   └── InvalidName                 a name that cannot be stored
    ├── NotFound (LookupError)          an issue, a subscriber: not there
    ├── SeedError (ValueError)          one seed file that cannot be read as an article
    ├── TemplateError                   a template that cannot be loaded or rendered
    ├── MessageError (ValueError)       a message that cannot be built from its data
    ├── StoreError                      the database cannot be opened, read or written
    ├── ServiceError (OSError)          a server that cannot start (a port in use)
    ├── OutboxError (OSError)           the local outbox folder cannot be used
    ├── MailboxError (OSError)          a bounce mailbox (IMAP) cannot be read
    ├── CheckFailed                     the check before a scheduled send found a FAIL
    ├── RelayRefused                    the relay refuses the sender or the message
    │   └── RelayUnusable (ConnectionError)   it cannot be used with these settings
    └── DeliveryFailed                  one copy not accepted
        ├── PermanentFailure            5xx: not retried
        │   └── MailboxUnknown          the address does not exist: stop mailing it
        └── TransientFailure            4xx, a time-out: retried later
            └── RelayUnavailable (ConnectionError)   the relay, not the recipient, failed
"""

from __future__ import annotations

__all__ = [
    "CheckFailed",
    "ConfigError",
    "DeliveryFailed",
    "DigestError",
    "InputError",
    "InvalidAddress",
    "InvalidName",
    "MailboxError",
    "MailboxUnknown",
    "MessageError",
    "NotFound",
    "OutboxError",
    "PermanentFailure",
    "RelayRefused",
    "RelayUnavailable",
    "RelayUnusable",
    "SeedError",
    "ServiceError",
    "StoreError",
    "TemplateError",
    "TransientFailure",
]


class DigestError(Exception):
    """Base of every error digest reports to its user; the message says what and where."""


class ConfigError(DigestError, ValueError):
    """A setting, the configuration file or a rules file is missing or invalid."""


class InputError(DigestError, ValueError):
    """A file or an argument given to a command cannot be used; the message says why."""


class InvalidAddress(InputError):
    """An address that cannot be subscribed; the message says why."""


class InvalidName(InputError):
    """A subscriber's name that cannot be stored; the message says why."""


class NotFound(DigestError, LookupError):
    """What a command names (an issue, a subscriber) is not there."""


class SeedError(DigestError, ValueError):
    """One seed file could not be read as an article; the others still load."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class TemplateError(DigestError):
    """A template could not be loaded or rendered; the message names the file and line."""


class MessageError(DigestError, ValueError):
    """A message could not be built from the data it was given."""


class StoreError(DigestError):
    """The database could not be opened, migrated, read or written."""


class ServiceError(DigestError, OSError):
    """A server could not start: its port is in use or cannot be bound."""


class OutboxError(DigestError, OSError):
    """The local outbox (a Maildir) cannot be made or used."""


class CheckFailed(DigestError):
    """The check before a scheduled send found what would make it fail: nothing was sent."""


class MailboxError(DigestError, OSError):
    """A bounce mailbox cannot be reached, logged into or read."""


class RelayRefused(DigestError):
    """The relay refuses the sender or the message itself: sending on would fail for all."""


class RelayUnusable(RelayRefused, ConnectionError):
    """The relay cannot be used with these settings: the connection refused, no STARTTLS,
    a TLS handshake or certificate failure, a refused login. The message names the
    setting to change; ``reason`` is the failure alone."""

    def __init__(self, message: str, *, reason: str, relay: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.relay = relay


class DeliveryFailed(DigestError):
    """One recipient's copy was not accepted; ``code`` is the SMTP reply's, when there was one.

    ``reason`` says why without naming the recipient (what the ledger keeps, so copies
    that failed alike are counted together); ``relay`` is "host:port", for the SMTP relays.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        reason: str | None = None,
        relay: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or message
        self.relay = relay


class PermanentFailure(DeliveryFailed):
    """Refused for good (5xx): the copy is not tried again."""


class MailboxUnknown(PermanentFailure):
    """The address does not exist ("550 5.1.1 no such user"): stop sending to it."""


class TransientFailure(DeliveryFailed):
    """Not now (4xx, a time-out, a dropped connection): the copy is tried again later."""


class RelayUnavailable(TransientFailure, ConnectionError):
    """The relay, not the recipient, failed: no connection, dropped, timed out, or 421.

    With several relays, another takes the copy.
    """
