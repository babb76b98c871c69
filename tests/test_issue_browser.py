"""A one-article and a five-article issue in real Chromium, from ``digest serve``: the
masthead, the "In this issue" links, every "Continue reading" link, the footer's links,
no sideways scrolling, in light and dark, at 600 and 375 px and with ``<style>`` removed.

Screenshots are kept in var/screenshots/issue-*.png for a person to look at.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digest import sending
from digest.settings import Settings, load_settings
from digest.store import Store

from .conftest import FIVE_LEADS, FIXTURES, REPO, digest_serving, needs_webdriver

KEY = "issue-browser-key-of-at-least-32-characters"
SITE = "https://news.example.org"
SCREENSHOTS = REPO / "var" / "screenshots"
ONE = dt.date(2026, 11, 23)
FIVE = dt.date(2026, 11, 24)

pytestmark = needs_webdriver()

ENVIRONMENT = {
    "DIGEST_SECRET_KEY": KEY,
    "DIGEST_PUBLIC_URL": SITE,
    "DIGEST_FROM_ADDRESS": "digest@news.example.org",
    "DIGEST_POSTAL_ADDRESS": "1 High Street, Exampleton",
}


@pytest.fixture
def settings(project: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    with Store.open(settings.database_url) as store:
        store.subscribers.add(
            "reader@example.org", None, now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        )
        asyncio.run(sending.send_day(settings, store, ONE))
        for name in FIVE_LEADS:
            (project / "seeds" / name).write_bytes((FIXTURES / name).read_bytes())
        asyncio.run(sending.send_day(settings, store, FIVE))
    return settings


@pytest.fixture
def server(settings: Settings, project: Path) -> Iterator[str]:
    with digest_serving(project, ENVIRONMENT) as url:
        yield url


def no_sideways_scroll(browser: Any) -> bool:
    return bool(
        browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        )
    )


def shoot(browser: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.execute_script("return window.outerWidth")
    browser.set_window_size(width, min(int(height) + 100, 8000))
    browser.save_screenshot(str(SCREENSHOTS / f"issue-{name}.png"))


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("date", "stories"), [(ONE, 1), (FIVE, 5)])
def test_an_issue_reads_and_every_link_works_in_chromium(
    server: str, browser: Any, date: dt.date, stories: int
) -> None:
    from selenium.webdriver.common.by import By

    page = f"{server}/issues/{date.isoformat()}"
    label = f"{stories}-article"
    for width in (600, 375):
        browser.set_window_size(width, 900)
        browser.get(page)
        assert browser.find_element(By.CLASS_NAME, "newsletter-name").is_displayed()
        assert "No. " in browser.find_element(By.CLASS_NAME, "issue-date").text
        assert no_sideways_scroll(browser)
        shoot(browser, f"{label}-{width}-light")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    browser.set_window_size(600, 900)
    browser.get(page)
    background = browser.execute_script(
        "return getComputedStyle(document.querySelector('.container')).backgroundColor"
    )
    assert background == "rgb(28, 28, 28)"
    shoot(browser, f"{label}-600-dark")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    browser.set_window_size(600, 900)
    browser.get(page)
    contents = browser.find_elements(By.CSS_SELECTOR, ".contents-item a")
    assert len(contents) == (stories if stories > 1 else 0)
    if contents:
        target = contents[-1].get_attribute("href")
        assert target is not None
        contents[-1].click()
        anchor = target.rsplit("#", 1)[1]
        assert browser.execute_script(
            "const box = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return box.top >= -1 && box.top < window.innerHeight;",
            anchor,
        )
    continues = [
        str(a.get_attribute("href")) for a in browser.find_elements(By.CSS_SELECTOR, ".continue a")
    ]
    footer = {
        a.text: str(a.get_attribute("href"))
        for a in browser.find_elements(By.CSS_SELECTOR, ".footer a")
    }
    for href in continues:
        assert href.startswith(f"{SITE}/issues/{date.isoformat()}/")
        browser.get(server + href.removeprefix(SITE))
        assert browser.find_element(By.TAG_NAME, "article").is_displayed()
        assert len(browser.find_elements(By.CSS_SELECTOR, "article p")) > 3
    for text in (
        "Unsubscribe from The Digest",
        "Your preferences",
        "View this issue in your browser",
    ):
        href = footer[text]
        browser.get(href if href.startswith("http://") else server + href.removeprefix(SITE))
        assert "There is no page" not in browser.page_source, text

    # As the Gmail app shows it to a non-Google account: every <style> removed.
    browser.get(page)
    browser.execute_script("document.querySelectorAll('style').forEach(s => s.remove())")
    assert no_sideways_scroll(browser)
    assert browser.find_element(By.CLASS_NAME, "headline").is_displayed()
    shoot(browser, f"{label}-600-unstyled")
