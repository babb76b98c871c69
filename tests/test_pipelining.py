"""Pipelined SMTP (RFC 2920) on a connection aiosmtplib opened, against aiosmtpd on
127.0.0.1: what goes over the wire, every reply checked, TLS, and the message's wire form.

The fast path relies on parts of aiosmtplib that digest.delivery.pipelining names; the
tests marked so here fail if a release of aiosmtplib changes them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
import trustme
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from digest.content.loader import SeedFormat, decode_seed, parse_article
from digest.content.picker import pick
from digest.delivery.mailer import SmtpTransport, connect
from digest.delivery.pipelining import PipelinedSession, wire_form
from digest.email.message import MessageTemplate
from digest.email.render import Renderer
from digest.errors import MailboxUnknown, MessageError, RelayRefused, RelayUnavailable
from digest.models import PickLimits, RenderedIssue, Subscriber
from digest.options import message_options, render_options
from digest.settings import Settings, SmtpSettings

from .conftest import SEED
from .smtp_sink import HOST, Recorder, SmtpServer

NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "pipelining-test-key-of-at-least-32-characters"
SENDER = "digest@news.example.org"


class Wiretap:
    """A TCP relay between the client and the server that keeps each chunk the client
    wrote, as the server's side of the socket received it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.chunks: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._relays: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Wiretap:
        self._server = await asyncio.start_server(self._relay, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._relays.append(asyncio.current_task())  # type: ignore[arg-type]
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.target)
        self._writers += [writer, upstream_writer]

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, keep: bool
        ) -> None:
            while chunk := await source.read(65536):
                if keep:
                    self.chunks.append(chunk)
                sink.write(chunk)
                await sink.drain()
            sink.close()

        await asyncio.gather(
            pump(reader, upstream_writer, True),
            pump(upstream_reader, writer, False),
            return_exceptions=True,
        )
        for each in (writer, upstream_writer):
            each.close()
            await asyncio.gather(each.wait_closed(), return_exceptions=True)


class Refusing(Recorder):
    """Says a mailbox starting "gone" does not exist, and refuses a message with "spam"."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("gone"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"spam" in envelope.content:
            return "554 5.7.1 Message refused as spam"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def server() -> Iterator[tuple[Refusing, int]]:
    handler = Refusing()
    with SmtpServer(handler) as running:
        yield handler, running.port


def smtp(port: int, **values: Any) -> SmtpSettings:
    defaults: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "security": "none",
        "timeout": 5,
        "concurrency": 1,
    }
    return SmtpSettings(**(defaults | values))


def send_through(data: bytes, recipient: str, port: int, **values: Any) -> None:
    """One message through an SmtpTransport to ``port``, its connections closed after."""

    async def run() -> None:
        transport = SmtpTransport(smtp(port, **values))
        try:
            await transport.send(data, sender=SENDER, recipient=recipient)
        finally:
            await transport.close()

    asyncio.run(run())


def message(body: bytes, to: str = "ann@example.org") -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: test\r\n\r\n".encode("ascii") + body


@pytest.mark.timeout(30)
def test_mail_rcpt_and_data_go_in_one_write_and_the_messages_arrive_whole(
    server: tuple[Refusing, int],
) -> None:
    handler, port = server
    bodies = [b"line one\r\n.a line that starts with a dot\r\n", b"..two dots\r\nend\r\n"]

    async def run() -> list[bytes]:
        async with Wiretap(port) as tap:
            transport = SmtpTransport(smtp(tap.port))
            for number, body in enumerate(bodies):
                data = message(body, f"reader{number}@example.org")
                await transport.send(data, sender=SENDER, recipient=f"reader{number}@example.org")
            await transport.close()
            return tap.chunks

    chunks = asyncio.run(run())

    commands = [chunk for chunk in chunks if chunk.startswith(b"MAIL FROM:")]
    # Each copy's MAIL, RCPT and DATA reached the server in one piece: one write.
    assert commands == [
        (
            f"MAIL FROM:<{SENDER}> SIZE={len(message(body, f'reader{n}@example.org'))}\r\n"
            f"RCPT TO:<reader{n}@example.org>\r\nDATA\r\n"
        ).encode("ascii")
        for n, body in enumerate(bodies)
    ]
    # One connection for both; each message exactly as given, its dots undoubled.
    assert handler.sessions == 1
    assert [content for _, _, content in handler.messages] == [
        message(body, f"reader{n}@example.org") for n, body in enumerate(bodies)
    ]
    assert b"\r\n..a line that starts" in b"".join(chunks)


@pytest.mark.timeout(30)
def test_a_refused_recipient_sends_no_message_and_the_connection_goes_on(
    server: tuple[Refusing, int],
) -> None:
    handler, port = server

    async def run() -> None:
        transport = SmtpTransport(smtp(port))
        try:
            with pytest.raises(MailboxUnknown, match=r"gone@example.org: 550 5\.1\.1"):
                await transport.send(
                    message(b"hi\r\n"), sender=SENDER, recipient="gone@example.org"
                )
            await transport.send(message(b"hi\r\n"), sender=SENDER, recipient="ann@example.org")
        finally:
            await transport.close()

    asyncio.run(run())

    assert [recipients for _, recipients, _ in handler.messages] == [["ann@example.org"]]
    assert handler.sessions == 1


@pytest.mark.timeout(30)
def test_a_refused_message_stops_the_send(server: tuple[Refusing, int]) -> None:
    _, port = server

    with pytest.raises(RelayRefused, match=r"554 5\.7\.1 Message refused as spam"):
        send_through(message(b"spam\r\n"), "ann@example.org", port)


@pytest.mark.timeout(60)
def test_a_large_message_goes_through_the_writers_flow_control(
    server: tuple[Refusing, int],
) -> None:
    handler, port = server
    body = b"".join(b"%07d " % n + b"x" * 70 + b"\r\n" for n in range(40_000))  # about 3 MB

    send_through(message(body), "ann@example.org", port)

    assert handler.messages[0][2] == message(body)


class ClosesAtRcpt(Recorder):
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        server.transport.close()
        return "421 4.3.2 Service shutting down"


@pytest.mark.timeout(30)
def test_a_421_in_the_pipeline_is_the_relays_failure() -> None:
    with SmtpServer(ClosesAtRcpt()) as running, pytest.raises(RelayUnavailable):
        send_through(message(b"x\r\n"), "ann@example.org", running.port)


@pytest.mark.timeout(30)
def test_the_parts_of_aiosmtplib_relied_on_after_starttls() -> None:
    """What digest.delivery.pipelining relies on: after connect() with STARTTLS, the
    client's ``transport`` is the TLS transport, ``supports_extension`` reads the EHLO
    given over TLS, and nothing is left unread when the transport changes protocol."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    handler = Recorder()
    with SmtpServer(handler, tls_context=context, require_starttls=True) as running:

        async def run() -> None:
            settings = smtp(running.port, security="starttls", validate_certs=False)
            client = await connect(settings)
            assert client.transport is not None
            assert client.transport.get_extra_info("sslcontext") is not None
            assert PipelinedSession.offered(client)
            session = PipelinedSession(client, timeout=5)
            await session.send(message(b"over TLS\r\n"), sender=SENDER, recipient="ann@example.org")
            await session.send(message(b"again\r\n"), sender=SENDER, recipient="bo@example.org")
            await session.quit()
            assert not session.is_connected

        asyncio.run(run())

    assert [content for _, _, content in handler.messages] == [
        message(b"over TLS\r\n"),
        message(b"again\r\n"),
    ]
    assert handler.sessions == 2  # EHLO before and after STARTTLS, one connection


