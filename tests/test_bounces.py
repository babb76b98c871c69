"""What comes back after a send reaches the list: VERP return paths, reading bounce mailboxes,
tracing each report to its delivery, and what each kind does to the subscriber.

The real-world formats are the corpus in tests/fixtures/bounces/ (real messages from 31
servers, each with its collection's expected verdict); the tracing tests send a real issue
through aiosmtpd and answer its copies with reports addressed as a mail server would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import mailbox
import os
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from imapclient import SEEN, IMAPClient
from sqlalchemy import select
from starlette.testclient import TestClient

from digest import pipeline, sending
from digest.audience.verp import ReturnPath, delivery_of
from digest.bounces.mailbox import PROCESSED_FOLDER, configured_source, open_source
from digest.bounces.parse import read_returned
from digest.bounces.process import ProcessReport, process_mailbox
from digest.checks.reputation import check_reputation
from digest.cli import cli
from digest.delivery.ledger import Ledger
from digest.delivery.totals import REFUSAL_RATE_MIN_COPIES
from digest.errors import DigestError
from digest.models import BounceKind, Issue, SubscriberStatus
from digest.readers.record import held_about
from digest.schedule import Scheduler
from digest.settings import (
    BounceSettings,
    Settings,
    SmtpSettings,
    WebhookSettings,
    load_settings,
)
from digest.store import Store, deliveries
from digest.store.suppression import SoftRule, TracedEvent
from digest.web.app import create_app
from tests.dovecot import Dovecot, dovecot_missing
from tests.smtp_sink import Recorder, closed_port

from .conftest import REPO

CORPUS = REPO / "tests" / "fixtures" / "bounces"
VERDICTS = json.loads((CORPUS / "verdicts.json").read_text(encoding="utf-8"))
KEY = "bounce-test-key-of-at-least-32-characters"
BOUNCES = "bounces@news.example.org"
READERS = ("ann@example.net", "bob@example.net", "cat@example.net")


# The corpus: real messages, their collection's verdicts.


@pytest.mark.parametrize("verdict", VERDICTS, ids=[v["file"] for v in VERDICTS])
def test_a_real_returned_message_gets_its_expected_verdict(verdict: dict[str, str]) -> None:
    raw = (CORPUS / verdict["file"]).read_bytes()
    returned = read_returned(raw)

    found = [(f.kind.value, (f.address or "").lower()) for f in returned.findings]
    if b"\nAction: delayed" in raw.replace(b"\r\n", b"\n"):
        # A delay warning: the collection counts it as the soft bounce it may become; here
        # it is recorded and ignored, since the copy may yet arrive.
        assert found == [("ignored", verdict["recipient"])], returned.findings
        assert returned.findings[0].reason.startswith("delayed: ")
        return
    if verdict["kind"] == "ignored":
        # Not a bounce: nothing to act on, whether or not it is recognised.
        assert all(kind == "ignored" for kind, _ in found), found
        return
    assert all(kind == verdict["kind"] for kind, _ in found), found
    assert found, (returned.form, returned.problem)
    if verdict["recipient"] is not None:  # None: the collection names no one (arf-12 does,
        # in Removal-Recipient, which the collection's parser does not read)
        assert verdict["recipient"] in [address for _, address in found], returned.findings


def test_the_corpus_covers_twenty_mail_servers() -> None:
    servers = {v["mta"] for v in VERDICTS} - {"ARF", "RFC3464", "RFC3834"}
    listed = {path.name for path in CORPUS.glob("*.eml")}

    assert len(servers) >= 20
    assert listed == {v["file"] for v in VERDICTS}


# The return path.


@given(
    delivery_id=st.integers(min_value=0, max_value=2**48),
    key=st.text(min_size=32, max_size=40),
    flip=st.integers(min_value=0, max_value=200),
)
@hypothesis_settings(max_examples=200, deadline=None)
def test_a_return_path_names_its_delivery_in_any_case_and_no_other(
    delivery_id: int, key: str, flip: int
) -> None:
    address = ReturnPath(bounce_address=BOUNCES, secret_key=key).for_delivery(delivery_id)
    local = address.split("@")[0]

    assert len(local) <= 64
    assert delivery_of(address, bounce_address=BOUNCES, secret_key=key) == delivery_id
    assert delivery_of(address.upper(), bounce_address=BOUNCES, secret_key=key) == delivery_id
    token = local.split("+", 1)[1]
    index = flip % len(token)
    changed = token[:index] + ("a" if token[index] != "a" else "b") + token[index + 1 :]
    forged = f"bounces+{changed}@news.example.org"
    assert delivery_of(forged, bounce_address=BOUNCES, secret_key=key) is None
    assert delivery_of(address, bounce_address=BOUNCES, secret_key=key + "x") is None
    assert delivery_of(address, bounce_address="returns@news.example.org", secret_key=key) is None


# A real send, and reports about its copies.


@dataclass
class Sent:
    settings: Settings
    # recipient -> (envelope sender, the copy's Message-ID)
    copies: dict[str, tuple[str, str]]
    maildir: Path


def settings_for(project: Path, database_url: str, port: int, **extra: Any) -> Settings:
    return load_settings(
        database_url=database_url,
        outbox_dir=project / "var" / "outbox",
        secret_key=KEY,
        public_url="https://news.example.org",
        from_address="digest@news.example.org",
        bounce_address=BOUNCES,
        smtp=SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5),
        **extra,
    )


@pytest.fixture
def sent(project: Path, database_url: str, smtp_server: tuple[Recorder, int]) -> Sent:
    handler, port = smtp_server
    maildir = project / "bounces"
    mailbox.Maildir(maildir, create=True).close()
    settings = settings_for(project, database_url, port, bounces={"source": str(maildir)})
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [(address, None) for address in READERS], now=dt.datetime.now(dt.UTC)
        )
        report = asyncio.run(sending.send_day(settings, store, dt.date.today()))
    assert report.sent == len(READERS)
    copies = {}
    for sender, recipients, data in handler.messages:
        message_id = next(
            line.split(b":", 1)[1].strip().decode()
            for line in data.split(b"\r\n")
            if line.lower().startswith(b"message-id:")
        )
        copies[recipients[0]] = (sender, message_id)
    return Sent(settings=settings, copies=copies, maildir=maildir)


def dsn(
    to: str,
    recipient: str,
    status: str,
    diagnostic: str,
    *,
    action: str = "failed",
    original_message_id: str | None = None,
) -> bytes:
    """A delivery status notification as Postfix writes one."""
    original = (
        f"--report\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: digest@news.example.org\r\nTo: {recipient}\r\n"
        f"Message-ID: {original_message_id}\r\nSubject: The Digest\r\n\r\n"
        if original_message_id
        else ""
    )
    return (
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="report"\r\n'
        f"\r\n--report\r\nContent-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"--report\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n{original}--report--\r\n"
    ).encode()


def arf(to: str, recipient: str, feedback_type: str, *, message_id: str = "") -> bytes:
    """A feedback report as a provider's feedback loop writes one, quoting the copy."""
    quoted_id = f"Message-ID: {message_id}\r\n" if message_id else ""
    return (
        f"From: feedback@fbl.example.net\r\nTo: {to}\r\nSubject: FW: The Digest\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@fbl.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r\n\r\n'
        "--arf\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--arf\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: {recipient}\r\n\r\n"
        "--arf\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: digest@news.example.org\r\nTo: {recipient}\r\n{quoted_id}"
        "Subject: The Digest\r\n\r\n--arf--\r\n"
    ).encode()


