"""The mailboxes returned messages are read from: a Maildir folder, an mbox file, or an
IMAP folder.

Each message is read once and kept: a Maildir message moves from ``new/`` to ``cur/``
with the seen flag (``:2,S``), as a mail client would move it; an mbox message gets the
read flag in its ``Status`` header; an IMAP message is flagged ``\\Seen`` and moved to the
folder ``digest-processed``. Nothing is ever deleted. Marking comes after the message is
recorded, so a run killed in between reads it again, and the database (which knows each
message by its SHA-256) records it once.
"""

from __future__ import annotations

import contextlib
import mailbox
import os
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import unquote, urlsplit

from imapclient import SEEN, IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from digest.bounces.parse import MAX_MESSAGE_BYTES
from digest.errors import InputError, MailboxError
from digest.settings import Settings

__all__ = [
    "PROCESSED_FOLDER",
    "ImapFolder",
    "MailSource",
    "Maildir",
    "Mbox",
    "configured_source",
    "open_source",
    "shown_source",
]

# Where read IMAP messages go: out of the folder that is read, kept.
PROCESSED_FOLDER = "digest-processed"


class MailSource(Protocol):
    """Where returned messages wait: each unread one, and a way to mark it read."""

    label: str

    def unread(self) -> Iterator[tuple[str, bytes]]:
        """Each unread message: a key for :meth:`mark_read`, and its bytes."""
        ...

    def mark_read(self, key: str) -> None:
        """Mark the message read, keeping it."""
        ...


def open_source(
    spec: str, *, password: str | None = None, timeout: float = 60
) -> AbstractContextManager[MailSource]:
    """The mailbox ``spec`` names: a Maildir folder, an mbox file, or an IMAP folder as
    ``imaps://user@host[:port]/FOLDER`` (TLS) or ``imap://…`` (STARTTLS), with
    ``password``."""
    if "://" in spec:
        return ImapFolder.from_url(spec, password=password, timeout=timeout)
    path = Path(spec)
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
            raise InputError(f"{path}: not a Maildir (it needs new/, cur/ and tmp/)")
        return Maildir(path)
    if path.is_file():
        return Mbox(path)
    raise InputError(f"{path}: no such Maildir folder or mbox file")


def shown_source(spec: str) -> str:
    """``spec`` as it may be shown: without a password, should a URL hold one."""
    if "://" not in spec:
        return spec
    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def configured_source(settings: Settings, spec: str) -> AbstractContextManager[MailSource]:
    """``spec`` opened with the password and time-out the settings give."""
    password = settings.bounces.password
    return open_source(
        spec,
        password=password.get_secret_value() if password else None,
        timeout=settings.smtp.timeout,
    )


class Maildir(AbstractContextManager["Maildir"]):
    """A Maildir folder: the messages in ``new/``, and those in ``cur/`` not yet seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def unread(self) -> Iterator[tuple[str, bytes]]:
        for sub in ("new", "cur"):
            for name in sorted(os.listdir(self.path / sub)):
                if name.startswith("."):
                    continue
                if sub == "cur" and "S" in _flags(name):
                    continue
                try:
                    with (self.path / sub / name).open("rb") as handle:
                        # A message over the limit is not read whole: its start says so.
                        data = handle.read(MAX_MESSAGE_BYTES + 1)
                except FileNotFoundError:
                    continue  # taken meanwhile by another reader
                yield f"{sub}/{name}", data

    def mark_read(self, key: str) -> None:
        sub, name = key.split("/", 1)
        base, _, info = name.partition(":2,")
        flags = "".join(sorted(set(info) | {"S"}))
        # Gone meanwhile: moved by another reader, which read it.
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path / sub / name, self.path / "cur" / f"{base}:2,{flags}")


class Mbox(AbstractContextManager["Mbox"]):
    """An mbox file, locked while it is read; read messages get the ``R`` flag."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._box = mailbox.mbox(path, create=False)
        self._read: list[str] = []

    def __enter__(self) -> Mbox:
        self._box.lock()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            for key in self._read:
                message = self._box.get_message(key)
                message.add_flag("RO")
                self._box[key] = message
            if self._read:
                self._box.flush()
        finally:
            self._box.unlock()
            self._box.close()

    def unread(self) -> Iterator[tuple[str, bytes]]:
        for key in self._box.iterkeys():
            if "R" in self._box.get_message(key).get_flags():
                continue
            # The key as the mailbox module gives it (a number, typed as text).
            with self._box.get_file(key) as handle:
                yield key, handle.read(MAX_MESSAGE_BYTES + 1)

    def mark_read(self, key: str) -> None:
        self._read.append(key)