@examples(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.lists(st.sampled_from([b".", b"\r", b"\n", b"a", b"\r\n"])).map(b"".join)
)
def test_the_wire_form_is_what_aiosmtplib_would_send(data: bytes) -> None:
    """wire_form must be aiosmtplib's own DATA encoding: if a release changes that, this
    fails."""
    assert wire_form(data) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data))


@pytest.fixture(scope="module")
def rendered(seed_format: SeedFormat) -> RenderedIssue:
    article = parse_article(
        decode_seed(SEED.read_bytes(), "seed"), source="seed", seed_format=seed_format
    )
    issue = pick([article], today=NOW.date(), already_featured=set(), limits=PickLimits())
    return Renderer().render(issue, render_options(Settings(_env_file=None)))


_LINES = st.lists(
    st.text(alphabet=st.sampled_from(". =\tabcé€\u2028"), max_size=90), max_size=8
).map("\n".join)
_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    max_size=120,
)


@examples(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    text=_LINES,
    name=_NAMES,
    local=st.from_regex(r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,40}", fullmatch=True),
)
def test_a_copy_is_in_wire_form_whatever_its_text_and_personal_values(
    rendered: RenderedIssue, text: str, name: str, local: str
) -> None:
    """No bare CR or LF and no line starting with a dot, from the issue's text or from the
    name and address put into each copy: the copy goes out as it is."""
    issue = replace(
        rendered,
        text=text + "\n" + rendered.text,
        html=rendered.html.replace("<body", f"<!-- {text} -->\n<body", 1),
    )
    options = message_options(
        Settings(_env_file=None, from_address=SENDER, public_url="https://news.example.org")
    )
    template = MessageTemplate.build(issue, options, secret_key=KEY, now=NOW)
    subscriber = Subscriber(id=7, email=f"{local}@example.org", name=name.strip() or None)
    try:
        data = template.render(subscriber)
    except MessageError:  # a name the headers refuse fails alone (tests/test_message.py)
        return

    raw = bytes(data)
    assert raw.count(b"\r") == raw.count(b"\r\n") == raw.count(b"\n")
    assert not raw.startswith(b".")
    assert b"\r\n." not in raw
    # So what aiosmtplib would send is the copy as it is, and the fast path sends it so.
    assert PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) == raw
    assert wire_form(data) is data
    # Decoded, the text part is the text as given.
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("plain",))
    assert part is not None
    assert str(part.get_content()).replace("\r\n", "\n").startswith(text + "\n")


class RefusesThenHangsUp(Recorder):
    """Says the mailbox does not exist, then closes the connection before DATA's reply."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        await server.push(f"550 5.1.1 <{address}>: Recipient address rejected: User unknown")
        server.transport.close()
        return "250 unsent"  # pushed to a closed connection: never read


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_refusal_before_the_connection_goes_is_still_the_refusal(pipelining: bool) -> None:
    """The replies are judged in the order the commands went: the RCPT refusal that came
    before the connection closed bounces the reader, on either path."""
    with SmtpServer(RefusesThenHangsUp()) as running, pytest.raises(MailboxUnknown):
        send_through(message(b"x\r\n"), "gone@example.org", running.port, pipelining=pipelining)


@pytest.mark.parametrize("line_end", ["\r", "\r\n"])
def test_a_carriage_return_in_the_issue_never_reaches_the_wire_bare(
    rendered: RenderedIssue, line_end: str
) -> None:
    issue = replace(rendered, text=f"one{line_end}two\n" + rendered.text)
    options = message_options(
        Settings(_env_file=None, from_address=SENDER, public_url="https://news.example.org")
    )
    data = bytes(
        MessageTemplate.build(issue, options, secret_key=KEY, now=NOW).render(
            Subscriber(id=1, email="ann@example.org")
        )
    )
    assert data.count(b"\r") == data.count(b"\r\n") == data.count(b"\n")
    assert wire_form(data) == data
