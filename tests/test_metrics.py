"""``GET /metrics``: Prometheus's text format, parsed with prometheus-client's own parser;
counters that move with a send and with what comes back; who may read it."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from digest import sending
from digest.delivery.mailer import OutboxTransport
from digest.models import SubscriberStatus
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.web.app import create_app

KEY = "metrics-test-key-of-at-least-32-characters"
DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
LOCAL = ("127.0.0.1", 40000)


def site(project: Path, database_url: str, **values: Any) -> Settings:
    return load_settings(
        database_url=database_url,
        public_url="https://news.example.org",
        secret_key=KEY,
        outbox_dir=project / "var" / "outbox",
        **values,
    )


def scrape(settings: Settings, store: Store, **client: object) -> dict[tuple[str, str], float]:
    """Every sample of /metrics, by (name, its labels as "k=v,..."), as a scraper reads it."""
    with TestClient(create_app(settings, store, clock=lambda: NOW), **client) as test:  # type: ignore[arg-type]
        answer = test.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert answer.headers["cache-control"] == "no-store"
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[(sample.name, labels)] = sample.value
    return samples


def test_the_figures_move_with_a_send(project: Path, database_url: str) -> None:
    settings = site(project, database_url)
    with Store.open(database_url) as store:
        store.subscribers.import_rows([(f"reader{n}@example.org", None) for n in range(3)], now=NOW)
        store.subscribers.set_status("reader2@example.org", SubscriberStatus.UNSUBSCRIBED, now=NOW)
        before = scrape(settings, store, client=LOCAL)
        asyncio.run(
            sending.send_issue(
                settings, store, DAY, OutboxTransport(settings.outbox_dir), secret_key=KEY, now=NOW
            )
        )
        after = scrape(settings, store, client=LOCAL)

    assert before[("digest_deliveries_total", "status=sent")] == 0
    assert after[("digest_deliveries_total", "status=sent")] == 2
    assert after[("digest_deliveries_total", "status=failed")] == 0
    assert after[("digest_deliveries_pending", "")] == 0
    assert after[("digest_subscribers", "status=active")] == 2
    assert after[("digest_subscribers", "status=unsubscribed")] == 1
    assert after[("digest_returns_total", "kind=complaint")] == 0
    assert ("digest_last_send_timestamp_seconds", "") not in before
    assert after[("digest_last_send_timestamp_seconds", "")] > 0
    assert after[("digest_scheduler_up", "")] == 0
    assert ("digest_delivery_retries_total", "") in after
    assert ("digest_send_rate_per_second", "") in after


def test_the_scheduler_shows_as_up_while_one_runs(project: Path) -> None:
    database = project / "var" / "digest.db"
    settings = site(project, f"sqlite:///{database}")
    with Store.open(settings.database_url) as store:
        with store.scheduler_presence() as others:
            assert not others
            assert scrape(settings, store, client=LOCAL)[("digest_scheduler_up", "")] == 1
        assert scrape(settings, store, client=LOCAL)[("digest_scheduler_up", "")] == 0
        # A lock file left behind by a scheduler that ended holds nothing.
        with Path(f"{database}.scheduler.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_UN)
        assert scrape(settings, store, client=LOCAL)[("digest_scheduler_up", "")] == 0


@pytest.mark.parametrize(
    ("client", "headers", "status"),
    [
        (("127.0.0.1", 1), {}, 200),
        (("::1", 1), {}, 200),
        (("203.0.113.7", 1), {}, 403),
        # A proxy on this machine makes every visitor look local: not answered.
        (("127.0.0.1", 1), {"X-Forwarded-For": "203.0.113.7"}, 403),
        (("127.0.0.1", 1), {"Forwarded": "for=203.0.113.7"}, 403),
    ],
)
def test_without_a_token_only_this_machine_is_answered(
    project: Path, database_url: str, client: tuple[str, int], headers: dict[str, str], status: int
) -> None:
    settings = site(project, database_url)
    with (
        Store.open(database_url) as store,
        TestClient(create_app(settings, store), client=client) as test,
    ):
        answer = test.get("/metrics", headers=headers)
    assert answer.status_code == status
    if status == 403:
        assert "metrics.token" in answer.text
        assert "digest_" not in answer.text


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer scrape-token-for-the-tests", 200),
        (None, 401),
        ("Bearer wrong", 401),
        ("scrape-token-for-the-tests", 401),
    ],
)
def test_with_a_token_only_a_scrape_bearing_it_is_answered(
    project: Path, database_url: str, authorization: str | None, status: int
) -> None:
    settings = site(project, database_url, metrics={"token": "scrape-token-for-the-tests"})
    headers = {"Authorization": authorization} if authorization else {}
    # From anywhere, with the token; not even from this machine without it.
    with (
        Store.open(database_url) as store,
        TestClient(create_app(settings, store), client=("203.0.113.7", 1)) as test,
    ):
        answer = test.get("/metrics", headers=headers)
    assert answer.status_code == status
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "scrape-token-for-the-tests" not in answer.text
    with (
        Store.open(database_url) as store,
        TestClient(create_app(settings, store), client=LOCAL) as test,
    ):
        assert test.get("/metrics").status_code == 401
