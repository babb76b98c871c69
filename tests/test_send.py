"""Sending: the ledger makes every send resumable and never sends a copy twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from digest import sending
from digest.audience.tokens import read_unsubscribe_token
from digest.cli import cli
from digest.delivery.ledger import Ledger
from digest.delivery.mailer import OutboxTransport, Transport, classify
from digest.errors import DigestError
from digest.models import SubscriberStatus
from digest.settings import Settings, SmtpSettings, load_settings
from digest.store import Store

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "send-test-key-of-at-least-32-characters"


class RecordingTransport:
    """A test double at the transport boundary: records, and refuses whom it is told to."""

    name = "recording"

    def __init__(
        self, *, refuse: dict[str, tuple[int, str]] | None = None, times: int = 10**6
    ) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.attempts: list[str] = []
        self.refuse = refuse or {}
        self.times = times

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        self.attempts.append(recipient)
        if recipient in self.refuse and self.attempts.count(recipient) <= self.times:
            code, reply = self.refuse[recipient]
            raise classify(code, reply, recipient, at_rcpt=True)
        self.sent.append((recipient, data))

    async def close(self) -> None:
        return None


def settings_for(database_url: str) -> Settings:
    fast_retries = SmtpSettings(
        retry_attempts=3, retry_delay=0, retry_max_delay=0, failure_threshold=5
    )
    return load_settings(
        database_url=database_url, public_url="https://news.example.org", smtp=fast_retries
    )


def send(settings: Settings, transport: Transport) -> sending.SendReport:
    with Store.open(settings.database_url) as store:
        return asyncio.run(
            sending.send_issue(settings, store, DAY, transport, secret_key=KEY, now=NOW)
        )


@pytest.fixture
def subscribed(project: Path, database_url: str) -> Settings:
    settings = settings_for(database_url)
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [("ann@example.org", "Ann"), ("bo@example.org", None), ("cy@example.org", "Cy")],
            now=NOW,
        )
        store.subscribers.set_status("cy@example.org", SubscriberStatus.UNSUBSCRIBED, now=NOW)
    return settings


def test_each_active_subscriber_gets_one_copy_and_a_rerun_sends_none(subscribed: Settings) -> None:
    first_transport = RecordingTransport()
    first = send(subscribed, first_transport)
    second_transport = RecordingTransport()
    second = send(subscribed, second_transport)

    assert (first.sent, first.failed, first.already_sent) == (2, 0, 0)
    assert sorted(recipient for recipient, _ in first_transport.sent) == [
        "ann@example.org",
        "bo@example.org",
    ]
    assert (second.sent, second.already_sent) == (0, 2)
    assert second_transport.sent == []


def test_each_copy_is_the_subscribers_own(subscribed: Settings) -> None:
    transport = RecordingTransport()
    send(subscribed, transport)

    with Store.open(subscribed.database_url) as store:
        ids = {s.email: s.id for s in store.subscribers.iterate()}
    for recipient, data in transport.sent:
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert message.defects == []
        assert message["To"].addresses[0].addr_spec == recipient
        token = message["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
        read = read_unsubscribe_token(KEY, token)
        assert read is not None
        assert (read.subscriber_id, read.list_id) == (ids[recipient], "the-digest.localhost")
        assert read.is_for(KEY, recipient)
        text = message.get_body(("plain",))
        assert text is not None
        assert token in text.get_content()


def test_permanent_refusals_fail_at_once_transient_ones_are_retried(subscribed: Settings) -> None:
    transport = RecordingTransport(
        refuse={
            "ann@example.org": (550, "5.7.1 rejected by policy"),
            "bo@example.org": (451, "4.3.0 try later"),
        },
        times=1,
    )

    report = send(subscribed, transport)

    assert transport.attempts.count("ann@example.org") == 1
    assert transport.attempts.count("bo@example.org") == 2
    assert (report.sent, report.failed, report.still_pending) == (1, 1, 0)
    with Store.open(subscribed.database_url) as store:
        issue_id = store.issues.id_of(DAY)
        assert issue_id is not None
        counts = Ledger(store, issue_id).counts()
        assert (counts.sent, counts.failed, counts.pending) == (1, 1, 0)
        ann = store.subscribers.find("ann@example.org")
        assert ann is not None
        assert ann.status is SubscriberStatus.ACTIVE  # refused by policy, not a missing user
    assert send(subscribed, RecordingTransport()).sent == 0  # failed for good: not tried again


def test_no_such_user_bounces_the_subscriber(subscribed: Settings) -> None:
    send(
        subscribed,
        RecordingTransport(
            refuse={"ann@example.org": (550, "5.1.1 <ann@example.org>: no such user")}
        ),
    )

    with Store.open(subscribed.database_url) as store:
        ann = store.subscribers.find("ann@example.org")
    assert ann is not None
    assert ann.status is SubscriberStatus.BOUNCED


def test_a_relay_that_keeps_failing_stops_the_run_and_the_next_one_resumes(
    subscribed: Settings,
) -> None:
    with Store.open(subscribed.database_url) as store:
        store.subscribers.import_rows([(f"r{n}@example.org", None) for n in range(20)], now=NOW)
    down = {f"r{n}@example.org": (421, "4.3.2 service not available") for n in range(20)}
    down |= {"ann@example.org": (421, "down"), "bo@example.org": (421, "down")}

    with pytest.raises(sending.SendStopped, match="stopped after 5 failures in a row") as caught:
        send(subscribed, RecordingTransport(refuse=down))

    report = caught.value.report
    assert (report.sent, report.failed, report.still_pending) == (0, 0, 22)
    resumed = send(subscribed, RecordingTransport())
    assert (resumed.sent, resumed.still_pending) == (22, 0)


def test_the_issue_is_frozen_at_the_first_send(subscribed: Settings, project: Path) -> None:
    send(subscribed, RecordingTransport())
    (project / "templates").mkdir()
    (project / "templates" / "digest.txt.j2").write_text("changed\n", encoding="utf-8")
    with Store.open(subscribed.database_url) as store:
        store.subscribers.add("late@example.org", None, now=NOW)

    transport = RecordingTransport()
    send(subscribed.model_copy(update={"templates_dir": project / "templates"}), transport)

    ((recipient, data),) = transport.sent
    assert recipient == "late@example.org"
    assert b"Bashar al-Assad" in data
    assert b"changed" not in data


def test_nothing_new_sends_nothing(subscribed: Settings, project: Path) -> None:
    (project / "seeds" / "000_9a09748038e9bf2b.txt").unlink()
    (project / "seeds" / "other.txt").write_text("", encoding="utf-8")

    report = send(subscribed, RecordingTransport())

    assert report.nothing_new


def test_the_cli_sends_to_the_outbox(project: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "import", "config/subscribers.example.csv"])

    first = runner.invoke(cli, ["send", "--date", "2026-11-23"])
    second = runner.invoke(cli, ["send", "--date", "2026-11-23"])

    assert first.exit_code == 0, first.stderr
    assert (
        first.stdout
        == "Issue of 2026-11-23 to outbox (var/outbox): 3 sent, 0 failed, 0 to retry, 0 sent before.\n"
    )
    assert "preview-key links" in first.stderr
    assert second.stdout.endswith("0 sent, 0 failed, 0 to retry, 3 sent before.\n")
    files = list((project / "var" / "outbox" / "new").iterdir())
    copies = [BytesParser(policy=policy.default).parsebytes(path.read_bytes()) for path in files]
    assert sorted(str(message["To"]) for message in copies) == [
        "Reader One <reader.one@example.org>",
        "Réader Three <reader.three@example.org>",
        "reader.two@example.org",
    ]


def test_the_outbox_writes_whole_files(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    asyncio.run(
        outbox.send(
            b"Subject: x\r\n\r\nbody\r\n", sender="a@example.org", recipient="b@example.org"
        )
    )

    assert [path.read_bytes() for path in (tmp_path / "outbox" / "new").iterdir()] == [
        b"Subject: x\r\n\r\nbody\r\n"
    ]
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []


def test_test_copies_touch_no_ledger(project: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "import", "config/subscribers.example.csv"])

    result = runner.invoke(
        cli,
        ["send", "--date", "2026-11-23", "--to", "Editor@Example.org", "--to", "desk@example.org"],
    )
    real = runner.invoke(cli, ["send", "--date", "2026-11-23"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Test copies of 2026-11-23 to outbox (var/outbox): 2 sent, 0 failed.\n"
    assert real.stdout.endswith("3 sent, 0 failed, 0 to retry, 0 sent before.\n")
    subjects = sorted(
        str(BytesParser(policy=policy.default).parsebytes(path.read_bytes())["Subject"])
        for path in (project / "var" / "outbox" / "new").iterdir()
    )
    assert [subject.startswith("[TEST] ") for subject in subjects] == [
        False,
        False,
        False,
        True,
        True,
    ]


def test_dry_run_builds_every_copy_and_sends_and_stores_nothing(project: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "import", "config/subscribers.example.csv"])

    dry = runner.invoke(cli, ["send", "--date", "2026-11-23", "--dry-run"])
    real = runner.invoke(cli, ["send", "--date", "2026-11-23"])
    dry_after = runner.invoke(cli, ["send", "--date", "2026-11-23", "--dry-run"])

    assert (
        dry.stdout
        == "Dry run for the issue of 2026-11-23: 3 to send, 0 sent before; nothing was sent or stored.\n"
    )
    assert real.stdout.endswith("3 sent, 0 failed, 0 to retry, 0 sent before.\n")
    assert dry_after.stdout.startswith(
        "Dry run for the issue of 2026-11-23: 0 to send, 3 sent before;"
    )


def test_a_real_relay_needs_a_secret_key(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP__HOST", "127.0.0.1")

    result = CliRunner().invoke(cli, ["send"])

    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: DIGEST_SECRET_KEY is not set: a real send needs the key that signs "
        "unsubscribe links\n"
    )


def test_dkim_half_configured_is_an_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_DKIM__SELECTOR", "digest")

    result = CliRunner().invoke(cli, ["send", "--dry-run"])
    real = CliRunner().invoke(cli, ["send"])

    assert result.exit_code == 1  # a dry run loads the key as a send would
    assert result.stderr == "Error: dkim: set both private_key_file and selector, or neither\n"
    assert real.exit_code == 1
    assert real.stderr.endswith("Error: dkim: set both private_key_file and selector, or neither\n")


def test_an_unsubscribe_after_enqueue_leaves_nothing_to_retry(subscribed: Settings) -> None:
    send(subscribed, RecordingTransport(refuse={"ann@example.org": (451, "later")}))
    with Store.open(subscribed.database_url) as store:
        store.subscribers.set_status("ann@example.org", SubscriberStatus.UNSUBSCRIBED, now=NOW)

    report = send(subscribed, RecordingTransport())

    assert (report.sent, report.still_pending) == (0, 0)


def test_a_subscriber_removed_and_added_again_is_not_sent_the_issue_twice(
    subscribed: Settings,
) -> None:
    first = RecordingTransport()
    send(subscribed, first)
    with Store.open(subscribed.database_url) as store:
        assert store.subscribers.remove("ann@example.org")
        store.subscribers.add("Ann@Example.org", "Ann", now=NOW)

    again = RecordingTransport()
    report = send(subscribed, again)

    assert [recipient for recipient, _ in first.sent].count("ann@example.org") == 1
    assert again.sent == []
    assert (report.sent, report.already_sent) == (0, 2)
    with Store.open(subscribed.database_url) as store:
        assert sending.plan_send(subscribed, store, DAY).would_send == 0
        assert store.deliveries.count_to_send(store.issues.id_of(DAY)) == 0


def test_a_subscriber_removed_before_their_copy_went_gets_it_once_added_again(
    subscribed: Settings,
) -> None:
    send(subscribed, RecordingTransport(refuse={"ann@example.org": (451, "later")}))
    with Store.open(subscribed.database_url) as store:
        assert store.subscribers.remove("ann@example.org")
        store.subscribers.add("ann@example.org", "Ann", now=NOW)

    transport = RecordingTransport()
    report = send(subscribed, transport)

    assert [recipient for recipient, _ in transport.sent] == ["ann@example.org"]
    assert (report.sent, report.already_sent) == (1, 1)
    assert send(subscribed, RecordingTransport()).sent == 0


def resume(settings: Settings, transport: Transport) -> sending.SendReport:
    """A send that only finishes what an earlier one left pending, as a scheduled retry runs."""
    with Store.open(settings.database_url) as store:
        return asyncio.run(
            sending.send_issue(
                settings, store, DAY, transport, secret_key=KEY, now=NOW, resume=True
            )
        )


def test_a_resumed_send_gives_a_subscriber_added_again_their_pending_copy(
    subscribed: Settings,
) -> None:
    send(subscribed, RecordingTransport(refuse={"ann@example.org": (451, "later")}))
    with Store.open(subscribed.database_url) as store:
        assert store.subscribers.remove("ann@example.org")
        store.subscribers.add("ann@example.org", "Ann", now=NOW)

    transport = RecordingTransport()
    report = resume(subscribed, transport)

    assert [recipient for recipient, _ in transport.sent] == ["ann@example.org"]
    assert (report.sent, report.already_sent) == (1, 1)
    assert resume(subscribed, RecordingTransport()).sent == 0


def rename_table(database_url: str, name: str, to: str) -> None:
    """Rename a table, as from another session: to the send, as if its database were gone."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {name} RENAME TO {to}"))
    finally:
        engine.dispose()


