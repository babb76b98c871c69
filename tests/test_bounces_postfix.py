"""The whole round trip through a real Postfix: digest sends through it with a VERP return
path, the far side refuses some readers, Postfix writes its own bounces back to each
copy's return path, and ``digest bounces process`` on that Maildir suppresses exactly the
readers whose mailbox does not exist."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest

from digest import sending
from digest.bounces.mailbox import open_source
from digest.bounces.process import process_mailbox
from digest.models import BounceKind, SubscriberStatus
from digest.settings import SmtpSettings, load_settings
from digest.store import Store
from tests.postfix import Postfix, postfix_missing
from tests.smtp_sink import Recorder, SmtpServer

MISSING = postfix_missing()
if MISSING is not None:
    if os.environ.get("CI"):
        pytest.fail(f"{MISSING}: the Postfix round trip must run under CI", pytrace=False)
    pytestmark = pytest.mark.skip(reason=MISSING)

READERS = {
    "ann@example.net": SubscriberStatus.ACTIVE,  # delivered
    "gone.one@example.net": SubscriberStatus.BOUNCED,  # 550 5.1.1
    "gone.two@example.net": SubscriberStatus.BOUNCED,  # 550 5.1.1
    "full@example.net": SubscriberStatus.ACTIVE,  # 552 5.2.2: soft, one issue so far
}


class FarSide(Recorder):
    """The readers' mail server: some mailboxes do not exist, one is full."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("gone."):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.startswith("full@"):
            return f"552 5.2.2 <{address}>: Mailbox full"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.mark.timeout(180)
def test_postfixs_bounces_reach_the_list_through_the_return_path(
    project: Path, database_url: str
) -> None:
    with (
        SmtpServer(FarSide()) as far_side,
        Postfix(relay_port=far_side.port, local_domain="news.example.org") as postfix,
    ):
        settings = load_settings(
            database_url=database_url,
            secret_key="postfix-test-key-of-at-least-32-characters",
            public_url="https://news.example.org",
            from_address="digest@news.example.org",
            bounce_address="bounces@news.example.org",
            smtp=SmtpSettings(host="127.0.0.1", port=postfix.port, security="none", timeout=10),
        )
        with Store.open(database_url) as store:
            store.subscribers.import_rows(
                [(address, None) for address in READERS], now=dt.datetime.now(dt.UTC)
            )
            report = asyncio.run(sending.send_day(settings, store, dt.date.today()))
            # Postfix takes every copy; the refusals come later, as its own bounces.
            assert report.sent == len(READERS)
            deadline = time.monotonic() + 60
            while len(postfix.bounces()) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(postfix.bounces()) == 3, postfix.tail()
            with open_source(str(postfix.maildir)) as mailbox:
                processed = process_mailbox(settings, store, mailbox)
            statuses = {
                address: found.status
                for address in READERS
                if (found := store.subscribers.find(address)) is not None
            }
            events = store.returns.events()

    assert statuses == READERS
    assert processed.forms == {"dsn": 3}
    assert sorted(
        (event.email, event.kind, event.status, event.matched_by) for event in events
    ) == [
        ("full@example.net", BounceKind.SOFT, "5.2.2", "token"),
        ("gone.one@example.net", BounceKind.HARD, "5.1.1", "token"),
        ("gone.two@example.net", BounceKind.HARD, "5.1.1", "token"),
    ]
    assert [rcpt for _, rcpts, _ in far_side.handler.messages for rcpt in rcpts] == [
        "ann@example.net"
    ]
