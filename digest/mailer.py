"""Handing finished messages to something that delivers them.

The sender (``digest.pipeline``) owns the small :class:`Transport` interface; the local
outbox (a Maildir, the embedded default) implements it here.
"""

from __future__ import annotations

import mailbox
from pathlib import Path
from typing import Protocol

from digest.errors import DigestError

__all__ = ["DeliveryFailed", "OutboxTransport", "Transport"]


class DeliveryFailed(DigestError):
    """One recipient's message was not accepted.

    ``permanent`` failures (5xx) are not retried; the others (4xx, timeouts, dropped
    connections) are, later.
    """

    def __init__(self, message: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class Transport(Protocol):
    """Where copies of an issue go."""

    name: str

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        """Deliver one message or raise :class:`DeliveryFailed`."""

    async def close(self) -> None:
        """Release connections, files and the like."""


class OutboxTransport:
    """Writes each message into a Maildir: nothing leaves the machine.

    Any mail client that reads Maildir (mutt -f var/outbox, Thunderbird with a local
    folder) shows what subscribers would get.
    """

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        try:
            # Maildir writes into tmp/ and then moves the file into new/: a reader never
            # sees half a message.
            self.maildir = mailbox.Maildir(folder, create=True)
        except OSError as exc:
            raise DigestError(f"{folder}: cannot use it as the outbox: {exc.strerror}") from exc
        self.folder = folder

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        try:
            self.maildir.add(data)
        except OSError as exc:
            raise DeliveryFailed(
                f"cannot write to {self.folder}: {exc.strerror}", permanent=False
            ) from exc

    async def close(self) -> None:
        self.maildir.close()