def deliver(maildir: Path, *messages: bytes) -> None:
    box = mailbox.Maildir(maildir, create=False)
    for message in messages:
        box.add(message)
    box.close()


def process(sent: Sent, settings: Settings | None = None) -> ProcessReport:
    settings = settings or sent.settings
    with Store.open(settings.database_url) as store, open_source(str(sent.maildir)) as box:
        return process_mailbox(settings, store, box)


def status_of(sent: Sent, address: str) -> SubscriberStatus:
    with Store.open(sent.settings.database_url) as store:
        found = store.subscribers.find(address)
    assert found is not None
    return found.status


def test_each_copy_has_its_own_return_path_and_a_feedback_id(
    sent: Sent, smtp_server: tuple[Recorder, int]
) -> None:
    handler, _ = smtp_server
    with Store.open(sent.settings.database_url) as store, store.reading() as connection:
        ids = dict(connection.execute(select(deliveries.c.email_key, deliveries.c.id)).all())

    senders = {recipient: sender for recipient, (sender, _) in sent.copies.items()}
    assert len(set(senders.values())) == len(READERS)
    for recipient, sender in senders.items():
        assert sender.startswith("bounces+")
        assert sender.endswith("@news.example.org")
        assert delivery_of(sender, bounce_address=BOUNCES, secret_key=KEY) == ids[recipient]
    for _, _, data in handler.messages:
        today = dt.date.today().isoformat()
        assert f"\r\nFeedback-ID: {today}:".encode() in data
        assert b":digest\r\n" in data


def test_a_hard_bounce_to_the_return_path_bounces_its_subscriber_once(sent: Sent) -> None:
    sender, _ = sent.copies["ann@example.net"]
    # The receiving server names the address it forwarded to: the copy's is what counts.
    deliver(
        sent.maildir, dsn(sender, "ann.forwarded@example.org", "5.1.1", "550 5.1.1 User unknown")
    )

    first = process(sent)
    again = process(sent)

    assert status_of(sent, "ann@example.net") is SubscriberStatus.BOUNCED
    assert status_of(sent, "bob@example.net") is SubscriberStatus.ACTIVE
    assert (first.messages, first.kinds["hard"], len(first.changes)) == (1, 1, 1)
    assert first.changes[0].reason == "hard: 5.1.1 550 5.1.1 User unknown"
    assert (again.messages, again.kinds) == (0, {})
    assert not list((sent.maildir / "new").iterdir())
    [kept] = list((sent.maildir / "cur").iterdir())
    assert kept.name.endswith(":2,S")
    with Store.open(sent.settings.database_url) as store:
        [event] = store.returns.events()
    assert (event.email, event.kind, event.status, event.matched_by) == (
        "ann@example.net",
        BounceKind.HARD,
        "5.1.1",
        "token",
    )
    assert event.issue_date == dt.date.today()


