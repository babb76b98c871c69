"""Trying digest out never blocks the real send.

``make run`` sends the day's issue to the local outbox, to the example list. The first
send through a real relay that day must then send for real: copies that only reached the
outbox are owed again, and the example readers are cleared in one command.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult

from tests.dns_server import DnsServer
from tests.smtp_sink import Recorder, SmtpServer

from .conftest import REPO, digest_process

KEY = "going-live-key-of-at-least-32-characters"
EXAMPLE_LIST = REPO / "config" / "subscribers.example.csv"


def digest(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return digest_process(project, *args, env=env)


def relay_settings(port: int) -> dict[str, str]:
    return {
        "DIGEST_SECRET_KEY": KEY,
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
    }


@pytest.mark.timeout(120)
def test_copies_that_went_to_the_outbox_are_sent_for_real_through_the_relay(
    project: Path,
) -> None:
    # The trial, as make run makes it, but with a reader of our own on the list too.
    assert digest(project, "subscribers", "add", "editor@example.org").returncode == 0
    imported = digest(project, "subscribers", "import", "--source", "example", str(EXAMPLE_LIST))
    assert imported.returncode == 0, imported.stderr
    trial = digest(project, "send")
    assert "4 sent, 0 failed, 0 to retry, 0 sent before" in trial.stdout, trial.stderr

    # Going live: the example readers off the list, then the same day's send for real.
    cleared = digest(project, "subscribers", "remove", "--source", "example")
    assert cleared.stdout == "Removed 3 subscribers of source 'example'.\n"
    with SmtpServer(Recorder()) as relay:
        live = digest(project, "send", **relay_settings(relay.port))
        assert live.returncode == 0, live.stderr
        # The example readers' outbox copies are not counted as sent: they never were.
        assert "1 sent, 0 failed, 0 to retry, 0 sent before" in live.stdout
        assert "1 copies of this issue went only to the local outbox: sent for real now" in (
            live.stderr
        )
        received = Counter(rcpt for _, rcpts, _ in relay.handler.messages for rcpt in rcpts)
        assert received == {"editor@example.org": 1}

        # And only once: a second relay send finds everything sent.
        again = digest(project, "send", **relay_settings(relay.port))
        assert "0 sent, 0 failed, 0 to retry, 1 sent before" in again.stdout
        assert len(relay.handler.messages) == 1


@pytest.mark.timeout(120)
def test_a_relay_send_after_an_outbox_send_sends_every_copy_for_real(project: Path) -> None:
    for address in ("ann@example.org", "bob@example.org"):
        assert digest(project, "subscribers", "add", address).returncode == 0
    assert "2 sent" in digest(project, "send").stdout  # the outbox

    with SmtpServer(Recorder()) as relay:
        live = digest(project, "send", **relay_settings(relay.port))
        assert live.returncode == 0, live.stderr
        received = sorted(rcpt for _, rcpts, _ in relay.handler.messages for rcpt in rcpts)
    # Before: nothing went, "2 sent before", and the readers never got the issue.
    assert received == ["ann@example.org", "bob@example.org"]
    assert "2 sent, 0 failed, 0 to retry, 0 sent before" in live.stdout


def test_remove_takes_an_email_or_a_source(project: Path) -> None:
    assert digest(project, "subscribers", "add", "editor@example.org").returncode == 0
    neither = digest(project, "subscribers", "remove")
    assert neither.returncode == 2
    assert "give an EMAIL or --source LABEL" in neither.stderr
    both = digest(project, "subscribers", "remove", "editor@example.org", "--source", "example")
    assert both.returncode == 2

    # A source nobody was imported under removes nobody, and the others stay.
    none = digest(project, "subscribers", "remove", "--source", "example")
    assert none.stdout == "Removed 0 subscribers of source 'example'.\n"
    listed = digest(project, "subscribers", "list")
    assert listed.stdout == "editor@example.org\t\tactive\n"


# The README's going-live recipe, run as it stands.

LIVE_DOMAIN = "news.digest-live-tests.net"
LOGIN = ("digest", "the relay password")


def readme_going_live_block() -> str:
    """The shell block of the README's "Going live" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Going live\n") :]
    section = section[: section.index("\n## ")]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, "the Going live section has no sh block"
    return found.group(1)


