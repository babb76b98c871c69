"""The seed issue in a real browser: what a reader would notice at 600px and 375px.

Each check loads the rendered email in headless Chromium with a small script appended
that measures the page and writes what it finds into the DOM, which --dump-dom returns.
Screenshots are kept in var/screenshots/ for a person to look at.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from digest.content.loader import SeedFormat, decode_seed, parse_article
from digest.content.picker import pick
from digest.email.render import Personal, Renderer, personalise
from digest.models import PickLimits
from digest.options import render_options
from digest.settings import Settings

from .conftest import REPO, SEED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = REPO / "var" / "screenshots"

if CHROMIUM is None:
    if os.environ.get("CI"):
        pytest.fail(
            "chromium is not installed: `make test` installs Debian's chromium package",
            pytrace=False,
        )
    pytestmark = pytest.mark.skip(
        reason="chromium is not installed (make test installs it where it can)"
    )

MEASURE = """
<script>
window.addEventListener("load", () => {
  const visible = (el) => {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return box.width > 0 && box.height > 0 && box.right <= innerWidth + 1 && box.left >= -1
      && style.visibility !== "hidden" && style.display !== "none";
  };
  const titles = [...document.querySelectorAll("h1, h2, .related-title")];
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    innerWidth: innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    titles: titles.map((el) => [el.textContent.trim(), visible(el)]),
    unsubscribe: [...document.querySelectorAll("a")].filter(
      (a) => /unsubscribe/i.test(a.textContent) && visible(a)).map((a) => a.href),
    background: getComputedStyle(document.querySelector(".container")).backgroundColor,
  });
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def email_html(seed_format: SeedFormat) -> str:
    article = parse_article(
        decode_seed(SEED.read_bytes(), "seed"), source="seed", seed_format=seed_format
    )
    issue = pick(
        [article], today=dt.date(2026, 11, 23), already_featured=set(), limits=PickLimits()
    )
    rendered = Renderer().render(
        issue, render_options(Settings(_env_file=None, public_url="https://news.example.org"))
    )
    html, _ = personalise(
        rendered,
        Personal(
            unsubscribe_url="https://news.example.org/unsubscribe/TOKEN",
            recipient="reader@example.org",
            preferences_url="https://news.example.org/preferences/TOKEN",
        ),
    )
    return html


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def measure(tmp_path: Path, html: str, *, width: int, dark: bool = False) -> dict[str, object]:
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    flags = ["--force-dark-mode"] if dark else []
    done = chromium(
        tmp_path,
        *flags,
        f"--window-size={width},2000",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    result: dict[str, object] = json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&"))
    return result


def screenshot(tmp_path: Path, html: str, name: str, *, width: int, dark: bool = False) -> Path:
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    flags = ["--force-dark-mode"] if dark else []
    done = chromium(
        tmp_path, *flags, f"--window-size={width},3000", f"--screenshot={target}", page.as_uri()
    )
    assert target.is_file(), done.stderr[-2000:]
    return target


def without_styles(html: str) -> str:
    return re.sub(r"<style\b.*?</style>", "", html, flags=re.S)


def brightness(path: Path) -> float:
    with Image.open(path) as image:
        return float(ImageStat.Stat(image.convert("L")).mean[0])


@pytest.mark.parametrize("width", [600, 375])
@pytest.mark.parametrize("styles", ["with-styles", "styles-removed"])
def test_every_title_visible_no_sideways_scrolling(
    tmp_path: Path, email_html: str, width: int, styles: str
) -> None:
    html = email_html if styles == "with-styles" else without_styles(email_html)

    found = measure(tmp_path, html, width=width)
    screenshot(tmp_path, html, f"digest-{width}-{styles}", width=width)

    assert found["scrollWidth"] == found["innerWidth"]
    titles = found["titles"]
    assert isinstance(titles, list)
    assert len(titles) == 1 + 6
    assert all(is_visible for _, is_visible in titles), titles
    assert found["unsubscribe"] == ["https://news.example.org/unsubscribe/TOKEN"]


def test_dark_mode_is_darker(tmp_path: Path, email_html: str) -> None:
    light = screenshot(tmp_path, email_html, "digest-600-light", width=600)
    dark = screenshot(tmp_path, email_html, "digest-600-dark", width=600, dark=True)

    assert brightness(dark) < brightness(light) / 2
    assert measure(tmp_path, email_html, width=600, dark=True)["background"] == "rgb(28, 28, 28)"
    assert measure(tmp_path, email_html, width=600)["background"] == "rgb(255, 255, 255)"
