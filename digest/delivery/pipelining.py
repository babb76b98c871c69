"""SMTP transactions pipelined (RFC 2920) on a connection aiosmtplib opened.

aiosmtplib connects, reads the greeting, says EHLO, does STARTTLS or TLS and logs in; a
server without PIPELINING gets every command from it, one at a time. Its protocol reads
one reply per command written, and drops what arrives after that reply until the next
command: it cannot read the three replies of MAIL, RCPT and DATA written together. So,
once the connection is ready and the server offers PIPELINING, this module takes the
connection's transport over (asyncio's ``BaseTransport.set_protocol``) with a protocol of
its own that parses any number of replies per read. A copy then costs two round trips
(MAIL, RCPT, DATA in one write, then the body and the final dot), not four, and its body
goes out as it is: a copy of an issue is built in wire form (CRLF line ends, no line
starting with a dot: :class:`~digest.email.message.WireMessage`), rather than rewritten
with regular expressions for every copy as aiosmtplib's DATA does.

The parts of aiosmtplib this relies on (``tests/test_pipelining.py`` fails if a release
changes them):

- ``SMTP.transport``: the connection's transport once ``connect()`` returned, the TLS one
  after STARTTLS (a public attribute);
- after a command's reply was read, its protocol waits for nothing more, so no reply is
  lost when the transport moves to another protocol;
- ``SMTP.supports_extension()`` for PIPELINING, SIZE and SMTPUTF8, from the EHLO reply;
- its exceptions (``SMTPSenderRefused``, ``SMTPRecipientRefused``, ``SMTPDataError``,
  ``SMTPResponseException``, ``SMTPServerDisconnected``, ``SMTPReadTimeoutError``), raised
  here as aiosmtplib raises them, so one classification serves both paths.

Every reply is still checked: a refused MAIL or RCPT means no message is sent (the DATA
that the server then refuses too, or, against the RFC, accepts, is ended with a lone dot),
and the body goes only after DATA was answered 354.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import NamedTuple, cast

import aiosmtplib

from digest.email.message import WireMessage

__all__ = ["CRLF", "PipelinedSession", "Reply", "wire_form"]

CRLF = b"\r\n"
# A reply longer than this is no SMTP server's: the connection is dropped.
_MAX_REPLY = 64 * 1024
# CR, LF, NUL and every other control character: never in a command's argument.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


class Reply(NamedTuple):
    """One server reply: its code and its text (lines joined by newlines)."""

    code: int
    message: str


def wire_form(data: bytes) -> bytes:
    """``data`` as DATA sends it, before the final dot: CRLF line ends, a line's leading dot
    doubled, a CRLF at the end.

    A copy of an issue is that already (a :class:`WireMessage`) and is returned as it is;
    anything else (a notice, a test's message) is checked and, where needed, rewritten as
    aiosmtplib would.
    """
    if isinstance(data, WireMessage):
        return data
    if data.count(b"\n") != data.count(CRLF) or data.count(b"\r") != data.count(CRLF):
        data = _LINE_ENDS.sub(CRLF, data)
    if data.startswith(b".") or b"\r\n." in data:
        data = (b"." if data.startswith(b".") else b"") + data.replace(b"\r\n.", b"\r\n..")
    return data if data.endswith(CRLF) else data + CRLF


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(
            aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")
        )


class _Replies(asyncio.Protocol):
    """Reads replies off the connection, as many per read as came; write flow control."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    @property
    def lost(self) -> bool:
        return self._lost is not None or self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except aiosmtplib.SMTPResponseException as exc:
            self._lose(exc)
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._lose(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(
            aiosmtplib.SMTPServerDisconnected(
                f"Connection lost: {exc}" if exc else "Connection lost"
            )
        )
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _lose(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _parse(self) -> None:
        """Move every complete reply in the buffer to the queue of replies."""
        lines: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1])
            start = end + 1
            lines.append(line)
            if line[3:4] != b"-":
                # The last line of a reply: "250 OK", not "250-SIZE".
                try:
                    code = int(lines[0][:3])
                except ValueError:
                    raise aiosmtplib.SMTPResponseException(
                        -1, f"Malformed SMTP response line: {lines[0]!r}"
                    ) from None
                text = "\n".join(
                    each[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape") for each in lines
                )
                self._replies.append(Reply(code, text))
                del self._buffer[:start]
                start = 0
                lines = []
        if len(self._buffer) > _MAX_REPLY:
            raise aiosmtplib.SMTPResponseException(-1, "Response too long")

    def forget_unasked(self) -> None:
        """Drop replies no command asked for (a server's stray line between commands)."""
        self._replies.clear()

    async def reply(self, timeout: float) -> Reply:
        """The next reply, waiting at most ``timeout`` seconds for it."""
        if self._replies:
            return self._replies.popleft()
        loop = asyncio.get_running_loop()
        # A timer on the waiter rather than asyncio.timeout(): this runs twice a copy,
        # and a cancelled call_at is the cheapest time-out asyncio has.
        deadline = loop.time() + timeout
        while not self._replies:
            if self._lost is not None:
                raise self._lost
            waiter = self._waiter = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._replies.popleft()

    def write(self, data: bytes) -> None:
        self.writelines((data,))

    def writelines(self, pieces: tuple[bytes, ...]) -> None:
        """Write ``pieces`` in one go (one system call where the transport can)."""
        if self.lost:
            raise self._lost or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.writelines(pieces)

    async def drain(self, timeout: float) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if not self._paused:
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drained
        except TimeoutError as exc:
            raise aiosmtplib.SMTPTimeoutError("Timed out writing to the server") from exc
        finally:
            self._drained = None
        if self._lost is not None and not self._replies:
            # A reply that came before the loss (552 too big, say) says more: it is read next.
            raise self._lost


class PipelinedSession:
    """A connection aiosmtplib opened and readied, sending pipelined transactions."""

    def __init__(self, client: aiosmtplib.SMTP, *, timeout: float) -> None:
        # Not an isinstance check: uvloop's transports write and set protocols too, but
        # are not asyncio.WriteTransport subclasses.
        transport = cast(asyncio.WriteTransport | None, client.transport)
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._size = client.supports_extension("size")
        self._smtputf8 = client.supports_extension("smtputf8")
        self._timeout = timeout
        self._replies = _Replies(transport)
        # From here on the connection's bytes come to this session; the client object
        # is let go of, never used again.
        transport.set_protocol(self._replies)

    @staticmethod
    def offered(client: aiosmtplib.SMTP) -> bool:
        """True when the server said PIPELINING in its EHLO reply."""
        return client.supports_extension("pipelining")

    @property
    def is_connected(self) -> bool:
        return not self._replies.lost

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        """One transaction: MAIL, RCPT and DATA in one write, then the body.

        Raises what aiosmtplib raises for the same replies.
        """
        body = wire_form(data)
        mail = f"MAIL FROM:<{sender}>"
        if self._size:
            mail += f" SIZE={len(data) if data.endswith(CRLF) else len(data) + 2}"
        encoding = "ascii"
        if not (sender + recipient).isascii():
            if not self._smtputf8:
                raise aiosmtplib.SMTPNotSupported(
                    "An address containing non-ASCII characters was given, but SMTPUTF8 is "
                    "not supported by the server"
                )
            mail += " SMTPUTF8"
            encoding = "utf-8"
        for address in (sender, recipient):
            if _CONTROL.search(address):
                raise ValueError("Command arg contains a prohibited control character")
        replies = self._replies
        # A reply nobody asked for would be taken for MAIL's: dropped.
        replies.forget_unasked()
        replies.write(f"{mail}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode(encoding))
        mail_reply, rcpt_reply, data_reply, lost = await self._three_replies()
        # Judged in order, as the commands were sent: what MAIL said comes first, even
        # when the connection was lost (or closed with a 421) before the later replies;
        # a reply that never came fails the copy as the lost connection.
        if mail_reply is None:
            raise lost
        if mail_reply.code != 250:
            await self._abandon(data_reply)
            raise aiosmtplib.SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
        if rcpt_reply is None:
            raise lost
        if rcpt_reply.code not in (250, 251):
            await self._abandon(data_reply)
            raise aiosmtplib.SMTPRecipientRefused(rcpt_reply.code, rcpt_reply.message, recipient)
        if data_reply is None:
            raise lost
        if data_reply.code != 354:
            raise aiosmtplib.SMTPDataError(data_reply.code, data_reply.message)
        replies.writelines((body, b".\r\n"))
        await replies.drain(self._timeout)
        done = await replies.reply(self._timeout)
        if done.code != 250:
            raise aiosmtplib.SMTPDataError(done.code, done.message)

    async def _three_replies(
        self,
    ) -> tuple[Reply | None, Reply | None, Reply | None, Exception]:
        """The replies to MAIL, RCPT and DATA, None for those that never came, and what
        ended the connection before them."""
        got: list[Reply | None] = []
        lost: Exception = aiosmtplib.SMTPServerDisconnected("Connection lost")
        while len(got) < 3:
            try:
                reply = await self._replies.reply(self._timeout)
            except (aiosmtplib.SMTPException, OSError) as exc:
                lost = exc
                break
            got.append(reply)
            if reply.code == 421:
                # The server is closing the connection: the replies still owed never come.
                lost = aiosmtplib.SMTPResponseException(reply.code, reply.message)
                break
        got += [None] * (3 - len(got))
        return got[0], got[1], got[2], lost

    async def _abandon(self, data_reply: Reply | None) -> None:
        """After a refused MAIL or RCPT: a DATA the server accepted anyway ends empty."""
        if data_reply is not None and data_reply.code == 354:
            try:
                self._replies.write(b".\r\n")
                await self._replies.reply(self._timeout)
            except (aiosmtplib.SMTPException, OSError):
                # The refusal is what the copy failed on; a connection lost meanwhile is
                # found, and closed, when it is handed back.
                pass

    async def command(self, line: str) -> Reply:
        """One command on its own (RSET, QUIT) and its reply."""
        self._replies.write(line.encode("ascii") + CRLF)
        return await self._replies.reply(self._timeout)

    async def rset(self) -> None:
        """End a failed transaction, so the next starts clean."""
        reply = await self.command("RSET")
        if reply.code != 250:
            raise aiosmtplib.SMTPResponseException(reply.code, reply.message)

    async def quit(self) -> None:
        """QUIT and close; just close when the server does not answer."""
        try:
            await self.command("QUIT")
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._replies.transport.close()
