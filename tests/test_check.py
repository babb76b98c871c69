"""digest check: a line per check, FAIL for what would make the send fail, nothing sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.dns_server import DnsServer
from tests.smtp_sink import Recorder, SmtpServer

# A domain of no one's (test data), but not one of the reserved example names.
READY = {
    "DIGEST_FROM_ADDRESS": "digest@news.digest-check-tests.net",
    "DIGEST_POSTAL_ADDRESS": "1 Test Street, Testtown",
    "DIGEST_PUBLIC_URL": "https://news.digest-check-tests.net",
    "DIGEST_SECRET_KEY": "check-test-key-of-at-least-32-characters",
    "DIGEST_SMTP__HOST": "127.0.0.1",
    "DIGEST_SMTP__SECURITY": "none",
}


@pytest.fixture
def ready(project: Path) -> Iterator[dict[str, str]]:
    """READY, with the From domain's SPF and DMARC records served by a local DNS server."""
    zone = {
        "news.digest-check-tests.net": ["v=spf1 ip4:127.0.0.1 -all"],
        "_dmarc.news.digest-check-tests.net": ["v=DMARC1; p=none"],
    }
    with DnsServer(zone) as dns:
        yield READY | {"DIGEST_CHECK__NAMESERVERS": dns.nameservers}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["check", *args], prog_name="digest", env=env)


def lines(result: Result) -> dict[str, str]:
    """Each check's name and its line."""
    return {line.split()[1].rstrip(":"): line for line in result.stdout.splitlines()}


def test_the_defaults_are_not_ready_for_a_real_send(project: Path) -> None:
    result = run()

    assert result.exit_code == 1
    found = lines(result)
    assert found["settings.from_address"].startswith(
        "FAIL  settings.from_address: digest@localhost is not on a real domain"
    )
    assert found["settings.postal_address"].startswith("FAIL")
    assert "CAN-SPAM" in found["settings.postal_address"]
    assert found["settings.public_url"].startswith("FAIL")
    assert found["settings.secret_key"].startswith("FAIL")
    assert found["settings.smtp"].startswith("warn")
    assert found["message.unsubscribe"].startswith(
        "FAIL  message.unsubscribe: List-Unsubscribe-Post"
    )
    assert found["message.parts"] == "ok    message.parts: text/plain and text/html"


@pytest.mark.timeout(60)
def test_a_ready_setup_passes_and_the_relay_is_tried(ready: dict[str, str]) -> None:
    with SmtpServer(Recorder()) as relay:
        result = run(env=ready | {"DIGEST_SMTP__PORT": str(relay.port)})
        assert relay.handler.messages == []  # nothing sent

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["relay"] == f"ok    relay 127.0.0.1:{relay.port}: connected, EHLO"
    assert all(not line.startswith("FAIL") for line in found.values())
    assert found["message.links"].startswith("ok    message.links:")
    assert "all https or mailto" in found["message.links"]


@pytest.mark.timeout(60)
def test_a_relay_without_starttls_fails_naming_the_setting(ready: dict[str, str]) -> None:
    with SmtpServer(Recorder()) as relay:
        env = ready | {"DIGEST_SMTP__PORT": str(relay.port), "DIGEST_SMTP__SECURITY": "starttls"}
        result = run(env=env)

    assert result.exit_code == 1
    relay_line = lines(result)["relay"]
    assert relay_line.startswith(
        f"FAIL  relay 127.0.0.1:{relay.port}: 127.0.0.1:{relay.port}: server does not offer STARTTLS"
    )
    assert "smtp.security = none" in relay_line


@pytest.mark.parametrize(
    "address",
    ["digest@news.example.org", "digest@example.com", "digest@mail.test", "digest@localhost"],
)
def test_an_example_or_local_from_domain_fails(project: Path, address: str) -> None:
    outbox_only = {name: value for name, value in READY.items() if "SMTP" not in name}
    result = run("--json", env=outbox_only | {"DIGEST_FROM_ADDRESS": address})

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert {"name", "status", "detail"} == set(document[0])
    [from_address] = [item for item in document if item["name"] == "settings.from_address"]
    assert from_address["status"] == "FAIL"
    assert address in from_address["detail"]