def make_run_commands() -> list[str]:
    """The commands of the Makefile's ``run`` recipe (the trial), echoes left out."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nrun:", 1)[1].splitlines()[1:]
    commands = []
    for line in recipe:
        if not line.startswith("\t"):
            break
        if not line.startswith("\t@"):
            commands.append(line[1:].replace("$(BIN)", ".venv/bin"))
    assert commands, "the Makefile has no run recipe"
    return commands


def accept_the_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    given = (auth_data.login.decode(), auth_data.password.decode())
    return AuthResult(success=given == LOGIN)


@pytest.mark.parametrize("starttls", [False, True], ids=["plain", "starttls"])
@pytest.mark.timeout(240)
def test_the_readmes_going_live_steps_work_as_written(
    project: Path, tmp_path: Path, starttls: bool
) -> None:
    # The project as a checkout after `make run`: its .venv, and a list of real readers.
    (project / ".venv").symlink_to(REPO / ".venv")
    (project / "readers.csv").write_text("email,name\nann@example.org,Ann\nbob@example.org,\n")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")
    }
    for command in make_run_commands():
        trial = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        assert trial.returncode == 0, f"{command}: {trial.stderr}"

    # Only the example values change: the domain, the relay's address, and STARTTLS off
    # for a relay without it. Each must still be in the README, as written.
    block = readme_going_live_block()
    options: dict[str, Any] = {"authenticator": accept_the_login, "auth_require_tls": starttls}
    if starttls:
        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        options["tls_context"] = context
        options["require_starttls"] = True
        authority_file = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(authority_file))
    zone = {
        LIVE_DOMAIN: ["v=spf1 ip4:127.0.0.1 -all"],
        f"_dmarc.{LIVE_DOMAIN}": ["v=DMARC1; p=none"],
    }
    with DnsServer(zone) as dns, SmtpServer(Recorder(), **options) as relay:
        replacements = {
            "news.example.org": LIVE_DOMAIN,
            "DIGEST_SMTP__HOST=smtp.example.org": "DIGEST_SMTP__HOST=127.0.0.1",
            "DIGEST_SMTP__PORT=587": f"DIGEST_SMTP__PORT={relay.port}",
        }
        if not starttls:
            replacements["DIGEST_SMTP__SECURITY=starttls"] = "DIGEST_SMTP__SECURITY=none"
        for example, value in replacements.items():
            assert example in block, f"the README's going-live block no longer has {example}"
            block = block.replace(example, value)
        # The DNS answers come from the tests' own server, and the relay's certificate
        # from the tests' own CA: the two things a real set-up gets from the world.
        live = environment | {"DIGEST_CHECK__NAMESERVERS": dns.nameservers}
        if starttls:
            live["SSL_CERT_FILE"] = str(authority_file)
        done = subprocess.run(
            ["bash", "-e", "-c", block],
            cwd=project,
            env=live,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
        messages = list(relay.handler.messages)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    steps = "connected, EHLO, TLS, AUTH" if starttls else "connected, EHLO, AUTH"
    assert f"ok    relay 127.0.0.1:{relay.port}: {steps}" in done.stdout
    assert "ok    dns.spf: v=spf1 ip4:127.0.0.1 -all" in done.stdout
    # The test copy first, then the readers of readers.csv, and none of the example list.
    test_copy, *issue = messages
    assert test_copy[1] == ["you@example.org"]
    assert b"Subject: [TEST]" in test_copy[2]
    received = Counter(rcpt for _, rcpts, _ in issue for rcpt in rcpts)
    assert received == {"ann@example.org": 1, "bob@example.org": 1}
    assert "2 sent, 0 failed, 0 to retry, 0 sent before" in done.stdout
