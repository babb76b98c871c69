"""``digest serve`` in real Chromium: unsubscribe from a delivered message's link, read the archive.

The server runs as ``digest serve`` would behind a proxy: the https link in the message
is opened at the same path on the local server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from digest import sending
from digest.models import SubscriberStatus
from digest.settings import Settings, load_settings
from digest.store import Store

from .conftest import digest_serving, needs_webdriver

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "browser-test-key-of-at-least-32-characters"

pytestmark = needs_webdriver()


@pytest.fixture
def settings(project: Path) -> Settings:
    settings = load_settings(
        public_url="https://news.example.org",
        secret_key=KEY,
        from_address="digest@news.example.org",
    )
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows(
            [("ann@example.org", "Ann"), ("bo@example.org", None)], now=NOW
        )
        asyncio.run(sending.send_day(settings, store, DAY))
    return settings


@pytest.fixture
def server(settings: Settings, project: Path) -> Iterator[str]:
    env = {
        "DIGEST_SECRET_KEY": KEY,
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
    }
    with digest_serving(project, env) as url:
        yield url


def link_path(settings: Settings, address: str) -> str:
    """The path of the https unsubscribe link in the copy ``address`` was sent."""
    for path in (Path(settings.outbox_dir) / "new").iterdir():
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if message["To"].addresses[0].addr_spec == address:
            url = str(message["List-Unsubscribe"]).split(">")[0].lstrip("<")
            return url.removeprefix("https://news.example.org")
    raise AssertionError(f"no copy for {address}")


def status_of(settings: Settings, address: str) -> SubscriberStatus:
    with Store.open(settings.database_url) as store:
        subscriber = store.subscribers.find(address)
    assert subscriber is not None
    return subscriber.status


def test_unsubscribe_from_the_link_in_a_delivered_message(
    settings: Settings, server: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    browser.get(server + link_path(settings, "ann@example.org"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Unsubscribe from The Digest?"
    assert "ann@example.org" not in browser.page_source
    assert (
        status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE
    )  # a GET changes nothing

    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Unsubscribed")
    )

    assert "You will get no more issues of The Digest." in browser.page_source
    assert status_of(settings, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(settings, "bo@example.org") is SubscriberStatus.ACTIVE


def test_the_archive_and_an_issue_in_the_browser(
    settings: Settings, server: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    browser.get(server + "/issues")
    link = browser.find_element(By.LINK_TEXT, DAY.isoformat())
    link.click()

    assert browser.current_url == f"{server}/issues/{DAY.isoformat()}"
    with Store.open(settings.database_url) as store:
        frozen = store.issues.rendering(DAY)
    assert frozen is not None
    assert browser.title == f"The Digest, {DAY.day} {DAY:%B %Y}"
    headings = [element.text for element in browser.find_elements(By.TAG_NAME, "h1")]
    assert headings
    assert all(headings)
    page = browser.page_source
    assert "ann@example.org" not in page
    assert "bo@example.org" not in page
    # No sideways scrolling at a phone's width either.
    browser.set_window_size(375, 800)
    assert browser.execute_script(
        "return document.documentElement.scrollWidth"
    ) <= browser.execute_script("return window.innerWidth")