def test_a_forged_return_path_suppresses_no_one(sent: Sent) -> None:
    sender, _ = sent.copies["bob@example.net"]
    token = sender.split("+", 1)[1].split("@")[0]
    forged = f"bounces+{token[::-1]}@news.example.org"
    deliver(sent.maildir, dsn(forged, "bob@example.net", "5.1.1", "550 5.1.1 User unknown"))

    report = process(sent)

    assert report.forged == 1
    assert report.changes == []
    assert status_of(sent, "bob@example.net") is SubscriberStatus.ACTIVE


def test_without_a_token_the_quoted_message_id_then_the_address_finds_the_subscriber(
    sent: Sent,
) -> None:
    _, bob_message_id = sent.copies["bob@example.net"]
    relay_rewrote_it = "bounces@relay.example.com"
    deliver(
        sent.maildir,
        dsn(
            relay_rewrote_it,
            "someone-else@example.org",
            "5.1.1",
            "550 5.1.1 No such user",
            original_message_id=bob_message_id,
        ),
        dsn(relay_rewrote_it, "CAT@Example.NET", "5.1.2", "550 5.1.2 Host unknown"),
        dsn(relay_rewrote_it, "nobody@example.org", "5.1.1", "550 5.1.1 User unknown"),
    )

    report = process(sent)

    assert status_of(sent, "bob@example.net") is SubscriberStatus.BOUNCED
    # With bounce_address set, a real bounce carries a token or the copy's Message-ID:
    # one naming only an address (anyone can write one) is recorded, not applied.
    assert status_of(sent, "cat@example.net") is SubscriberStatus.ACTIVE
    assert status_of(sent, "ann@example.net") is SubscriberStatus.ACTIVE
    assert (report.not_on_list, report.unverified) == (1, 1)
    with Store.open(sent.settings.database_url) as store:
        traced = {event.email: event.matched_by for event in store.returns.events()}
    assert traced == {
        "bob@example.net": "message-id",
        "cat@example.net": "address",
        "nobody@example.org": None,
    }

    # Without bounce_address the address is all a bounce can give: it is applied.
    deliver(sent.maildir, dsn(relay_rewrote_it, "cat@example.net", "5.1.1", "550 5.1.1 Gone"))
    process(sent, sent.settings.model_copy(update={"bounce_address": None}))
    assert status_of(sent, "cat@example.net") is SubscriberStatus.BOUNCED


def test_a_complaint_suppresses_and_an_auth_failure_report_does_not(sent: Sent) -> None:
    _, ann_id = sent.copies["ann@example.net"]
    _, bob_id = sent.copies["bob@example.net"]
    deliver(
        sent.maildir,
        arf("fbl@news.example.org", "ann@example.net", "abuse", message_id=ann_id),
        arf("fbl@news.example.org", "bob@example.net", "auth-failure", message_id=bob_id),
        # Quoting no copy of ours: anyone could have written it.
        arf("fbl@news.example.org", "cat@example.net", "abuse"),
    )

    report = process(sent)

    assert status_of(sent, "ann@example.net") is SubscriberStatus.COMPLAINED
    assert status_of(sent, "bob@example.net") is SubscriberStatus.ACTIVE
    assert status_of(sent, "cat@example.net") is SubscriberStatus.ACTIVE
    assert report.kinds == {"complaint": 2, "ignored": 1}
    assert report.unverified == 1


def test_an_unsubscribe_mail_unsubscribes_its_sender(sent: Sent) -> None:
    deliver(
        sent.maildir,
        b"From: Cat <Cat@example.net>\r\nTo: digest@news.example.org\r\n"
        b"Subject: unsubscribe\r\nMessage-ID: <u1@example.net>\r\n\r\n\r\n",
        b"From: Bob <bob@example.net>\r\nTo: digest@news.example.org\r\n"
        b"Subject: Re: The Digest\r\nMessage-ID: <u2@example.net>\r\n\r\nGreat issue today.\r\n",
    )

    report = process(sent)

    assert status_of(sent, "cat@example.net") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(sent, "bob@example.net") is SubscriberStatus.ACTIVE
    assert report.forms == {"unsubscribe": 1, "unrecognised": 1}


def test_an_out_of_office_reply_is_not_a_bounce(sent: Sent) -> None:
    deliver(
        sent.maildir,
        b"From: ann@example.net\r\nTo: digest@news.example.org\r\nAuto-Submitted: auto-replied\r\n"
        b"Subject: Out of office\r\n\r\nI am away until Monday; user unknown here is a joke.\r\n",
    )

    report = process(sent)

    assert report.forms == {"auto-reply": 1}
    assert status_of(sent, "ann@example.net") is SubscriberStatus.ACTIVE


