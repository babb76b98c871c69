"""Handing finished messages to something that delivers them.

The send loop (``digest.delivery.sender``) owns the small :class:`Transport` interface; the local
outbox (a Maildir, the embedded default) and an SMTP relay (aiosmtplib, a pool of
connections each reused for many messages) implement it here.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
import re
import time
from pathlib import Path
from typing import Protocol

import aiosmtplib

from digest.delivery.pipelining import PipelinedSession
from digest.delivery.reasons import connect_failure, lost_connection
from digest.errors import (
    ConfigError,
    DeliveryFailed,
    MailboxUnknown,
    OutboxError,
    PermanentFailure,
    RelayRefused,
    RelayUnavailable,
    TransientFailure,
)
from digest.settings import SmtpSettings
from digest.store.tables import OUTBOX

log = logging.getLogger(__name__)

__all__ = [
    "OutboxTransport",
    "RelayPool",
    "SmtpTransport",
    "Transport",
    "classify",
    "connect",
    "disconnect",
]

# Replies that say the mailbox does not exist, as opposed to "not now" or "not from you".
_NO_SUCH_USER = re.compile(
    r"\b5\.1\.(1|10)\b|no such (user|mailbox|recipient)|user unknown|unknown (user|recipient)",
    re.IGNORECASE,
)


class Transport(Protocol):
    """Where copies of an issue go."""

    name: str

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        """Deliver one message or raise :class:`~digest.errors.DeliveryFailed`."""

    async def close(self) -> None:
        """Release connections, files and the like."""


class OutboxTransport:
    """Writes each message into a Maildir: nothing leaves the machine.

    Any mail client that reads Maildir (mutt -f var/outbox, Thunderbird with a local
    folder) shows what subscribers would get.
    """

    name = OUTBOX

    def __init__(self, folder: Path) -> None:
        try:
            # Maildir writes into tmp/ and then moves the file into new/: a reader never
            # sees half a message. Maildir makes the folder but not its parents.
            folder.parent.mkdir(parents=True, exist_ok=True)
            self.maildir = mailbox.Maildir(folder, create=True)
        except OSError as exc:
            raise OutboxError(f"{folder}: cannot use it as the outbox: {exc.strerror}") from exc
        self.folder = folder

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        try:
            self.maildir.add(data)
        except OSError as exc:
            raise TransientFailure(f"cannot write to {self.folder}: {exc.strerror}") from exc

    async def close(self) -> None:
        self.maildir.close()


def classify(
    code: int,
    message: str,
    recipient: str,
    *,
    at_rcpt: bool = False,
    relay_failed: bool = False,
    relay: str | None = None,
) -> DeliveryFailed:
    """The failure a refusal of one recipient's copy is: 5xx permanent (the mailbox unknown
    when, at RCPT, the reply says it does not exist), else transient (the relay's own
    failure with ``relay_failed``)."""
    reason = f"{code} {message}".strip()
    text = f"{recipient}: {reason}"
    kind: type[DeliveryFailed] = TransientFailure
    if 500 <= code < 600:
        at_mailbox = at_rcpt and code in (550, 551, 553) and _NO_SUCH_USER.search(message)
        kind = MailboxUnknown if at_mailbox else PermanentFailure
    elif relay_failed:
        kind = RelayUnavailable
    return kind(text, code=code, reason=reason, relay=relay)


class _Session(Protocol):
    """One readied connection to a relay, sending one transaction at a time."""

    @property
    def is_connected(self) -> bool: ...

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None: ...

    async def rset(self) -> None: ...

    async def quit(self) -> None: ...


class _PlainSession:
    """A connection that aiosmtplib drives command by command: a relay without PIPELINING,
    or with ``smtp.pipelining`` off."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client

    @property
    def is_connected(self) -> bool:
        return self.client.is_connected

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        client = self.client
        # MAIL, RCPT and DATA one by one rather than sendmail(): the addresses were
        # checked when they were stored, and the message is already CRLF-ended, so
        # sendmail's checks would only repeat work for every copy.
        await client.mail(sender, options=_size_option(client, data))
        await client.rcpt(recipient)
        await client.data(data)

    async def rset(self) -> None:
        await self.client.rset()

    async def quit(self) -> None:
        await disconnect(self.client)


