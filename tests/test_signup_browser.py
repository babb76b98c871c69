"""A reader joins, confirms, pauses, leaves and comes back in real Chromium, with nothing
but the pages ``digest serve`` shows and the mails that reach an aiosmtpd relay."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from digest import sending
from digest.models import SubscriberStatus
from digest.settings import Settings, load_settings
from digest.store import Store

from .conftest import FIXTURES, digest_serving, needs_webdriver

KEY = "signup-browser-key-of-at-least-32-characters"
SITE = "https://news.example.org"

pytestmark = needs_webdriver()


@pytest.fixture
def environment(smtp_server: tuple[Any, int]) -> dict[str, str]:
    _, port = smtp_server
    return {
        "DIGEST_SECRET_KEY": KEY,
        "DIGEST_PUBLIC_URL": SITE,
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        "DIGEST_POSTAL_ADDRESS": "1 Example Street, Exampletown",
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
    }


@pytest.fixture
def settings(
    project: Path, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.fixture
def server(settings: Settings, project: Path, environment: dict[str, str]) -> Iterator[str]:
    with digest_serving(project, environment) as url:
        yield url


def wait_for_mail(handler: Any, count: int, timeout: float = 20) -> EmailMessage:
    """The ``count``-th message the relay received, once it has."""
    deadline = time.monotonic() + timeout
    while len(handler.messages) < count:
        assert time.monotonic() < deadline, f"only {len(handler.messages)} messages arrived"
        time.sleep(0.05)
    parsed = BytesParser(policy=policy.default).parsebytes(handler.messages[count - 1][2])
    assert isinstance(parsed, EmailMessage)
    return parsed


def link(message: EmailMessage, kind: str, server: str) -> str:
    """The message's /``kind``/TOKEN link, on the local server."""
    part = message.get_body(("plain",))
    assert part is not None
    found = re.search(rf"{SITE}(/{kind}/[A-Za-z0-9._-]+)", str(part.get_content()))
    assert found is not None, f"no /{kind}/ link in the message"
    return server + found[1]


def status_of(settings: Settings, email: str) -> SubscriberStatus | None:
    with Store.open(settings.database_url) as store:
        found = store.subscribers.find(email)
    return found.status if found is not None else None


def fill_and_submit(browser: Any, server: str, email: str, *, bot: bool = False) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/subscribe")
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "name").send_keys("Ann")
    if bot:
        # What a bot does and a person cannot: fill the field hidden off-screen.
        browser.execute_script("document.getElementById('website').value = 'http://spam'")
    time.sleep(2.2)  # a person takes longer than the form's two seconds
    browser.find_element(By.CSS_SELECTOR, "form.signup button[type=submit]").click()
    WebDriverWait(browser, 10).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Check your inbox")
    )


def click(browser: Any, label: str) -> None:
    """Press the button and wait for the page its form answers with."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = browser.find_element(By.XPATH, f"//button[normalize-space()='{label}']")
    button.click()

    def gone(driver: Any) -> bool:
        # Chromium, asked about the button while the next page replaces it, can answer
        # that its node "does not belong to the document" instead of that it is stale.
        try:
            button.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(browser, 10).until(gone)


@pytest.mark.timeout(180)
def test_a_reader_joins_confirms_pauses_leaves_and_comes_back(
    settings: Settings,
    server: str,
    browser: Any,
    smtp_server: tuple[Any, int],
) -> None:
    from selenium.webdriver.common.by import By

    handler, _ = smtp_server
    fill_and_submit(browser, server, "ann@example.org")
    confirmation = wait_for_mail(handler, 1)
    assert handler.messages[0][1] == ["ann@example.org"]
    assert confirmation["Subject"] == "Confirm your subscription to The Digest"
    assert status_of(settings, "ann@example.org") is SubscriberStatus.PENDING

    browser.get(link(confirmation, "confirm", server))
    assert status_of(settings, "ann@example.org") is SubscriberStatus.PENDING
    click(browser, "Confirm")
    assert browser.find_element(By.TAG_NAME, "h1").text == "You are subscribed"
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE

    today = dt.datetime.now(dt.UTC).date()
    with Store.open(settings.database_url) as store:
        asyncio.run(sending.send_day(settings, store, today))
    issue = wait_for_mail(handler, 2)
    assert issue["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    preferences = link(issue, "preferences", server)

    browser.get(preferences)
    until = today + dt.timedelta(days=2)
    date_input = browser.find_element(By.ID, "until")
    browser.execute_script("arguments[0].value = arguments[1]", date_input, until.isoformat())
    click(browser, "Pause")
    assert "Paused" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    (settings.seeds_dir / "lead_byline.txt").write_bytes(
        (FIXTURES / "lead_byline.txt").read_bytes()
    )
    with Store.open(settings.database_url) as store:
        tomorrow = sending.plan_send(settings, store, today + dt.timedelta(days=1))
    assert (tomorrow.nothing_new, tomorrow.would_send) == (False, 0)

    click(browser, "Resume now")
    assert "Resumed" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    with Store.open(settings.database_url) as store:
        tomorrow = sending.plan_send(settings, store, today + dt.timedelta(days=1))
    assert tomorrow.would_send == 1

    click(browser, "Unsubscribe")
    assert status_of(settings, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    click(browser, "Resubscribe")
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE
    assert "ann@example.org" not in browser.page_source


@pytest.mark.timeout(120)
def test_a_bot_that_fills_the_hidden_field_gets_the_same_page_and_nothing(
    settings: Settings,
    server: str,
    browser: Any,
    smtp_server: tuple[Any, int],
) -> None:
    handler, _ = smtp_server
    fill_and_submit(browser, server, "bot@example.org", bot=True)
    time.sleep(1)  # time for a mail that should not go

    assert handler.messages == []
    assert status_of(settings, "bot@example.org") is None
