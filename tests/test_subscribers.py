"""The subscriber list: addresses, CSV imports, the store (SQLite and PostgreSQL), the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import tracemalloc
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.audience.subscribers import (
    NAME_LIMIT,
    CsvRow,
    normalise_address,
    normalise_name,
    read_csv,
)
from digest.cli import cli
from digest.content.loader import SeedFormat, decode_seed, parse_article
from digest.content.picker import pick
from digest.email.message import MessageTemplate
from digest.email.render import Renderer
from digest.errors import InvalidAddress, InvalidName
from digest.models import PickLimits, Subscriber, SubscriberStatus
from digest.options import message_options, render_options
from digest.settings import Settings
from digest.store import Store

from .conftest import SEED

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
        CsvRow(
            line=1,
            error="the first line must name the columns: email,name "
            "(and optionally status,subscribed_at)",
        )
    ]


def test_add_find_and_case(database_url: str) -> None:
    with Store.open(database_url) as store:
        ann, added = store.subscribers.add("Ann@example.org", "Ann", now=NOW)
        again, added_again = store.subscribers.add("ann@example.org", "Other", now=NOW)

        assert added
        assert not added_again
        assert again == ann
        assert (ann.email, ann.name, ann.status) == (
            "Ann@example.org",
            "Ann",
            SubscriberStatus.ACTIVE,
        )
        assert store.subscribers.find("ANN@EXAMPLE.ORG") == ann


def test_import_is_harmless_to_repeat(database_url: str) -> None:
    rows = [(f"reader{n}@example.org", f"Reader {n}") for n in range(2500)]
    with Store.open(database_url) as store:
        assert store.subscribers.import_rows(rows, now=NOW) == (2500, 0)
        assert store.subscribers.import_rows(
            [*rows, ("READER1@example.org", None), ("new@example.org", None)], now=NOW
        ) == (1, 2500)
        assert sum(1 for _ in store.subscribers.iterate()) == 2501


def test_status_changes_and_listing_by_status(database_url: str) -> None:
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [("a@example.org", None), ("b@example.org", None), ("c@example.org", None)], now=NOW
        )
        changed = store.subscribers.set_status(
            "b@example.org", SubscriberStatus.UNSUBSCRIBED, now=NOW
        )

        assert changed is not None
        assert changed.status is SubscriberStatus.UNSUBSCRIBED
        assert [
            s.email for s in store.subscribers.iterate(status=SubscriberStatus.ACTIVE, batch_size=1)
        ] == [
            "a@example.org",
            "c@example.org",
        ]
        assert (
            store.subscribers.set_status("nobody@example.org", SubscriberStatus.BOUNCED, now=NOW)
            is None
        )
        assert store.subscribers.remove("a@example.org")
        assert not store.subscribers.remove("a@example.org")
        assert [s.email for s in store.subscribers.iterate()] == ["b@example.org", "c@example.org"]


def test_walking_the_list_keeps_memory_flat(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"

    def peak_while_walking(count: int) -> int:
        with Store.open(url) as store:
            store.subscribers.import_rows(
                ((f"r{n}-{count}@example.org", None) for n in range(count)), now=NOW
            )
            tracemalloc.start()
            walked = sum(1 for _ in store.subscribers.iterate(batch_size=500))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert walked >= count
            return peak

    # Two batches, then twenty: tracemalloc makes each row slow to walk.
    small = peak_while_walking(1_000)
    large = peak_while_walking(10_000)

    # Ten times the subscribers, nowhere near ten times the memory.
    assert large < small * 2


def test_cli_add_list_unsubscribe_remove(workdir: Path) -> None:
    assert (
        run("subscribers", "add", "Ann@Example.org", "--name", "Ann  Example").stdout
        == "Added Ann@example.org.\n"
    )
    assert run("subscribers", "add", "ann@example.org").stdout == (
        "Ann@example.org is already on the list; left as it is.\n"
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


def test_an_unsubscribed_address_comes_back_only_by_resubscribe(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run("subscribers", "add", "bo@example.org")
    run("subscribers", "unsubscribe", "bo@example.org")

    # Adding it again leaves the reader's choice alone, and says how to override it.
    assert run("subscribers", "add", "bo@example.org").stdout == (
        "bo@example.org is already on the list (unsubscribed); left as it is. "
        "To send to it again: digest subscribers resubscribe bo@example.org\n"
    )
    assert json.loads(run("subscribers", "list", "--json").stdout)[0]["status"] == "unsubscribed"

    with caplog.at_level(logging.WARNING, logger="digest.cli.subscribers"):
        result = run("subscribers", "resubscribe", "BO@example.org")
    assert result.stdout == "Resubscribed bo@example.org (was unsubscribed).\n"
    assert json.loads(run("subscribers", "list", "--json").stdout)[0]["status"] == "active"
    [record] = caplog.records
    assert re.fullmatch(
        r"bo@example\.org resubscribed by \S.* at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 "
        r"\(was unsubscribed\)",
        record.getMessage(),
    )

    assert run("subscribers", "resubscribe", "bo@example.org").stdout == (
        "bo@example.org is active already; nothing changed.\n"
    )
    missing = run("subscribers", "resubscribe", "nobody@example.org")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: nobody@example.org is not on the list\n"


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


# Names: whatever is let in must be sendable.

# A flag made of tag characters (format characters a name keeps).
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"

# Text as it arrives from a CSV or a command line: controls, line breaks, format
# characters, emoji sequences, "@" and the rest.
_RAW_NAME = st.lists(
    st.characters(codec="utf-8")
    | st.sampled_from(
        [
            *("\x00", "\t", "\r\n", "\u2028", "\u00ad", "\u200b", "\u200d", "\ufe0f", "\u202e"),
            *("👩\u200d👩\u200d👧", "❤\ufe0f", "e\u0301", "@", "＠", " ", ",", '"'),
        ]
    ),
    max_size=250,
).map("".join)


@pytest.fixture(scope="module")
def copy_for(seed_format: SeedFormat) -> Callable[[Subscriber], bytes]:
    """A function making a subscriber's copy of the real issue (reported briefly on failure)."""
    article = parse_article(
        decode_seed(SEED.read_bytes(), "seed"), source="seed", seed_format=seed_format
    )
    issue = pick([article], today=NOW.date(), already_featured=set(), limits=PickLimits())
    configured = Settings(_env_file=None, from_address="digest@news.example.org")
    template = MessageTemplate.build(
        Renderer().render(issue, render_options(configured)),
        message_options(configured),
        secret_key="k" * 32,
        now=NOW,
    )
    return lambda subscriber: template.render(subscriber)