class SmtpTransport:
    """Sends through an SMTP relay over at most ``concurrency`` reused connections, each
    pipelining its transactions when the relay offers it (:mod:`digest.delivery.pipelining`)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        if not settings.host:
            raise ConfigError("smtp.host is not set: there is no relay to send through")
        self.settings = settings
        self.host = settings.host
        # How failures name it: "host:port".
        self.relay = f"{settings.host}:{settings.port}"
        self._idle: list[_Session] = []
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._interval = 1 / settings.max_rate if settings.max_rate else 0.0
        self._next_start = 0.0
        self._pace = asyncio.Lock()

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        async with self._slots:
            await self._wait_for_rate()
            client = await self._connection()
            reusable, failed = False, False
            try:
                await client.send(data, sender=sender, recipient=recipient)
                reusable = True
            except aiosmtplib.SMTPRecipientRefused as exc:
                reusable = failed = True
                raise classify(
                    exc.code, exc.message, recipient, at_rcpt=True, relay=self.relay
                ) from exc
            except aiosmtplib.SMTPResponseException as exc:
                # 421 means the server is closing the connection.
                reusable, failed = exc.code != 421, True
                if 500 <= exc.code < 600:
                    # Refused at MAIL FROM or DATA: the relay refuses the sender or the
                    # message itself, whoever it is for. Stop; nothing here is the
                    # recipient's fault.
                    raise RelayRefused(
                        f"{self.host} refused the message: {exc.code} {exc.message}"
                    ) from exc
                # 421: the relay is closing the connection, whoever the copy is for.
                raise classify(
                    exc.code,
                    exc.message,
                    recipient,
                    relay_failed=exc.code == 421,
                    relay=self.relay,
                ) from exc
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                raise lost_connection(exc, relay=self.relay, recipient=recipient) from exc
            finally:
                # Cancelled half way (reusable still False): the connection is closed,
                # never handed to the next message in an unknown state.
                await self._release(client, reusable, failed)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await client.quit()

    async def _connection(self) -> _Session:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        settings = self.settings
        opened = await connect(settings)
        if settings.pipelining and PipelinedSession.offered(opened):
            try:
                return PipelinedSession(opened, timeout=settings.timeout)
            except aiosmtplib.SMTPServerDisconnected as exc:
                # Closed between the greeting and the first message: as if it had failed
                # while connecting.
                opened.close()
                raise connect_failure(
                    exc, relay=self.relay, security=settings.security, timeout=settings.timeout
                ) from exc
        return _PlainSession(opened)

    async def _release(self, client: _Session, reusable: bool, failed: bool) -> None:
        if not reusable or not client.is_connected:
            await client.quit()
            return
        if failed:
            try:
                # A failed transaction must not leave the next one half begun.
                await client.rset()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                await client.quit()
                return
        self._idle.append(client)

    async def _wait_for_rate(self) -> None:
        if not self._interval:
            return
        async with self._pace:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


class RelayPool:
    """Several relays, each with its own connections and rate cap; copies go round them.

    A relay that fails (no connection, a dropped one, a time-out, 421, or a refusal of
    the message itself) is left out for ``relay_cooldown_seconds`` and the copy goes to
    the next one at once. A refusal of the recipient is the recipient's, on any relay.
    """

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        relays = settings.relays
        if not relays:
            raise ConfigError("smtp.host is not set: there is no relay to send through")
        self.relays = [
            SmtpTransport(settings.model_copy(update={"host": host, "port": port, "hosts": None}))
            for host, port in relays
        ]
        self.cooldown = settings.relay_cooldown_seconds
        self._down_until = [0.0] * len(self.relays)
        self._turn = 0

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        tried: set[int] = set()
        last: RelayUnavailable | RelayRefused | None = None
        while True:
            index = self._pick(tried)
            if index is None:
                # Every relay failed this copy (there is at least one: tried is not empty).
                assert last is not None
                raise last
            relay = self.relays[index]
            try:
                await relay.send(data, sender=sender, recipient=recipient)
                return
            except (RelayUnavailable, RelayRefused) as exc:
                # The relay's failure, not the recipient's: another relay may take it.
                if len(self.relays) == 1:
                    raise
                last = exc
            tried.add(index)
            self._down_until[index] = time.monotonic() + self.cooldown
            log.warning(
                "relay %s:%d failed (%s): left out for %.0f s",
                relay.host,
                relay.settings.port,
                last,
                self.cooldown,
            )

    async def close(self) -> None:
        for relay in self.relays:
            await relay.close()

    def _pick(self, tried: set[int]) -> int | None:
        """The next relay in turn that is up and not yet tried for this copy.

        When every untried relay is down, the one back soonest: a relay left out is
        better than none.
        """
        untried = [index for index in range(len(self.relays)) if index not in tried]
        if not untried:
            return None
        now = time.monotonic()
        count = len(self.relays)
        for step in range(count):
            index = (self._turn + step) % count
            if index in untried and self._down_until[index] <= now:
                self._turn = index + 1
                return index
        return min(untried, key=lambda index: self._down_until[index])


async def connect(settings: SmtpSettings) -> aiosmtplib.SMTP:
    """A connection to the relay ``settings.host``, greeted, TLS and login done as configured.

    Raises :class:`RelayUnusable` when these settings can never work with it (the reason
    names the setting), :class:`RelayUnavailable` when it may work later.
    """
    client = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        validate_certs=settings.validate_certs,
        timeout=settings.timeout,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
    )
    try:
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        # Connecting covers the greeting, EHLO, STARTTLS and the login (aiosmtplib): a
        # failure of any of them is named, with the setting that would fix it.
        raise connect_failure(
            exc,
            relay=f"{settings.host}:{settings.port}",
            security=settings.security,
            timeout=settings.timeout,
        ) from exc
    return client


def _size_option(client: aiosmtplib.SMTP, data: bytes) -> list[str]:
    """RFC 1870 SIZE, when the relay takes it, so an oversized copy is refused up front."""
    if not client.supports_extension("size"):
        return []
    # Counted as DATA will send it: with a final CRLF.
    size = len(data) if data.endswith(b"\r\n") else len(data) + 2
    return [f"SIZE={size}"]


async def disconnect(client: aiosmtplib.SMTP) -> None:
    """QUIT, or just close the connection when the relay does not answer."""
    try:
        await client.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()
