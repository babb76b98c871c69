"""The SMTP servers the tests send to: aiosmtpd on 127.0.0.1, on a port it bound itself.

Every test that needs an SMTP server gets it from here:

- :class:`SmtpServer` runs aiosmtpd's ``SMTP`` protocol in a thread of its own, on a
  listening socket it creates on port 0 and keeps open, and says which port it got. (Asking
  for a free port, closing it and binding it again is a race another process can win.)
- :class:`Recorder` and :class:`Slow` are the handlers most tests use (test modules
  subclass them for relays that refuse or misbehave); :class:`Sink` keeps only the
  recipients, for sends too large to keep.
- :func:`closed_port` is a port where nothing listens, held so that nothing can start to.
- ``python -m tests.smtp_sink FILE [--greylist]`` runs a sink in a process of its own: it prints
  ``ready PORT`` once it listens and, on SIGTERM, writes the recipients it saw to FILE, one
  per line. Several of them let a test with several sending processes use more than one core
  for receiving.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP

__all__ = [
    "Closing",
    "Recorder",
    "Sink",
    "Slow",
    "SmtpServer",
    "closed_port",
    "main",
    "offer_pipelining",
]

HOST = "127.0.0.1"


class SmtpServer:
    """aiosmtpd's SMTP with ``handler`` on 127.0.0.1, on a socket bound here, in a thread.

    ``options`` are aiosmtpd ``SMTP`` keyword arguments (``data_size_limit=None``, say).
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, handler: Any, **options: Any) -> None:
        self.handler = handler
        # aiosmtpd's Controller turns SMTPUTF8 on by default; so does this, as the tests expect.
        self.options: dict[str, Any] = {"enable_SMTPUTF8": True} | options
        self.socket = socket.create_server((HOST, 0))
        self.port: int = self.socket.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"smtp-{self.port}", daemon=True)

    def start(self) -> SmtpServer:
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError(f"the SMTP server on port {self.port} did not start in 30 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving: the connections still open are dropped, the socket is closed."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self.socket.close()  # closed by the server already, unless it never started

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _protocol(self) -> SMTP:
        return SMTP(self.handler, loop=self._loop, **self.options)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            try:
                self._server = self._loop.run_until_complete(
                    self._loop.create_server(self._protocol, sock=self.socket)
                )
            except BaseException as error:
                self._error = error
                return
            finally:
                self._started.set()
            self._loop.run_forever()
            # Stopped: no new connections, and the sessions still open are ended.
            self._server.close()
            sessions = asyncio.all_tasks(self._loop)
            for task in sessions:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*sessions, return_exceptions=True))
            self._loop.run_until_complete(self._server.wait_closed())
        finally:
            self._loop.close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections while the ``with`` lasts.

    The socket is bound and never listens, so a connection to it is refused, and no other
    process can take the port in the meantime.
    """
    with socket.socket() as held:
        held.bind((HOST, 0))
        port: int = held.getsockname()[1]
        yield port


def offer_pipelining(responses: list[str]) -> list[str]:
    """An EHLO reply that also offers PIPELINING (RFC 2920), as Postfix's and every big
    provider's does. aiosmtpd reads pipelined commands one line at a time, as a server
    must, but does not say so itself."""
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class Recorder:
    """Accepts everything and keeps it; subclasses refuse or drop as told. Offers
    PIPELINING unless ``pipelining`` is set false."""

    pipelining = True

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.sessions = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return offer_pipelining(responses) if self.pipelining else responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


class Slow(Recorder):
    """Takes its time over each message, so a send can be caught half done."""

    delay = 0.05

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class Closing(Recorder):
    """A relay going down: every MAIL answered 421 and the connection closed; counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.mails = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.mails += 1
        server.transport.close()
        return "421 4.3.2 Service shutting down"


class Sink:
    """Accepts every message and keeps only whom it was for (30,000 bodies would not fit).

    With ``greylist``, each recipient's first RCPT is answered 451, as greylisting does.
    """

    def __init__(self, delay: float = 0.0, *, greylist: bool = False) -> None:
        self.recipients: list[str] = []
        self.delay = delay
        self.greylist = greylist
        self._seen: set[str] = set()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return offer_pipelining(responses)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.greylist and address not in self._seen:
            self._seen.add(address)
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


def main() -> None:
    """``python -m tests.smtp_sink FILE [--greylist]``: a sink in this process, until SIGTERM."""
    out = Path(sys.argv[1])
    handler = Sink(greylist="--greylist" in sys.argv[2:])
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with SmtpServer(handler) as server:
        print(f"ready {server.port}", flush=True)
        done.wait()
    out.write_text("".join(f"{address}\n" for address in handler.recipients))


if __name__ == "__main__":
    main()