def _flags(name: str) -> str:
    return name.partition(":2,")[2]


class ImapFolder(AbstractContextManager["ImapFolder"]):
    """An IMAP folder, over TLS (``imaps``) or STARTTLS (``imap``), certificates checked."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        folder: str,
        implicit_tls: bool,
        timeout: float,
    ) -> None:
        self.host, self.port, self.user, self.folder = host, port, user, folder
        self.implicit_tls = implicit_tls
        self.timeout = timeout
        scheme = "imaps" if implicit_tls else "imap"
        # Never the password: the label is printed and stored with every message read.
        self.label = f"{scheme}://{user}@{host}:{port}/{folder}"
        self._password = password
        self._client: IMAPClient | None = None

    @classmethod
    def from_url(cls, url: str, *, password: str | None, timeout: float) -> ImapFolder:
        """``imaps://user@host[:port]/FOLDER``; the password comes from the settings."""
        parts = urlsplit(url)
        # Before anything names the URL: a password in it must never be shown.
        if parts.password is not None:
            raise InputError(
                f"{parts.scheme}://…: no password in the URL (it would be shown wherever the "
                "source is named): set bounces.password (DIGEST_BOUNCES__PASSWORD)"
            )
        if parts.scheme not in ("imap", "imaps"):
            raise InputError(f"{url}: expected imaps://user@host/FOLDER or imap://…")
        if not parts.username or not parts.hostname:
            raise InputError(f"{url}: expected a user and a host, as imaps://user@host/FOLDER")
        if not password:
            raise InputError(
                f"{url}: the IMAP password is not set (bounces.password, DIGEST_BOUNCES__PASSWORD)"
            )
        implicit_tls = parts.scheme == "imaps"
        try:
            port = parts.port or (993 if implicit_tls else 143)
        except ValueError:
            raise InputError(f"{url}: the port is not a number from 1 to 65535") from None
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username),
            password=password,
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            implicit_tls=implicit_tls,
            timeout=timeout,
        )

    def __enter__(self) -> ImapFolder:
        context = ssl.create_default_context()
        try:
            client = IMAPClient(
                self.host,
                port=self.port,
                ssl=self.implicit_tls,
                ssl_context=context,
                timeout=self.timeout,
            )
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"{self.label}: cannot connect: {_reason(exc)}") from exc
        try:
            if not self.implicit_tls:
                client.starttls(context)
            client.login(self.user, self._password)
            client.select_folder(self.folder)
            if not client.folder_exists(PROCESSED_FOLDER):
                client.create_folder(PROCESSED_FOLDER)
        except (OSError, IMAPClientError) as exc:
            with contextlib.suppress(OSError, IMAPClientError):
                client.shutdown()
            raise MailboxError(f"{self.label}: {_reason(exc)}") from exc
        self._client = client
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, IMAPClientError):
                self._client.logout()
            self._client = None

    def unread(self) -> Iterator[tuple[str, bytes]]:
        client = self._connected()
        for uid in client.search("ALL"):
            size = client.fetch([uid], ["RFC822.SIZE"]).get(uid, {}).get(b"RFC822.SIZE", 0)
            # PEEK: reading it does not mark it seen; mark_read does, once it is recorded. A
            # message over the limit is not fetched whole: its start says what it is.
            part = (
                f"BODY.PEEK[]<0.{MAX_MESSAGE_BYTES + 1}>"
                if size > MAX_MESSAGE_BYTES
                else "BODY.PEEK[]"
            )
            fetched = client.fetch([uid], [part]).get(uid, {})
            data = fetched.get(b"BODY[]") or fetched.get(b"BODY[]<0>")
            if isinstance(data, bytes):
                yield str(uid), data

    def mark_read(self, key: str) -> None:
        client = self._connected()
        uid = int(key)
        client.add_flags([uid], [SEEN])
        if client.has_capability("MOVE"):
            client.move([uid], PROCESSED_FOLDER)
        else:  # a server without MOVE (RFC 6851): copy, then take it out of this folder
            client.copy([uid], PROCESSED_FOLDER)
            client.delete_messages([uid])
            client.uid_expunge([uid])  # this one only, not whatever else is marked deleted

    def _connected(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError(f"{self.label}: not connected")
        return self._client


def _reason(exc: BaseException) -> str:
    """An IMAP or socket error in words (never with the password, which no error holds)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, LoginError):
        # imapclient words it as the repr of the server's bytes: b'[AUTHENTICATIONFAILED] …'
        said = str(exc)
        if said[:2] in ("b'", 'b"') and said[-1:] == said[1]:
            said = said[2:-1]
        return f"login refused: {said}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.decode() if isinstance(text, bytes) else text
