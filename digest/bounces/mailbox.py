"""The mailboxes returned messages are read from: a Maildir folder or an mbox file.

Each message is read once and kept: a Maildir message moves from ``new/`` to ``cur/``
with the seen flag (``:2,S``), as a mail client would move it; an mbox message gets the
read flag in its ``Status`` header. Nothing is ever deleted. Marking comes after the
message is recorded, so a run killed in between reads it again, and the database (which
knows each message by its SHA-256) records it once.
"""

from __future__ import annotations

import contextlib
import mailbox
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol

from digest.errors import InputError

__all__ = ["MailSource", "Maildir", "Mbox", "open_source"]


class MailSource(Protocol):
    """Where returned messages wait: each unread one, and a way to mark it read."""

    label: str

    def unread(self) -> Iterator[tuple[str, bytes]]:
        """Each unread message: a key for :meth:`mark_read`, and its bytes."""
        ...

    def mark_read(self, key: str) -> None:
        """Mark the message read, keeping it."""
        ...


def open_source(spec: str) -> AbstractContextManager[MailSource]:
    """The mailbox ``spec`` names: a Maildir folder, or an mbox file."""
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise InputError(
            f"{scheme}:// mailboxes are not read yet: give a Maildir folder or an mbox file "
            "(fetchmail or mbsync can copy an IMAP folder into a Maildir)"
        )
    path = Path(spec)
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
            raise InputError(f"{path}: not a Maildir (it needs new/, cur/ and tmp/)")
        return Maildir(path)
    if path.is_file():
        return Mbox(path)
    raise InputError(f"{path}: no such Maildir folder or mbox file")


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
                    data = (self.path / sub / name).read_bytes()
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
            yield key, self._box.get_bytes(key)

    def mark_read(self, key: str) -> None:
        self._read.append(key)


def _flags(name: str) -> str:
    return name.partition(":2,")[2]
