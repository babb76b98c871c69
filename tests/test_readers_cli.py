"""The operator's side of readers' data: import with statuses and consent, export-list,
show, export, erase, expire and the signup form snippet."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.audience.subscribers import read_csv
from digest.cli import cli
from digest.models import SubscriberStatus
from digest.settings import load_settings
from digest.store import Store

KEY = "readers-cli-key-of-at-least-32-characters"
NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def secret_key(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", KEY)
    monkeypatch.setenv("DIGEST_PUBLIC_URL", "https://news.example.org")


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="digest", input=stdin)


def status_of(email: str) -> SubscriberStatus | None:
    with Store.open(load_settings().database_url) as store:
        found = store.subscribers.find(email)
    return found.status if found is not None else None


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_takes_statuses_and_join_times_in_ours_and_listmonks_words() -> None:
    rows = read_csv(
        "email,name,status,created_at\n"
        "a@example.org,A,enabled,2024-05-06 10:00:00+02:00\n"
        "b@example.org,,blocklisted,2024-05-07\n"
        "c@example.org,,complained,\n"
        "d@example.org,,pending,\n"
        "e@example.org,,active,last tuesday\n"
    )
    assert [(r.email, r.status, r.subscribed_at) for r in rows[:3]] == [
        ("a@example.org", SubscriberStatus.ACTIVE, dt.datetime(2024, 5, 6, 8, tzinfo=dt.UTC)),
        ("b@example.org", SubscriberStatus.UNSUBSCRIBED, dt.datetime(2024, 5, 7, tzinfo=dt.UTC)),
        ("c@example.org", SubscriberStatus.COMPLAINED, None),
    ]
    assert rows[3].error is not None
    assert rows[3].error.startswith("status 'pending': expected one of active")
    assert rows[4].error is not None
    assert rows[4].error.startswith("subscribed_at 'last tuesday': expected a date")


def test_an_import_keeps_statuses_consent_and_never_reactivates(project: Path) -> None:
    assert run("subscribers", "add", "ann@example.org").exit_code == 0
    assert run("subscribers", "add", "gone@example.org").exit_code == 0
    assert run("subscribers", "unsubscribe", "gone@example.org").exit_code == 0
    listing = write(
        project / "moved.csv",
        "email,name,status,subscribed_at\n"
        "ann@example.org,Ann,unsubscribed,\n"
        "gone@example.org,,active,\n"
        "new@example.org,New,active,2025-02-03\n"
        "left@example.org,,bounced,\n",
    )
    result = run("subscribers", "import", str(listing), "--note", "from the old list")

    assert result.exit_code == 0, result.output
    assert "2 subscribers added, 2 already on the list (1 given the file's status)" in result.output
    assert status_of("ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert status_of("gone@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert status_of("left@example.org") is SubscriberStatus.BOUNCED
    shown = json.loads(run("subscribers", "show", "new@example.org", "--json").output)
    assert shown["subscriber"]["joined_at"] == "2025-02-03T00:00:00+00:00"
    assert shown["subscriber"]["joined_via"] == "import"
    [consent] = shown["consents"]
    assert (consent["method"], consent["file"], consent["note"]) == (
        "import",
        "moved.csv",
        "from the old list",
    )
    ann = json.loads(run("subscribers", "show", "ann@example.org", "--json").output)
    assert [(e["kind"], e["status"], e["cause"]) for e in ann["history"]] == [
        ("joined", "active", "added with digest subscribers add"),
        ("status", "unsubscribed", "an import said so"),
    ]


def test_export_list_is_read_back_by_import_into_another_installation(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        run("subscribers", "add", email, "--name", email[0].upper())
    run("subscribers", "unsubscribe", "b@example.org")
    exported = run("subscribers", "export-list")
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("a@example.org", "A", "active"),
        ("b@example.org", "B", "unsubscribed"),
        ("c@example.org", "C", "active"),
    ]
    only = run("subscribers", "export-list", "--status", "unsubscribed", "--format", "json")
    assert [r["email"] for r in json.loads(only.output)] == ["b@example.org"]

    monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{project / 'other.db'}")
    imported = run("subscribers", "import", str(write(project / "e.csv", exported.output)))
    assert imported.exit_code == 0, imported.output
    again = run("subscribers", "export-list")
    assert again.output == exported.output


def test_show_describes_everything_held_in_words(project: Path) -> None:
    run("subscribers", "add", "ann@example.org", "--name", "Ann")
    shown = run("subscribers", "show", "ann@example.org")
    assert shown.exit_code == 0
    assert shown.output.splitlines()[:2] == ["ann@example.org (Ann)", "  status:      active"]
    assert "  confirmed:   no" in shown.output
    assert "deliveries:\n  none" in shown.output
    missing = run("subscribers", "show", "bo@example.org")
    assert missing.exit_code == 1
    assert missing.output == "Error: bo@example.org is not on the list\n"


def test_export_writes_the_json_to_a_file(project: Path) -> None:
    run("subscribers", "add", "ann@example.org")
    result = run("subscribers", "export", "ann@example.org", "-o", str(project / "ann.json"))
    assert result.exit_code == 0
    data = json.loads((project / "ann.json").read_text(encoding="utf-8"))
    assert data["format"] == "digest-subscriber-export/1"
    assert data["subscriber"]["email"] == "ann@example.org"


def test_erase_leaves_a_hash_that_import_and_add_respect(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run("subscribers", "add", "ann@example.org", "--name", "Ann")
    run("subscribers", "add", "bo@example.org")
    assert run("subscribers", "erase", "ann@example.org", stdin="n\n").exit_code == 1
    assert status_of("ann@example.org") is SubscriberStatus.ACTIVE

    with caplog.at_level(logging.INFO):
        erased = run("subscribers", "erase", "ann@example.org", "--yes")
    assert erased.exit_code == 0
    assert status_of("ann@example.org") is None
    assert status_of("bo@example.org") is SubscriberStatus.ACTIVE
    assert "ann@example.org" not in caplog.text
    assert "erased at the request of the operator" in caplog.text
    with Store.open(load_settings().database_url) as store, store.reading() as connection:
        dump = "\n".join(connection.connection.iterdump())
    assert "ann@example.org" not in dump.casefold()
    assert "Ann'" not in dump

    listing = write(project / "l.csv", "email\nANN@example.org\ncy@example.org\n")
    imported = run("subscribers", "import", str(listing))
    assert imported.exit_code == 1
    assert "ANN@example.org was erased at its reader's request on" in imported.output
    assert status_of("cy@example.org") is SubscriberStatus.ACTIVE
    refused = run("subscribers", "add", "ann@example.org")
    assert refused.exit_code == 1
    assert "--force" in refused.output
    assert run("subscribers", "add", "ann@example.org", "--force").exit_code == 0
    assert status_of("ann@example.org") is SubscriberStatus.ACTIVE


def test_erase_needs_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    run("subscribers", "add", "ann@example.org")
    monkeypatch.delenv("DIGEST_SECRET_KEY")
    result = run("subscribers", "erase", "ann@example.org", "--yes")
    assert result.exit_code == 1
    assert result.output.startswith("Error: DIGEST_SECRET_KEY is not set: erasing an address")


def test_the_form_snippet_posts_to_the_public_url_and_carries_the_consent() -> None:
    result = run("form")
    assert result.exit_code == 0
    assert '<form method="post" action="https://news.example.org/subscribe">' in result.output
    assert 'name="website"' in result.output
    assert "Send me The Digest by email." in result.output


def test_expire_removes_only_old_unconfirmed_signups(project: Path) -> None:
    settings = load_settings()
    with Store.open(settings.database_url) as store:
        store.subscribers.add(
            "old@example.org", None, now=NOW - dt.timedelta(days=30), pending=True
        )
        store.subscribers.add("kept@example.org", None, now=NOW - dt.timedelta(days=30))
    result = run("subscribers", "expire")
    assert result.exit_code == 0
    assert result.output == "Removed 1 signup never confirmed within 7 days.\n"
    assert status_of("old@example.org") is None
    assert status_of("kept@example.org") is SubscriberStatus.ACTIVE


def test_a_pending_signup_is_activated_only_by_force_and_left_out_of_export_list(
    project: Path,
) -> None:
    with Store.open(load_settings().database_url) as store:
        store.subscribers.add("new@example.org", None, now=NOW, pending=True)
    added = run("subscribers", "add", "new@example.org")
    assert "has not confirmed yet; left as it is" in added.output
    assert run("subscribers", "export-list").output == "email,name,status,subscribed_at\n"
    pending = run("subscribers", "export-list", "--status", "pending")
    assert "new@example.org,,pending," in pending.output

    refused = run("subscribers", "resubscribe", "new@example.org")
    assert refused.exit_code == 1
    assert "skips the double opt-in" in refused.output
    assert status_of("new@example.org") is SubscriberStatus.PENDING
    assert run("subscribers", "resubscribe", "new@example.org", "--force").exit_code == 0
    assert status_of("new@example.org") is SubscriberStatus.ACTIVE
    shown = json.loads(run("subscribers", "show", "new@example.org", "--json").output)
    assert shown["history"][-1]["cause"].startswith("digest subscribers resubscribe (forced), by ")
