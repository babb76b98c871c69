"""Trying digest out never blocks the real send.

``make run`` sends the day's issue to the local outbox, to the example list. The first
send through a real relay that day must then send for real: copies that only reached the
outbox are owed again, and the example readers are cleared in one command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.smtp_sink import Recorder, SmtpServer

from .conftest import REPO

KEY = "going-live-key-of-at-least-32-characters"
EXAMPLE_LIST = REPO / "config" / "subscribers.example.csv"


def digest(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")
    }
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=project,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


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