def assert_sent_as_is(copy_for: Callable[[Subscriber], bytes], name: str) -> None:
    data = copy_for(Subscriber(id=1, email="ann@example.org", name=name))
    to = BytesParser(policy=policy.strict).parsebytes(data)["To"]
    assert to.defects == ()
    assert [(a.display_name, a.addr_spec) for a in to.addresses] == [(name, "ann@example.org")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_RAW_NAME)
def test_every_name_an_import_accepts_can_be_sent(
    copy_for: Callable[[Subscriber], bytes], raw: str
) -> None:
    out = io.StringIO()
    csv.writer(out).writerows([["email", "name"], ["ann@example.org", raw]])

    [row] = read_csv(out.getvalue())

    if row.name is not None:
        assert_sent_as_is(copy_for, row.name)


def test_a_quote_left_open_is_reported_and_swallows_nothing() -> None:
    text = 'email,name\nann@example.org,Ann\nbo@example.org,"Bo\ncy@example.org,Cy\n'

    rows = read_csv(text)

    assert rows[0] == CsvRow(line=2, email="ann@example.org", name="Ann")
    assert [(row.line, row.email) for row in rows[1:]] == [(3, None)]
    assert rows[1].error is not None
    assert "a quote is opened and never closed" in rows[1].error
    assert "this row and any after it were not imported" in rows[1].error


def test_a_field_over_the_csv_limit_is_reported_not_raised() -> None:
    text = f"email,name\nann@example.org,Ann\nbo@example.org,{'x' * 200_000}\ncy@example.org,Cy\n"

    rows = read_csv(text)

    assert rows[0] == CsvRow(line=2, email="ann@example.org", name="Ann")
    assert [(row.line, row.email) for row in rows[1:]] == [(3, None)]
    assert rows[1].error is not None
    assert "field larger than field limit" in rows[1].error
    assert "this row and any after it were not imported" in rows[1].error


def test_names_with_a_line_break_or_an_at_sign_are_refused_by_line() -> None:
    text = (
        "email,name\n"
        'ann@example.org,"Ann\nExample"\n'
        "bo@example.org,bo@example.org\n"
        "cy@example.org,Cy\u00ad Example\n"
        "di@example.org,Di\x00\n"
    )

    rows = read_csv(text)

    assert [(row.line, row.email, row.name) for row in rows] == [
        (2, None, None),
        (4, None, None),
        (5, "cy@example.org", "Cy Example"),
        (6, None, None),
    ]
    assert [row.error for row in rows] == [
        "the name 'Ann\\nExample' contains a line break",
        "the name 'bo@example.org' contains @: a name must not look like an address",
        None,
        "the name 'Di\\x00' contains a control character (U+0000)",
    ]


def test_cli_import_reports_a_broken_file_and_keeps_what_came_before(workdir: Path) -> None:
    (workdir / "open.csv").write_text(
        'email,name\nann@example.org,Ann\nbo@example.org,"Bo\ncy@example.org,Cy\n',
        encoding="utf-8",
    )
    (workdir / "huge.csv").write_text(
        f"email,name\ndi@example.org,Di\nev@example.org,{'x' * 200_000}\n", encoding="utf-8"
    )

    left_open = run("subscribers", "import", "open.csv")
    too_large = run("subscribers", "import", "huge.csv")

    assert left_open.exit_code == 1
    assert left_open.stdout == "1 subscriber added, 0 already on the list, 1 row refused.\n"
    assert left_open.stderr.startswith("error: open.csv:3: not valid CSV: a quote is opened")
    assert too_large.exit_code == 1
    assert too_large.stdout == "1 subscriber added, 0 already on the list, 1 row refused.\n"
    assert too_large.stderr.startswith(
        "error: huge.csv:3: not valid CSV: field larger than field limit (131072)"
    )
    assert [s["email"] for s in json.loads(run("subscribers", "list", "--json").stdout)] == [
        "ann@example.org",
        "di@example.org",
    ]


