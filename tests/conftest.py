"""Shared fixtures: the repository's own rules, isolated working directories, databases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from digest.content.boilerplate import load_boilerplate
from digest.content.loader import SeedFormat
from digest.settings import DEFAULT_KICKERS, DEFAULT_PUBLISHERS

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "seeds"
SEED = REPO / "seeds" / "000_9a09748038e9bf2b.txt"
# The fixtures that, with the seed's article already sent, make a five-article issue.
FIVE_LEADS = (
    "lead_byline.txt",
    "dated_byline.txt",
    "several_authors.txt",
    "no_related.txt",
    "markup.txt",
)
POSTGRES_ENV = "DIGEST_TEST_POSTGRES_URL"
# Read once, before any test clears DIGEST_* variables from its environment.
POSTGRES_URL = os.environ.get(POSTGRES_ENV)


@pytest.fixture(scope="session")
def seed_format() -> SeedFormat:
    """The format as shipped: the package's boilerplate rules, default kickers and publishers."""
    return SeedFormat(
        boilerplate=load_boilerplate(None),
        kickers=DEFAULT_KICKERS,
        publishers=DEFAULT_PUBLISHERS,
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DIGEST_* variable from the caller's environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> Path:
    """An empty working directory holding the shipped config/, as digest runs in a checkout."""
    (tmp_path / "config").mkdir()
    for name in ("digest.toml", "subscribers.example.csv"):
        (tmp_path / "config" / name).write_bytes((REPO / "config" / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def project(workdir: Path) -> Path:
    """A working directory with config/ and the real seed in seeds/."""
    (workdir / "seeds").mkdir()
    (workdir / "seeds" / SEED.name).write_bytes(SEED.read_bytes())
    return workdir


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = POSTGRES_URL
    if not url:
        if os.environ.get("CI"):
            # CI runs the PostgreSQL half of every store test: a skip there hides it.
            pytest.fail(f"{POSTGRES_ENV} is not set under CI: the PostgreSQL tests must run")
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests skipped")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'digest.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"digest_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[tuple[Any, int]]:
    """An aiosmtpd server on 127.0.0.1 (tests/smtp_sink.py): (its handler, its port).

    Parametrise indirectly with a handler class (default: the one that records
    everything), or with (class, aiosmtpd SMTP options).
    """
    from tests.smtp_sink import Recorder, SmtpServer

    param = getattr(request, "param", Recorder)
    handler_class, options = param if isinstance(param, tuple) else (param, {})
    handler = handler_class()
    with SmtpServer(handler, **options) as server:
        yield handler, server.port


def digest_process(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m digest ARGS`` in ``cwd``, as a user runs it: none of the caller's
    DIGEST_* variables, only ``env``'s."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")
    }
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=environment | (env or {}),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


# Debian's Chromium and its WebDriver (make test installs them), for the browser tests.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def needs_webdriver() -> list[pytest.MarkDecorator]:
    """The ``pytestmark`` of a module that drives Chromium: without it, a failure under CI
    (CI must run every test) and a skip elsewhere."""
    if CHROMIUM is not None and CHROMEDRIVER is not None:
        return []
    if os.environ.get("CI"):
        pytest.fail(
            "chromium or chromedriver is not installed: `make test` installs Debian's "
            "chromium and chromium-driver packages",
            pytrace=False,
        )
    return [
        pytest.mark.skip(
            reason="chromium or chromedriver is not installed (make test installs them where it can)"
        )
    ]


@contextmanager
def digest_serving(cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """``digest serve`` in ``cwd`` with only ``env``'s DIGEST_* variables; its URL."""
    from .test_schedule import served_url, wait_for_log

    environment = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")}
    # Port 0: the server binds a port of its own and logs which (no race for a free one).
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--port", "0"],
        cwd=cwd,
        env=environment | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = served_url(wait_for_log(process, "serving on", timeout=30))
    except AssertionError:
        process.kill()
        process.communicate()
        raise
    try:
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    assert CHROMIUM is not None
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