def test_policy_refusals_and_delays_leave_the_address_active(sent: Sent) -> None:
    ann, _ = sent.copies["ann@example.net"]
    bob, _ = sent.copies["bob@example.net"]
    deliver(
        sent.maildir,
        dsn(ann, "ann@example.net", "5.7.1", "550 5.7.1 Message rejected as spam"),
        dsn(bob, "bob@example.net", "4.2.2", "452 4.2.2 Mailbox full", action="delayed"),
    )

    report = process(sent)

    assert report.kinds == {"refused": 1, "ignored": 1}  # a delay is recorded, not counted
    assert report.changes == []
    with Store.open(sent.settings.database_url) as store:
        [stats] = store.returns.stats()
    assert stats.sent == len(READERS)
    assert stats.by_reason[("refused", "5.7.1")] == 1
    assert stats.rate(BounceKind.HARD) == 0


def test_hostile_messages_are_counted_and_the_good_ones_still_count(sent: Sent) -> None:
    sender, _ = sent.copies["cat@example.net"]
    huge = b"From: x@example.org\r\nSubject: big\r\n\r\n" + b"A" * (11 * 1024 * 1024)
    nameless = dsn(sender, "not an address", "5.1.1", "550 5.1.1 User unknown")
    deliver(
        sent.maildir,
        huge,
        b"\x00\xff\xfe garbage that is no message at all \x80\x81",
        nameless,
        b"",
        dsn(sender, "cat@example.net", "5.1.1", "550 5.1.1 User unknown"),
    )

    report = process(sent)

    assert report.messages == 5
    assert report.forms["unreadable"] == 1
    assert status_of(sent, "cat@example.net") is SubscriberStatus.BOUNCED
    assert status_of(sent, "ann@example.net") is SubscriberStatus.ACTIVE
    # What is none of ours to read stays unread where it was; the rest is marked read.
    assert len(list((sent.maildir / "new").iterdir())) == report.forms["unrecognised"] == 2


@pytest.mark.timeout(20)
def test_hostile_text_is_read_in_linear_time_and_stored_harmless(sent: Sent) -> None:
    ann, _ = sent.copies["ann@example.net"]
    dashes = b"-" * 2_000_000
    long_word = b"from: " + b"a" * 1_000_000 + b"\r\n"
    deliver(
        sent.maildir,
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\n"
        + dashes
        + b"\r\n"
        + long_word,
        # Names a subscriber, but comes from no mail system and is no report: not a bounce.
        b"Subject: hello\r\n\r\nbob@example.net does not exist\r\n",
        # An address longer than any mail path names no one.
        dsn(ann, "x" * 400 + "@example.net", "5.1.1", "550 5.1.1 User unknown"),
        dsn(ann, "ann@example.net", "5.1.1", "550 5.1.1 \x1b]8;;https://x\x07gone\x1b[0m"),
    )

    report = process(sent)

    assert report.messages == 4
    assert status_of(sent, "bob@example.net") is SubscriberStatus.ACTIVE
    with Store.open(sent.settings.database_url) as store:
        events = store.returns.events()
    assert [(e.email, e.kind, e.reason) for e in events] == [
        # The terminal's control characters are gone from what is stored and shown.
        ("ann@example.net", BounceKind.HARD, "550 5.1.1 ]8;;https://xgone[0m"),
    ]


def test_an_mbox_is_read_once_and_its_messages_kept(sent: Sent, tmp_path: Path) -> None:
    sender, _ = sent.copies["bob@example.net"]
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    box.add(dsn(sender, "bob@example.net", "5.1.1", "550 5.1.1 User unknown"))
    box.close()

    def run() -> ProcessReport:
        with Store.open(sent.settings.database_url) as store, open_source(str(path)) as source:
            return process_mailbox(sent.settings, store, source)

    first, again = run(), run()

    assert (first.messages, again.messages) == (1, 0)
    assert status_of(sent, "bob@example.net") is SubscriberStatus.BOUNCED
    box = mailbox.mbox(path)
    try:
        [kept] = box.values()
    finally:
        box.close()
    assert "R" in kept.get_flags()


def test_soft_bounces_suppress_after_three_issues_in_a_row(sent: Sent) -> None:
    now = dt.datetime.now(dt.UTC)
    with Store.open(sent.settings.database_url) as store:
        subscriber = store.subscribers.find("ann@example.net")
        assert subscriber is not None
        issues = soft_history(store, days=5, now=now)
        rule = SoftRule(limit=3, days=30)

        def soft(issue: int, digest: str) -> list[str]:
            changes = store.returns.record(
                digest=digest,
                message_id=None,
                form="dsn",
                source="test",
                problem=None,
                events=[
                    TracedEvent(
                        kind=BounceKind.SOFT,
                        email_key="ann@example.net",
                        status="4.2.2",
                        reason="mailbox full",
                        issue_id=issues[issue],
                        subscriber_id=subscriber.id,
                        matched_by="token",
                    )
                ],
                now=now,
                soft=rule,
            )
            assert changes is not None
            return [change.after.value for change in changes]

        # Issues 0 and 1 bounce, 2 arrived (no report so far), 3 and 4 bounce: no run of 3.
        assert soft(0, "a") == []
        assert soft(1, "b") == []
        assert soft(3, "c") == []
        assert soft(4, "d") == []
        # Issue 2's report comes late: 0 to 4 all bounced, five in a row.
        assert soft(2, "e") == ["bounced"]