def test_cli_add_takes_a_name_by_the_same_rule(workdir: Path) -> None:
    refused = run("subscribers", "add", "eve@example.org", "--name", "Eve\x00")
    added = run("subscribers", "add", "zoe@example.org", "--name", " Zoe\u0301 \u00ad❤\ufe0f ")

    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: --name: the name 'Eve\\x00' contains a control character (U+0000)\n"
    )
    assert added.stdout == "Added zoe@example.org.\n"
    assert json.loads(run("subscribers", "list", "--json").stdout) == [
        {"email": "zoe@example.org", "name": "Zoé ❤\ufe0f", "status": "active"}
    ]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, None),
        ("", None),
        (" \t ", None),
        ("\u200b", None),
        ("  Ann \t Example ", "Ann Example"),
        ("Zoe\u0301 Bronte\u0308", "Zoé Brontë"),
        ("Soft\u00adhyphen, zero\u200bwidth, \ufeffmark", "Softhyphen, zerowidth, mark"),
        ("\u202eevil\u202c", "evil"),
        ("Ann\u00a0Example", "Ann Example"),
        ("👩\u200d👩\u200d👧\u200d👦 Family", "👩\u200d👩\u200d👧\u200d👦 Family"),
        ("❤\ufe0f and 👍🏽", "❤\ufe0f and 👍🏽"),
        (SCOTLAND, SCOTLAND),
        ("می\u200cخواهم", "می\u200cخواهم"),
        ('Smith, John "Jack" (Editor) \\ =?', 'Smith, John "Jack" (Editor) \\ =?'),
        ("x" * NAME_LIMIT, "x" * NAME_LIMIT),
    ],
)
def test_names_are_normalised(given: str | None, stored: str | None) -> None:
    assert normalise_name(given) == stored


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("Eve\x00", r"contains a control character \(U\+0000\)"),
        ("Eve\x1b[31m", r"contains a control character \(U\+001B\)"),
        ("Eve\r\nBcc: x@example.org", "contains a line break"),
        ("Eve\n", "contains a line break"),
        ("Eve\u2028Bcc", "contains a line break"),
        ("Eve\x85", "contains a line break"),
        ("Eve\ud800", "is not valid text"),
        ("ann@example.org", "contains @: a name must not look like an address"),
        ("ann＠example.org", "contains @"),
        ("x" * (NAME_LIMIT + 1), f"is too long: {NAME_LIMIT + 1} characters, {NAME_LIMIT} at most"),
    ],
)
def test_names_that_cannot_be_sent_are_refused_with_the_reason(given: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        normalise_name(given)


def test_a_refused_name_is_shown_short() -> None:
    with pytest.raises(InvalidName) as caught:
        normalise_name("x\n" * 100_000)

    assert len(str(caught.value)) < 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_RAW_NAME)
def test_every_name_the_rule_accepts_can_be_sent(
    copy_for: Callable[[Subscriber], bytes], raw: str
) -> None:
    try:
        name = normalise_name(raw)
    except InvalidName:
        return
    if name is not None:
        assert normalise_name(name) == name
        assert_sent_as_is(copy_for, name)


def test_an_import_reports_an_address_repeated_in_the_file(workdir: Path) -> None:
    csv_file = workdir / "list.csv"
    csv_file.write_text(
        "email,name\nann@example.org,Ann\nbo@example.org,\nANN@example.org,Ann again\n"
    )

    result = run("subscribers", "import", str(csv_file))

    assert result.exit_code == 0
    assert result.stdout == (
        "2 subscribers added, 0 already on the list, 1 repeated in the file, 0 rows refused.\n"
    )
    assert result.stderr == f"note: {csv_file}:4: same address as line 2\n"


def test_a_latin1_import_names_the_line_and_the_way_to_read_it(workdir: Path) -> None:
    csv_file = workdir / "excel.csv"
    csv_file.write_bytes(
        "email,name\nann@example.org,Ann\nbo@example.org,Bo Müller\n".encode("latin-1")
    )

    refused = run("subscribers", "import", str(csv_file))
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"Error: {csv_file}:3: not utf-8-sig text (byte 0xfc); if the file is Latin-1 "
        "(Excel on Windows often writes it), import it with --encoding latin-1\n"
    )
    assert run("subscribers", "list").stdout == ""

    read = run("subscribers", "import", "--encoding", "latin-1", str(csv_file))
    assert read.exit_code == 0, read.output
    assert run("subscribers", "list").stdout == (
        "ann@example.org\tAnn\tactive\nbo@example.org\tBo Müller\tactive\n"
    )
    unknown = run("subscribers", "import", "--encoding", "klingon", str(csv_file))
    assert unknown.stderr == "Error: --encoding klingon: not an encoding Python knows\n"