class LosesTheDatabase(RecordingTransport):
    """Sends, and at the first copy the deliveries table goes away: the ledger cannot be written."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.database_url = database_url

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        await super().send(data, sender=sender, recipient=recipient)
        if len(self.sent) == 1:
            rename_table(self.database_url, "deliveries", "deliveries_gone")


def test_a_send_halted_by_the_database_going_away_says_why_and_the_next_run_finishes(
    subscribed: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    transport = LosesTheDatabase(subscribed.database_url)
    with Store.open(subscribed.database_url) as store, caplog.at_level(logging.WARNING):
        # One connection: the second copy is still queued, claimed and untried, when the
        # first cannot be recorded.
        run = sending.send_issue(
            subscribed, store, DAY, transport, secret_key=KEY, now=NOW, concurrency=1
        )
        # Halted by whichever write of the ledger came first (a record, a claim), naming it.
        with pytest.raises(sending.SendHalted, match="deliveries") as halted:
            asyncio.run(run)
    rename_table(subscribed.database_url, "deliveries_gone", "deliveries")

    # Neither copy was recorded: both are left, though one went.
    assert halted.value.report.still_pending == 2
    assert "could not release 1 unsent copies" in caplog.text
    assert "could not count the copies left pending" in caplog.text
    again = send(subscribed, RecordingTransport())
    assert (again.sent, again.still_pending) == (2, 0)


def test_dry_run_and_to_do_not_go_together(project: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--dry-run", "--to", "a@example.org"])

    assert result.exit_code == 2
    assert "--dry-run and --to do not go together" in result.stderr


class CountingTransport(RecordingTransport):
    """Checks, as each copy starts, how many copies were handed over but are not recorded."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.store = Store.open(database_url)
        self.most_unrecorded = 0

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        await asyncio.sleep(0.001)  # let the other workers and the recorder run
        with self.store.reading() as connection:
            recorded = connection.exec_driver_sql(
                "SELECT count(*) FROM deliveries WHERE status = 'sent'"
            ).scalar_one()
        self.most_unrecorded = max(self.most_unrecorded, len(self.sent) - recorded)
        await super().send(data, sender=sender, recipient=recipient)