def test_soft_bounces_traced_by_address_alone_make_no_run(sent: Sent) -> None:
    now = dt.datetime.now(dt.UTC)
    with Store.open(sent.settings.database_url) as store:
        subscriber = store.subscribers.find("bob@example.net")
        assert subscriber is not None
        issues = soft_history(store, days=3, now=now)
        for index, issue in enumerate(issues):
            changes = store.returns.record(
                digest=f"address-{index}",
                message_id=None,
                form="dsn",
                source="test",
                problem=None,
                events=[
                    TracedEvent(
                        kind=BounceKind.SOFT,
                        email_key="bob@example.net",
                        status="4.2.2",
                        reason="mailbox full",
                        issue_id=issue,
                        subscriber_id=subscriber.id,
                        matched_by="address",  # which copy bounced, nobody can say
                    )
                ],
                now=now,
                soft=SoftRule(limit=3, days=30),
            )
            assert changes == []
    assert status_of(sent, "bob@example.net") is SubscriberStatus.ACTIVE


def soft_history(store: Store, *, days: int, now: dt.datetime) -> list[int]:
    """Issues of ``days`` past days, each really sent to everyone; their ids, oldest first."""
    article = pipeline.load_seeds(load_settings()).articles[0]
    ids = []
    for back in range(days, 0, -1):
        day = dt.date.today() - dt.timedelta(days=back)
        store.issues.save(Issue(date=day, articles=(article,)), created_at=now)
        issue_id = store.issues.id_of(day)
        assert issue_id is not None
        Ledger(store, issue_id).enqueue(now=now)
        with store.writing() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.issue_id == issue_id)
                .values(status="sent", sent_at=now - dt.timedelta(days=back), sent_via="smtp")
            )
        ids.append(issue_id)
    return ids


# The suppression list.


def test_a_suppressed_address_is_never_reactivated_but_by_force(sent: Sent, project: Path) -> None:
    sender, _ = sent.copies["ann@example.net"]
    deliver(sent.maildir, dsn(sender, "ann@example.net", "5.1.1", "550 5.1.1 User unknown"))
    process(sent)
    env = {"DIGEST_DATABASE_URL": sent.settings.database_url}
    (project / "list.csv").write_text("email,name\nann@example.net,Ann\ndan@example.net,\n")

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args), prog_name="digest", env=env)
        return result.exit_code, result.output

    code, added = run("subscribers", "add", "ANN@example.net")
    assert code == 0
    today = dt.date.today().isoformat()
    assert added == (
        f"ann@example.net is suppressed (bounced {today}: hard: 5.1.1 550 5.1.1 User unknown); "
        "left as it is. Only `digest subscribers resubscribe ann@example.net --force` sends to "
        "it again.\n"
    )
    code, imported = run("subscribers", "import", "list.csv")
    assert code == 0
    assert "list.csv:2: ann@example.net is suppressed (bounced" in imported
    assert "1 subscriber added, 1 already on the list (1 of them suppressed)" in imported
    code, refused = run("subscribers", "resubscribe", "ann@example.net")
    assert code == 1
    assert "add --force if you are sure" in refused
    assert status_of(sent, "ann@example.net") is SubscriberStatus.BOUNCED
    code, left = run("subscribers", "unsubscribe", "ann@example.net")
    assert left == "ann@example.net is bounced; left as it is.\n"
    assert run("subscribers", "remove", "ann@example.net")[0] == 0
    code, back = run("subscribers", "add", "ann@example.net")
    assert "is suppressed (bounced" in back
    assert "added back, still suppressed" in back
    assert status_of(sent, "ann@example.net") is SubscriberStatus.BOUNCED
    code, forced = run("subscribers", "resubscribe", "ann@example.net", "--force")
    assert code == 0, forced
    assert status_of(sent, "ann@example.net") is SubscriberStatus.ACTIVE


def test_bounces_commands_report_what_was_read(sent: Sent) -> None:
    sender, _ = sent.copies["bob@example.net"]
    deliver(sent.maildir, dsn(sender, "bob@example.net", "5.1.1", "550 5.1.1 User unknown"))
    env = {"DIGEST_DATABASE_URL": sent.settings.database_url, "DIGEST_SECRET_KEY": KEY}
    env |= {"DIGEST_BOUNCE_ADDRESS": BOUNCES, "DIGEST_BOUNCES__SOURCE": str(sent.maildir)}
    runner = CliRunner()

    processed = runner.invoke(cli, ["bounces", "process"], env=env)
    listed = runner.invoke(cli, ["bounces", "list", "--json"], env=env)
    stats = runner.invoke(cli, ["bounces", "stats", "--json"], env=env)

    assert processed.exit_code == 0, processed.output
    assert processed.output.splitlines() == [
        f"{sent.maildir}: 1 message read",
        "  1 dsn",
        "  events: 1 hard",
        "  bob@example.net: active -> bounced (hard: 5.1.1 550 5.1.1 User unknown)",
    ]
    [event] = json.loads(listed.output)
    assert (event["email"], event["kind"], event["traced_by"]) == (
        "bob@example.net",
        "hard",
        "token",
    )
    [issue] = json.loads(stats.output)
    assert (issue["sent"], issue["kinds"], issue["hard_bounce_rate"]) == (3, {"hard": 1}, 1 / 3)


