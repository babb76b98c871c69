"""``/admin`` in real Chromium against ``digest serve``: log in, the overview and its
charts at 1280 and 375 px in light and dark, an issue's progress moving by itself while a
send runs against a slow aiosmtpd, an address's copy found from the issue page, and a
test copy sent from the overview arriving at the relay.

Screenshots are kept in var/screenshots/admin-*.png for a person to look at.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from digest import pipeline, sending
from digest.settings import Settings, load_settings
from digest.store import Store

from .admin_client import HASH, KEY, PASSWORD
from .conftest import REPO, digest_serving, needs_webdriver
from .smtp_sink import Slow, SmtpServer

SCREENSHOTS = REPO / "var" / "screenshots"
READERS = 40

pytestmark = needs_webdriver()


class Slower(Slow):
    """Long enough over each copy for a send of 40 to take several seconds."""

    delay = 0.2


@pytest.fixture
def relay() -> Iterator[tuple[SmtpServer, Slower]]:
    handler = Slower()
    with SmtpServer(handler) as server:
        yield server, handler


@pytest.fixture
def environment(relay: tuple[SmtpServer, Slower]) -> dict[str, str]:
    server, _ = relay
    return {
        "DIGEST_SECRET_KEY": KEY,
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        "DIGEST_POSTAL_ADDRESS": "1 High Street, Exampleton",
        "DIGEST_ADMIN__PASSWORD_HASH": HASH,
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(server.port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__CONCURRENCY": "1",
    }


@pytest.fixture
def settings(
    project: Path, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows(
            [(f"reader{n}@example.org", None) for n in range(READERS)], now=start
        )
    return settings


@pytest.fixture
def server(settings: Settings, project: Path, environment: dict[str, str]) -> Iterator[str]:
    with digest_serving(project, environment) as url:
        yield url


def log_in(browser: Any, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/admin")
    assert browser.current_url == f"{server}/admin/login"
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    # The click returns before the POST and its redirect are through.
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{server}/admin"))


def shoot(browser: Any, name: str, width: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(width, 900)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(width, min(int(height) + 100, 8000))
    browser.save_screenshot(str(SCREENSHOTS / f"admin-{name}.png"))


def dark(browser: Any, on: bool) -> None:
    features = [{"name": "prefers-color-scheme", "value": "dark"}] if on else []
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


@pytest.mark.timeout(180)
def test_log_in_and_see_the_overview_at_a_desk_and_on_a_phone(
    server: str, browser: Any, settings: Settings
) -> None:
    from selenium.webdriver.common.by import By

    with Store.open(settings.database_url) as store:
        asyncio.run(sending.send_day(settings, store, pipeline.today(settings)))
    log_in(browser, server)
    for scheme in ("light", "dark"):
        dark(browser, scheme == "dark")
        for width in (1280, 375):
            browser.set_window_size(width, 900)
            browser.get(f"{server}/admin")
            assert "Next scheduled send" in browser.find_element(By.TAG_NAME, "main").text
            charts = browser.find_elements(By.CSS_SELECTOR, "svg[role=img]")
            assert len(charts) == 3
            for chart in charts:
                assert chart.size["width"] > 200
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"
            ), f"the overview scrolls sideways at {width} px ({scheme})"
            background = browser.execute_script(
                "return getComputedStyle(document.querySelector('main')).backgroundColor"
            )
            assert background == ("rgb(30, 30, 30)" if scheme == "dark" else "rgb(255, 255, 255)")
            shoot(browser, f"overview-{width}-{scheme}", width)
    dark(browser, False)


def watch_progress(browser: Any, page: str) -> list[int]:
    """The progress bar's values on ``page`` from the send's start to its end, seen
    without loading the page again once it says the send runs: it refreshes itself."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def value() -> int:
        return int(browser.find_element(By.TAG_NAME, "progress").get_attribute("value"))

    # The page exists once the send has frozen the issue and queued its copies, and says
    # the send runs once a sender has claimed some.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        browser.get(page)
        if "A send is under way" in browser.find_element(By.TAG_NAME, "main").text:
            break
        time.sleep(0.1)
    seen = [value()]
    assert seen[0] < READERS

    def moved(driver: Any) -> bool:
        try:
            now = value()
        except Exception:  # the page is being loaded again
            return False
        if now != seen[-1]:
            seen.append(now)
        return now == READERS

    WebDriverWait(browser, 60, poll_frequency=0.3).until(moved)
    return seen


@pytest.mark.timeout(180)
def test_an_issue_page_follows_a_send_as_it_runs(
    server: str, browser: Any, settings: Settings, relay: tuple[SmtpServer, Slower]
) -> None:
    from selenium.webdriver.common.by import By

    _, handler = relay
    # The day the server takes for today: the schedule's zone's.
    day = pipeline.today(settings)
    log_in(browser, server)
    outcome: list[object] = []

    def send() -> None:
        with Store.open(settings.database_url) as store:
            outcome.append(asyncio.run(sending.send_day(settings, store, day)))

    page = f"{server}/admin/issues/{day.isoformat()}"
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        seen = watch_progress(browser, page)
    finally:
        # Whatever happened here, the send ends before the relay does.
        sender.join(timeout=60)
    assert len(seen) >= 3, seen
    assert seen == sorted(seen)
    report = outcome[0]
    assert isinstance(report, sending.SendReport)
    assert report.sent == READERS
    assert len(handler.messages) == READERS
    shoot(browser, "issue-1280-light", 1280)

    # One address's copy, from the page's own form.
    browser.get(f"{page}?live=0")
    field = browser.find_element(By.ID, "email")
    field.send_keys("reader7@example.org")
    field.submit()
    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    [copy] = [row for row in rows if row and row[0] == "reader7@example.org"]
    assert copy[1] == "sent"


@pytest.mark.timeout(120)
def test_a_test_copy_sent_from_the_overview_arrives(
    server: str, browser: Any, relay: tuple[SmtpServer, Slower]
) -> None:
    from selenium.webdriver.common.by import By

    _, handler = relay
    log_in(browser, server)
    field = browser.find_element(By.ID, "test-address")
    field.send_keys("editor@example.org")
    field.submit()
    assert "Test copy sent" in browser.find_element(By.TAG_NAME, "h1").text
    [(sender, recipients, data)] = handler.messages
    assert recipients == ["editor@example.org"]
    assert sender.startswith("digest")
    copy = message_from_bytes(data, policy=policy.default)
    assert str(copy["Subject"]).startswith("[TEST]")
    browser.get(f"{server}/admin")
    assert "editor@example.org" in browser.find_element(By.TAG_NAME, "main").text