def test_no_more_copies_go_unrecorded_than_there_are_connections(
    project: Path, database_url: str
) -> None:
    settings = settings_for(database_url)
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [(f"reader{n}@example.org", None) for n in range(120)], now=NOW
        )
    transport = CountingTransport(database_url)

    with Store.open(settings.database_url) as store:
        report = asyncio.run(
            sending.send_issue(
                settings, store, DAY, transport, secret_key=KEY, now=NOW, concurrency=4
            )
        )
    transport.store.close()

    assert report.sent == len(transport.sent) == 120
    # Each connection waits for its copy to be recorded before it starts the next, so a
    # crash at any moment leaves at most one copy per connection sent but unrecorded.
    assert 0 < transport.most_unrecorded <= 4


class StoppingTransport(RecordingTransport):
    """Asks the run to stop once it has taken the first copy, as a SIGINT would."""

    def __init__(self, stop: asyncio.Event) -> None:
        super().__init__()
        self.stop = stop

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        await super().send(data, sender=sender, recipient=recipient)
        self.stop.set()


def test_test_copies_stop_when_asked(project: Path, database_url: str) -> None:
    settings = settings_for(database_url)

    async def run() -> RecordingTransport:
        stop = asyncio.Event()
        transport = StoppingTransport(stop)
        with Store.open(database_url) as store:
            await sending.send_test_copies(
                settings,
                store,
                DAY,
                transport,
                ["a@example.org", "b@example.org", "c@example.org"],
                secret_key=KEY,
                now=NOW,
                stop=stop,
            )
        return transport

    with pytest.raises(
        DigestError, match=r"^interrupted: of 3 test copies, 1 sent, 0 failed, 2 not sent$"
    ):
        asyncio.run(run())