def test_the_bounces_commands_say_what_is_wrong_and_show_what_was_read(
    sent: Sent, project: Path
) -> None:
    sender, _ = sent.copies["cat@example.net"]
    deliver(
        sent.maildir,
        dsn(sender, "cat@example.net", "5.1.1", "550 5.1.1 User unknown"),
        dsn(sender, "cat@example.net", "5.7.1", "550 5.7.1 Blocked by policy"),
    )
    env = {"DIGEST_DATABASE_URL": sent.settings.database_url, "DIGEST_SECRET_KEY": KEY}
    runner = CliRunner()

    no_source = runner.invoke(cli, ["bounces", "process"], env=env)
    imap = runner.invoke(
        cli, ["bounces", "process", "imaps://bounces@mail.example.org/INBOX"], env=env
    )
    not_a_maildir = runner.invoke(cli, ["bounces", "process", str(project)], env=env)
    processed = runner.invoke(cli, ["bounces", "process", str(sent.maildir)], env=env)
    listed = runner.invoke(cli, ["bounces", "list", "--kind", "hard"], env=env)
    stats = runner.invoke(cli, ["bounces", "stats"], env=env)
    none_then = runner.invoke(cli, ["bounces", "stats", "--date", "2001-01-01"], env=env)

    assert (no_source.exit_code, no_source.output) == (
        1,
        "Error: give a SOURCE, or set bounces.source (DIGEST_BOUNCES__SOURCE)\n",
    )
    assert (imap.exit_code, imap.output) == (
        1,
        "Error: imaps://bounces@mail.example.org/INBOX: the IMAP password is not set "
        "(bounces.password, DIGEST_BOUNCES__PASSWORD)\n",
    )
    assert (
        not_a_maildir.output == f"Error: {project}: not a Maildir (it needs new/, cur/ and tmp/)\n"
    )
    assert processed.exit_code == 0, processed.output
    assert "events: 1 hard, 1 refused" in processed.output
    [line] = listed.output.splitlines()
    assert line.split("\t")[1:] == [
        "cat@example.net",
        dt.date.today().isoformat(),
        "hard",
        "5.1.1",
        "550 5.1.1 User unknown",
    ]
    assert stats.output.splitlines() == [
        f"{dt.date.today().isoformat()}: 3 sent; 1 hard, 1 refused; hard bounces 33.33%, "
        "complaints 0.00%",
        "  1 hard: 5.1.1",
        "  1 refused: 5.7.1",
    ]
    assert none_then.output == "That issue was not sent.\n"


@pytest.mark.timeout(60)
def test_digest_schedule_reads_the_bounce_mailbox_as_it_runs(sent: Sent) -> None:
    sender, _ = sent.copies["bob@example.net"]
    deliver(sent.maildir, dsn(sender, "bob@example.net", "5.1.1", "550 5.1.1 User unknown"))

    async def run_until_read() -> bool:
        with Store.open(sent.settings.database_url) as store:
            stop = asyncio.Event()
            running = asyncio.ensure_future(Scheduler(sent.settings, store).run(stop))
            deadline = time.monotonic() + 30
            try:
                while time.monotonic() < deadline:
                    found = await asyncio.to_thread(store.subscribers.find, "bob@example.net")
                    if found is not None and found.status is SubscriberStatus.BOUNCED:
                        return True
                    await asyncio.sleep(0.1)
                return False
            finally:
                stop.set()
                await running

    assert asyncio.run(run_until_read())
    assert not list((sent.maildir / "new").iterdir())


def test_the_check_warns_of_the_last_issues_bounce_and_complaint_rates(sent: Sent) -> None:
    with Store.open(sent.settings.database_url) as store:
        [calm] = check_reputation(store)
    ann, _ = sent.copies["ann@example.net"]
    deliver(
        sent.maildir,
        dsn(ann, "ann@example.net", "5.1.1", "550 5.1.1 User unknown"),
        arf("fbl@news.example.org", "bob@example.net", "abuse"),
    )
    process(sent)
    with Store.open(sent.settings.database_url) as store:
        [worried] = check_reputation(store)

    today = dt.date.today().isoformat()
    assert calm.line() == (
        f"ok    list.reputation: the issue of {today}, 3 sent: hard bounces 0.00%, complaints 0.00%"
    )
    assert worried.status == "warn"
    assert "complaints 33.33% (over 0.1%" in worried.detail
    assert "hard bounces 33.33% (over 2%" in worried.detail


