"""Every failure says why: a relay that cannot be used stops the send at once with the
reason and the setting to change; copies that fail keep their reason, and the summary
and ``digest status`` count them by it.

Real aiosmtpd servers on 127.0.0.1: plain, with STARTTLS (a certificate from a CA of the
test's own, which the client does not trust), and with AUTH that refuses every login.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme
from aiosmtpd.smtp import AuthResult

from digest.delivery.reasons import connect_failure
from digest.errors import RelayUnavailable, RelayUnusable
from tests.conftest import digest_process
from tests.smtp_sink import Recorder, SmtpServer, closed_port

KEY = "relay-test-key-of-at-least-32-characters"
# Retries that would take this long were they made: a run that stops at once is quicker.
SLOW_RETRIES = {"DIGEST_SMTP__RETRY_ATTEMPTS": "4", "DIGEST_SMTP__RETRY_DELAY": "5"}


class Greylists(Recorder):
    """Answers 451 to every recipient: each copy stays pending, with the reason."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        return "451 4.7.1 Greylisted, try again later"


def refuse_every_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=False, handled=False)


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(certificate_authority: trustme.CA) -> Iterator[SmtpServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    with SmtpServer(Recorder(), tls_context=context) as server:
        yield server


def run_digest(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    defaults = {
        "DIGEST_SECRET_KEY": KEY,
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__TIMEOUT": "10",
    }
    return digest_process(project, *args, env=defaults | env)


@pytest.fixture
def listed(project: Path) -> Path:
    """The project with three subscribers on its list."""
    csv = project / "list.csv"
    csv.write_text("email,name\nann@example.org,Ann\nbob@example.org,\ncy@example.org,\n")
    assert run_digest(project, "subscribers", "import", str(csv)).returncode == 0
    return project


def send_fails_at_once(project: Path, port: int, **env: str) -> str:
    """Run digest send against ``port``; it must stop at once, exit 1 and say one line."""
    started = time.monotonic()
    result = run_digest(project, "send", DIGEST_SMTP__PORT=str(port), **SLOW_RETRIES | env)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    # Retried, the three copies would wait 5 s at least before a second attempt.
    assert took < 5, f"took {took:.1f} s: the send crawled through retries"
    return errors[0]


@pytest.mark.timeout(120)
def test_starttls_against_a_server_without_it_names_the_setting(listed: Path) -> None:
    with SmtpServer(Recorder()) as server:
        error = send_fails_at_once(listed, server.port)  # security is starttls by default
    assert f"127.0.0.1:{server.port}: server does not offer STARTTLS" in error
    assert "smtp.security = none" in error
    assert "0 sent, 0 failed, 3 left for the next run" in error


@pytest.mark.timeout(120)
def test_tls_against_a_plain_server_says_the_port_speaks_plain_smtp(listed: Path) -> None:
    with SmtpServer(Recorder()) as server:
        error = send_fails_at_once(listed, server.port, DIGEST_SMTP__SECURITY="tls")
    assert "TLS handshake failed: wrong version number" in error
    assert "smtp.security = starttls" in error


@pytest.mark.timeout(120)
def test_a_closed_port_is_connection_refused(listed: Path) -> None:
    with closed_port() as port:
        error = send_fails_at_once(listed, port, DIGEST_SMTP__SECURITY="none")
    assert f"127.0.0.1:{port}: connection refused" in error
    assert "check smtp.host and smtp.port" in error


@pytest.mark.timeout(120)
def test_an_untrusted_certificate_says_certificate_verify_failed(
    listed: Path, tls_server: SmtpServer
) -> None:
    error = send_fails_at_once(listed, tls_server.port)
    assert "certificate verify failed: unable to get local issuer certificate" in error
    assert "smtp.validate_certs = false only for a relay you trust" in error


@pytest.mark.timeout(120)
def test_a_refused_login_says_authentication_failed(listed: Path) -> None:
    with SmtpServer(Recorder(), authenticator=refuse_every_login, auth_require_tls=False) as server:
        error = send_fails_at_once(
            listed,
            server.port,
            DIGEST_SMTP__SECURITY="none",
            DIGEST_SMTP__USERNAME="digest",
            DIGEST_SMTP__PASSWORD="not-the-password-0123",
        )
    assert "authentication failed: 535 5.7.8 Authentication credentials invalid" in error
    assert "check smtp.username and DIGEST_SMTP__PASSWORD" in error
    assert "not-the-password-0123" not in error


@pytest.mark.timeout(120)
def test_copies_left_to_retry_are_counted_by_reason_in_the_summary_and_status(
    listed: Path,
) -> None:
    with SmtpServer(Greylists()) as server:
        result = run_digest(
            listed,
            "send",
            DIGEST_SMTP__PORT=str(server.port),
            DIGEST_SMTP__SECURITY="none",
            DIGEST_SMTP__RETRY_ATTEMPTS="1",
        )
    assert result.returncode == 2, result.stderr
    assert "0 sent, 0 failed, 3 to retry" in result.stdout
    assert "  3 to retry: 451 4.7.1 Greylisted, try again later" in result.stdout.splitlines()
    # Each copy's failure is logged with the recipient and the relay.
    relay = f"127.0.0.1:{server.port}"
    for address in ("ann@example.org", "bob@example.org", "cy@example.org"):
        assert (
            f"the copy for {address} was not accepted by {relay} (left to retry): 451 4.7.1"
            in result.stderr
        )

    status = run_digest(listed, "status")
    assert status.returncode == 0, status.stderr
    assert "  3 to retry: 451 4.7.1 Greylisted, try again later" in status.stdout.splitlines()


def test_the_reasons_for_a_relay_that_cannot_be_used() -> None:
    # The exceptions aiosmtplib raises, as it raises them (wrapped, for socket errors).
    refused = aiosmtplib.SMTPConnectError("Error connecting to h on port 1")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    unknown = aiosmtplib.SMTPConnectError("Error connecting to nowhere.invalid on port 25")
    unknown.__cause__ = socket.gaierror(-2, "Name or service not known")
    cases: list[tuple[BaseException, str]] = [
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 no"), "authentication failed: 535"),
        (
            aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
            "server does not offer STARTTLS",
        ),
        (
            aiosmtplib.SMTPException("The SMTP AUTH extension is not supported by this server."),
            "server does not offer AUTH",
        ),
        (refused, "connection refused"),
        (unknown, "name does not resolve"),
    ]
    for exc, reason in cases:
        failure = connect_failure(exc, relay="h:25", security="starttls", timeout=10)
        assert isinstance(failure, RelayUnusable), exc
        assert failure.reason.startswith(reason)
        assert str(failure).startswith(f"h:25: {reason}")


def test_a_time_out_or_a_busy_greeting_is_tried_again() -> None:
    busy = aiosmtplib.SMTPConnectResponseError(421, "4.3.2 too busy, try later")
    for exc, reason in [
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), "timed out after 10 s"),
        (busy, "421 4.3.2 too busy, try later"),
        (aiosmtplib.SMTPServerDisconnected("gone"), "the server closed the connection"),
    ]:
        failure = connect_failure(exc, relay="h:25", security="none", timeout=10)
        assert isinstance(failure, RelayUnavailable), exc
        assert failure.reason == reason