class BrokenTransport(RecordingTransport):
    """Raises what no transport should, for one recipient."""

    async def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        if recipient == "bo@example.org":
            raise ValueError("a bug")
        await super().send(data, sender=sender, recipient=recipient)


def test_an_unexpected_error_stops_the_send_instead_of_hanging_it(
    project: Path, database_url: str
) -> None:
    settings = settings_for(database_url)
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [("ann@example.org", None), ("bo@example.org", None)]
            + [(f"reader{n}@example.org", None) for n in range(40)],
            now=NOW,
        )
    transport = BrokenTransport()

    with Store.open(database_url) as store, pytest.raises(sending.SendHalted) as caught:
        asyncio.run(
            asyncio.wait_for(
                sending.send_issue(
                    settings, store, DAY, transport, secret_key=KEY, now=NOW, concurrency=1
                ),
                timeout=30,
            )
        )

    assert "bo@example.org: unexpected ValueError: a bug" in str(caught.value)
    report = caught.value.report
    assert report.sent == len(transport.sent) >= 1
    assert report.still_pending == 42 - report.sent  # the rest waits for the next run


def test_a_copy_that_cannot_be_built_fails_alone(project: Path, database_url: str) -> None:
    settings = settings_for(database_url)
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [("ann@example.org", "Ann\r\nBcc: everyone@example.org"), ("bo@example.org", None)],
            now=NOW,
        )
    transport = RecordingTransport()

    with Store.open(database_url) as store:
        report = asyncio.run(
            sending.send_issue(settings, store, DAY, transport, secret_key=KEY, now=NOW)
        )

    assert (report.sent, report.failed) == (1, 1)
    assert [recipient for recipient, _ in transport.sent] == ["bo@example.org"]