class RefusesSome(Recorder):
    """Says every address with "gone" in it does not exist."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if "gone" in address:
            return "550 5.1.1 User unknown"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("smtp_server", [RefusesSome], indirect=True)
@pytest.mark.parametrize(("gone_every", "halts"), [(5, True), (50, False)])
def test_a_send_stops_when_too_many_copies_are_refused_for_good(
    project: Path,
    database_url: str,
    smtp_server: tuple[Recorder, int],
    gone_every: int,
    halts: bool,
) -> None:
    _, port = smtp_server
    settings = settings_for(project, database_url, port)
    readers = [
        f"{'gone' if number % gone_every == 0 else 'reader'}{number}@example.net"
        for number in range(300)
    ]
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [(address, None) for address in readers], now=dt.datetime.now(dt.UTC)
        )
        try:
            report = asyncio.run(sending.send_day(settings, store, dt.date.today()))
        except sending.SendHalted as exc:
            assert halts, str(exc)
            assert not exc.retry
            assert "copies were refused for good" in str(exc)
            assert "over bounces.max_rate (5%)" in str(exc)
            decided = exc.report.sent + exc.report.failed
            assert REFUSAL_RATE_MIN_COPIES <= decided < len(readers)
            assert exc.report.still_pending > 0
            # Held: no catch-up of digest schedule resumes it; a person's digest send does.
            today = dt.date.today()
            assert store.deliveries.unfinished_issues(first=today, last=today) == []
            assert "copies were refused for good" in (store.issues.release(today) or "")
            assert store.deliveries.unfinished_issues(first=today, last=today) != []
        else:
            assert not halts
            assert report.failed == len(readers) // gone_every


def test_status_shows_what_came_back_for_the_issue(sent: Sent) -> None:
    ann, _ = sent.copies["ann@example.net"]
    deliver(sent.maildir, dsn(ann, "ann@example.net", "5.1.1", "550 5.1.1 User unknown"))
    process(sent)
    env = {"DIGEST_DATABASE_URL": sent.settings.database_url}

    shown = CliRunner().invoke(cli, ["status"], env=env)
    document = CliRunner().invoke(cli, ["status", "--json"], env=env)

    today = dt.date.today().isoformat()
    assert f"came back: 1 hard (digest bounces stats --date {today})" in shown.output
    assert json.loads(document.output)["returned"] == {"hard": 1}


# An IMAP folder, on a real Dovecot.

DOVECOT_MISSING = dovecot_missing()
needs_dovecot = pytest.mark.skipif(
    DOVECOT_MISSING is not None and not os.environ.get("CI"),
    reason=DOVECOT_MISSING or "",
)


@pytest.fixture
def dovecot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    assert DOVECOT_MISSING is None, f"{DOVECOT_MISSING}: the IMAP tests must run under CI"
    with Dovecot() as server:
        # The server's certificate is from the tests' own CA: trusted as a real one would be.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        yield server


def imap_client(server: Dovecot) -> IMAPClient:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    client = IMAPClient("127.0.0.1", port=server.imaps_port, ssl_context=context, timeout=10)
    client.login("bounces", server.password)
    return client


@needs_dovecot
@pytest.mark.timeout(60)
@pytest.mark.parametrize("tls", [True, False], ids=["imaps", "imap-starttls"])
def test_an_imap_folder_is_read_once_and_its_messages_kept_aside(
    sent: Sent, dovecot: Dovecot, tls: bool
) -> None:
    ann, _ = sent.copies["ann@example.net"]
    client = imap_client(dovecot)
    client.append("INBOX", dsn(ann, "ann@example.net", "5.1.1", "550 5.1.1 User unknown"))
    client.append("INBOX", b"From: x@example.org\r\nSubject: hello\r\n\r\nNot a bounce.\r\n")
    settings = sent.settings.model_copy(
        update={"bounces": BounceSettings(source=dovecot.url(tls=tls), password=dovecot.password)}
    )

    def run() -> ProcessReport:
        with (
            Store.open(settings.database_url) as store,
            configured_source(settings, dovecot.url(tls=tls)) as source,
        ):
            return process_mailbox(settings, store, source)

    first, again = run(), run()

    assert (first.messages, first.forms) == (2, {"dsn": 1, "unrecognised": 1})
    # The message that is none of ours stays, unread; nothing is recorded twice.
    assert (again.messages, again.already_read, again.kinds) == (1, 1, {})
    assert status_of(sent, "ann@example.net") is SubscriberStatus.BOUNCED
    client.select_folder("INBOX")
    [left] = client.search("ALL")
    assert SEEN not in client.fetch([left], ["FLAGS"])[left][b"FLAGS"]
    client.select_folder(PROCESSED_FOLDER)
    kept = client.fetch(client.search("ALL"), ["FLAGS"])
    assert len(kept) == 1
    assert all(SEEN in item[b"FLAGS"] for item in kept.values())
    client.logout()


@needs_dovecot
@pytest.mark.timeout(60)
def test_an_imap_folder_that_cannot_be_read_says_why_in_one_line(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failure(url: str, password: str | None) -> str:
        with pytest.raises(DigestError) as caught, open_source(url, password=password, timeout=10):
            pass
        return str(caught.value)

    url = dovecot.url()
    assert failure(url, "wrong") == (
        f"{url}: login refused: [AUTHENTICATIONFAILED] Authentication failed."
    )
    assert "no password in the URL" in failure(url.replace("bounces@", "bounces:pw@"), "x")
    mistyped = failure(url.replace("imaps", "imapss").replace("bounces@", "bounces:hunter2@"), "x")
    assert "hunter2" not in mistyped
    assert "the IMAP password is not set (bounces.password" in failure(url, None)
    with closed_port() as port:
        closed = url.replace(str(dovecot.imaps_port), str(port))
        assert failure(closed, "x").endswith(": cannot connect: connection refused")
    monkeypatch.delenv("SSL_CERT_FILE")
    assert "certificate verify failed" in failure(url, dovecot.password)


# A relay's webhook: Mailgun's signed events.

SIGNING_KEY = "mailgun-signing-key-for-tests"


def mailgun_event(
    event: dict[str, Any], *, key: str = SIGNING_KEY, token: str = ""
) -> dict[str, Any]:
    """A webhook body as Mailgun signs it (HMAC-SHA256 of timestamp and token)."""
    timestamp = str(int(time.time()))
    token = token or uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def test_mailguns_signed_events_reach_the_list_and_unsigned_ones_change_nothing(
    sent: Sent,
) -> None:
    _, ann_message_id = sent.copies["ann@example.net"]
    settings = sent.settings.model_copy(
        update={"webhooks": WebhookSettings(mailgun_signing_key=SIGNING_KEY)}
    )
    failed = {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": "ann@example.net",
        "id": "event-1",
        "message": {"headers": {"message-id": ann_message_id.strip("<>")}},
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
    }
    complaint = {"event": "complained", "recipient": "bob@example.net", "id": "event-2"}
    forged_complaint = {"event": "complained", "recipient": "cat@example.net", "id": "event-3"}
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store)) as client,
    ):
        signed = mailgun_event(failed, token="replayed-token")
        first = client.post("/webhooks/mailgun", json=signed)
        replayed = client.post("/webhooks/mailgun", json=signed)
        complained = client.post("/webhooks/mailgun", json=mailgun_event(complaint))
        forged = client.post(
            "/webhooks/mailgun", json=mailgun_event(forged_complaint, key="not the key")
        )
        unsigned = client.post("/webhooks/mailgun", json={"event-data": forged_complaint})
        opened = client.post("/webhooks/mailgun", json=mailgun_event({"event": "opened"}))
        garbage = client.post("/webhooks/mailgun", content=b"not json")
        events = store.returns.events()

    assert (first.status_code, first.json()) == (200, {"recorded": True})
    assert (replayed.status_code, replayed.json()) == (200, {"recorded": False})
    assert complained.json() == {"recorded": True}
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    assert (opened.status_code, opened.json()) == (200, {"recorded": False})
    assert garbage.status_code == 400
    assert status_of(sent, "ann@example.net") is SubscriberStatus.BOUNCED
    assert status_of(sent, "bob@example.net") is SubscriberStatus.COMPLAINED
    assert status_of(sent, "cat@example.net") is SubscriberStatus.ACTIVE
    assert [(e.email, e.kind, e.matched_by) for e in events] == [
        ("ann@example.net", BounceKind.HARD, "message-id"),
        ("bob@example.net", BounceKind.COMPLAINT, "address"),
    ]


def test_without_a_signing_key_the_webhook_is_not_there(sent: Sent) -> None:
    with (
        Store.open(sent.settings.database_url) as store,
        TestClient(create_app(sent.settings, store)) as client,
    ):
        answer = client.post("/webhooks/mailgun", json=mailgun_event({"event": "complained"}))

    assert answer.status_code == 404


@pytest.mark.parametrize("smtp_server", [RefusesSome], indirect=True)
def test_a_refusal_during_the_send_is_kept_as_evidence_like_a_bounce(
    project: Path, database_url: str, smtp_server: tuple[Recorder, int]
) -> None:
    _, port = smtp_server
    settings = settings_for(project, database_url, port)
    with Store.open(database_url) as store:
        store.subscribers.import_rows(
            [("ann@example.net", None), ("gone@example.net", None)], now=dt.datetime.now(dt.UTC)
        )
        report = asyncio.run(sending.send_day(settings, store, dt.date.today()))
        [event] = store.returns.events()
        [stats] = store.returns.stats()
        assert store.subscribers.remove("gone@example.net")
        back, added = store.subscribers.add("gone@example.net", None, now=dt.datetime.now(dt.UTC))

    assert (report.sent, report.failed) == (1, 1)
    assert (event.email, event.kind, event.status, event.matched_by) == (
        "gone@example.net",
        BounceKind.HARD,
        "5.1.1",
        "send",
    )
    assert stats.by_kind == {"hard": 1}
    # Removed and added again, it comes back suppressed, as after a bounce read later.
    assert added
    assert back.status is SubscriberStatus.BOUNCED


def test_a_bounce_that_suppresses_is_in_the_subscribers_history_and_export(sent: Sent) -> None:
    sender, _ = sent.copies["ann@example.net"]
    deliver(sent.maildir, dsn(sender, "ann@example.net", "5.1.1", "550 5.1.1 User unknown"))
    process(sent)
    with Store.open(sent.settings.database_url) as store:
        data = held_about(store, "ann@example.net", now=dt.datetime.now(dt.UTC))
    assert data["history"][-1]["status"] == "bounced"
    assert "5.1.1" in data["history"][-1]["cause"]
    assert [(e["kind"], e["changed_status"]) for e in data["came_back"]] == [("hard", True)]
