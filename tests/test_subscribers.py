"""The subscriber list: addresses, CSV imports, the store (SQLite and PostgreSQL), the CLI."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.models import SubscriberStatus
from digest.store import Store
from digest.subscribers import CsvRow, InvalidAddress, normalise_address, read_csv

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="digest")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Ann@Example.ORG", "Ann@example.org"),
        ("  bo@example.org ", "bo@example.org"),
        ("cy@bücher.example", "cy@xn--bcher-kva.example"),
    ],
)
def test_addresses_are_normalised(given: str, stored: str) -> None:
    assert normalise_address(given) == stored


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("not-an-address", "An email address must have an @-sign"),
        ("a@b", "It should have a period"),
        ("zoë@example.org", "Internationalized characters before the @-sign are not supported"),
        ("a@example.org\nBcc: x@example.org", "contains a line break"),
    ],
)
def test_bad_addresses_say_why(given: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=reason):
        normalise_address(given)


def test_read_csv_reports_lines_and_keeps_the_good_rows() -> None:
    text = "Email,Name\nann@example.org,Ann Example\nnope,Nobody\n\nbo@example.org,\n,Only a name\n"

    assert read_csv(text) == [
        CsvRow(line=2, email="ann@example.org", name="Ann Example"),
        CsvRow(
            line=3, error="'nope' is not a valid address: An email address must have an @-sign."
        ),
        CsvRow(line=5, email="bo@example.org", name=None),
        CsvRow(line=6, error="no address in the email column"),
    ]


def test_read_csv_needs_a_header() -> None:
    assert read_csv("ann@example.org,Ann\n") == [
        CsvRow(line=1, error="the first line must name the columns: email,name")
    ]


def test_add_find_and_case(database_url: str) -> None:
    with Store.open(database_url) as store:
        ann, added = store.add_subscriber("Ann@example.org", "Ann", now=NOW)
        again, added_again = store.add_subscriber("ann@example.org", "Other", now=NOW)

        assert added
        assert not added_again
        assert again == ann
        assert (ann.email, ann.name, ann.status) == (
            "Ann@example.org",
            "Ann",
            SubscriberStatus.ACTIVE,
        )
        assert store.find_subscriber("ANN@EXAMPLE.ORG") == ann


def test_import_is_harmless_to_repeat(database_url: str) -> None:
    rows = [(f"reader{n}@example.org", f"Reader {n}") for n in range(2500)]
    with Store.open(database_url) as store:
        assert store.import_subscribers(rows, now=NOW) == (2500, 0)
        assert store.import_subscribers(
            [*rows, ("READER1@example.org", None), ("new@example.org", None)], now=NOW
        ) == (1, 2500)
        assert sum(1 for _ in store.iter_subscribers()) == 2501


def test_status_changes_and_listing_by_status(database_url: str) -> None:
    with Store.open(database_url) as store:
        store.import_subscribers(
            [("a@example.org", None), ("b@example.org", None), ("c@example.org", None)], now=NOW
        )
        changed = store.set_subscriber_status(
            "b@example.org", SubscriberStatus.UNSUBSCRIBED, now=NOW
        )

        assert changed is not None
        assert changed.status is SubscriberStatus.UNSUBSCRIBED
        assert [
            s.email for s in store.iter_subscribers(status=SubscriberStatus.ACTIVE, batch_size=1)
        ] == [
            "a@example.org",
            "c@example.org",
        ]
        assert (
            store.set_subscriber_status("nobody@example.org", SubscriberStatus.BOUNCED, now=NOW)
            is None
        )
        assert store.remove_subscriber("a@example.org")
        assert not store.remove_subscriber("a@example.org")
        assert [s.email for s in store.iter_subscribers()] == ["b@example.org", "c@example.org"]


def test_walking_the_list_keeps_memory_flat(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"

    def peak_while_walking(count: int) -> int:
        with Store.open(url) as store:
            store.import_subscribers(
                ((f"r{n}-{count}@example.org", None) for n in range(count)), now=NOW
            )
            tracemalloc.start()
            walked = sum(1 for _ in store.iter_subscribers(batch_size=500))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert walked >= count
            return peak

    small = peak_while_walking(2_000)
    large = peak_while_walking(20_000)

    # Ten times the subscribers, nowhere near ten times the memory.
    assert large < small * 2


def test_cli_add_list_unsubscribe_remove(workdir: Path) -> None:
    assert (
        run("subscribers", "add", "Ann@Example.org", "--name", "Ann  Example").stdout
        == "Added Ann@example.org.\n"
    )
    assert run("subscribers", "add", "ann@example.org").stdout == (
        "Ann@example.org is already on the list (active); left as it is.\n"
    )
    assert run("subscribers", "add", "bo@example.org").exit_code == 0
    assert (
        run("subscribers", "list").stdout
        == "Ann@example.org\tAnn Example\tactive\nbo@example.org\t\tactive\n"
    )

    assert (
        run("subscribers", "unsubscribe", "BO@example.org").stdout
        == "Unsubscribed bo@example.org.\n"
    )
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert listed == [
        {"email": "Ann@example.org", "name": "Ann Example", "status": "active"},
        {"email": "bo@example.org", "name": None, "status": "unsubscribed"},
    ]
    assert json.loads(run("subscribers", "list", "--json", "--status", "bounced").stdout) == []

    assert run("subscribers", "remove", "ann@example.org").stdout == "Removed ann@example.org.\n"
    missing = run("subscribers", "remove", "ann@example.org")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: ann@example.org is not on the list\n"


def test_cli_refuses_a_bad_address(workdir: Path) -> None:
    result = run("subscribers", "add", "nope")

    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: 'nope' is not a valid address: An email address must have an @-sign.\n"
    )


def test_cli_import(workdir: Path) -> None:
    (workdir / "list.csv").write_text(
        "email,name\nann@example.org,Ann\nbad@,Bad\nbo@example.org,Bo\n", encoding="utf-8"
    )

    first = run("subscribers", "import", "list.csv")
    second = run("subscribers", "import", "list.csv")

    assert first.exit_code == 1
    assert first.stdout == "2 subscribers added, 0 already on the list, 1 row refused.\n"
    assert first.stderr.startswith("error: list.csv:3: 'bad@' is not a valid address:")
    assert second.stdout == "0 subscribers added, 2 already on the list, 1 row refused.\n"
    assert [s["email"] for s in json.loads(run("subscribers", "list", "--json").stdout)] == [
        "ann@example.org",
        "bo@example.org",
    ]
