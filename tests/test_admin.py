"""``/admin``: the login (argon2, a rate limit on a clock the test controls), the session
cookie and its flags, CSRF on every form, no access without a login on any /admin path,
no caching or indexing, and the overview's figures and charts."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest import sending
from digest.cli import cli
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.web.adminauth import SESSION_COOKIE, hash_password, new_session
from digest.web.app import create_app

from .admin_client import HASH, KEY, PASSWORD, SITE, START, Clock, csrf_of, log_in, login_token


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        secret_key=KEY,
        outbox_dir=project / "var" / "outbox",
        admin={"password_hash": HASH, "login_attempts": 3, "login_window_minutes": 15},
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with (
        Store.open(settings.database_url) as store,
        TestClient(create_app(settings, store, clock=clock), base_url=SITE) as test,
    ):
        yield test


def test_without_a_password_hash_there_is_no_admin(project: Path, database_url: str) -> None:
    settings = load_settings(database_url=database_url, secret_key=KEY)
    with Store.open(database_url) as store, TestClient(create_app(settings, store)) as test:
        for path in ("/admin", "/admin/login", "/admin/anything"):
            assert test.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/admin", "/admin/issues/2026-11-23", "/admin/static/x.css"])
def test_no_admin_path_answers_without_a_login(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login"
    assert answer.headers["cache-control"] == "no-store"
    assert client.post("/admin/logout", data={"csrf": "x"}).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/admin/subscribers/unsubscribe",
        "/admin/subscribers/resubscribe",
        "/admin/subscribers/remove",
        "/admin/test-copy",
        "/admin/schedule/skip",
        "/admin/schedule/resume",
    ],
)
def test_no_action_is_taken_without_a_login(client: TestClient, path: str) -> None:
    data = {"email": "ann@example.org", "day": "2026-11-24", "csrf": "x"}
    refused = client.post(path, data=data, follow_redirects=False)
    assert refused.status_code == 403
    assert refused.headers["cache-control"] == "no-store"
    asked = client.get(path, params={"email": "ann@example.org"}, follow_redirects=False)
    assert asked.status_code == 303


def test_a_login_gives_a_strict_secure_cookie_and_the_overview(client: TestClient) -> None:
    answer = client.post(
        "/admin/login",
        data={"token": login_token(client), "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/admin"):
        assert flag.lower() in cookie.lower()
    overview = client.get("/admin")
    assert overview.status_code == 200
    assert overview.headers["cache-control"] == "no-store"
    assert overview.headers["x-robots-tag"] == "noindex, nofollow"
    assert overview.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert overview.headers["x-frame-options"] == "DENY"
    assert '<meta name="robots" content="noindex">' in overview.text


def test_a_wrong_password_is_refused_and_the_rate_limit_holds(
    client: TestClient, clock: Clock
) -> None:
    assert [log_in(client, "wrong") for _ in range(3)] == [401, 401, 401]
    # The limit reached: even the right password waits.
    assert log_in(client) == 429
    assert client.get("/admin", follow_redirects=False).status_code == 303
    clock.now += dt.timedelta(minutes=16)
    assert log_in(client) == 303
    assert client.get("/admin").status_code == 200


def test_a_forged_or_expired_session_is_refused(client: TestClient, clock: Clock) -> None:
    client.cookies.set(SESSION_COOKIE, "forged.value", domain="testserver", path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 303
    client.cookies.clear()
    # Made with another password's hash: refused.
    other = new_session(KEY, hash_password("another password entirely"), now=START)
    client.cookies.set(SESSION_COOKIE, other, domain="testserver", path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 303
    client.cookies.clear()
    assert log_in(client) == 303
    assert client.get("/admin").status_code == 200
    clock.now += dt.timedelta(hours=13)
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(client: TestClient) -> None:
    assert log_in(client) == 303
    assert client.post("/admin/logout", data={}).status_code == 403
    assert client.post("/admin/logout", data={"csrf": "0" * 64}).status_code == 403
    # Still logged in.
    assert client.get("/admin").status_code == 200
    answer = client.post("/admin/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_a_stale_login_form_is_refused(client: TestClient, clock: Clock) -> None:
    token = login_token(client)
    clock.now += dt.timedelta(hours=2)
    answer = client.post("/admin/login", data={"token": token, "password": PASSWORD})
    assert answer.status_code == 400
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_the_overview_shows_the_list_the_issues_and_their_charts(
    settings: Settings, clock: Clock
) -> None:
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows(
            [(f"reader{n}@example.org", None) for n in range(4)], now=START
        )
        asyncio.run(sending.send_day(settings, store, dt.date(2026, 11, 23)))
        with TestClient(create_app(settings, store, clock=clock), base_url=SITE) as test:
            assert log_in(test) == 303
            page = lxml.html.document_fromstring(test.get("/admin").text)

    text = page.text_content()
    assert "Next scheduled send:" in text
    assert "(UTC)" in text
    [issue_row] = [
        [cell.text_content() for cell in row.iter("td")]
        for row in page.iter("tr")
        if row.find("td") is not None
        and row.find("td").text_content() == "2026-11-23"
        and len(row.findall("td")) == 6
    ]
    assert issue_row[:4] == ["2026-11-23", "4", "0", "0"]
    charts = page.xpath("//svg[@role='img']")
    assert len(charts) == 3
    for chart in charts:
        assert chart.get("role") == "img"
        assert chart.find("title") is not None
        assert chart.find("desc") is not None
    # The list chart's table: 90 days, the import counted as joined today.
    days = [row for row in page.iter("tr") if len(row.findall("td")) == 4]
    assert len(days) == 90
    assert [cell.text_content() for cell in days[-1].iter("td")] == ["2026-11-23", "4", "0", "0"]


def test_set_password_prints_a_hash_that_logs_in(project: Path, database_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["admin", "set-password", "--stdin"], input="a long enough password\n"
    )
    assert result.exit_code == 0, result.output
    found = re.search(r'password_hash = "([^"]+)"', result.stdout)
    assert found is not None
    settings = load_settings(
        database_url=database_url, secret_key=KEY, admin={"password_hash": found[1]}
    )
    with (
        Store.open(database_url) as store,
        TestClient(create_app(settings, store), base_url=SITE) as test,
    ):
        assert log_in(test, "a long enough password") == 303
    short = CliRunner().invoke(cli, ["admin", "set-password", "--stdin"], input="short\n")
    assert short.exit_code == 2
    assert "at least 12 characters" in short.stderr


def test_looking_up_an_address_shows_its_status_history_and_copies(
    settings: Settings, clock: Clock
) -> None:
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([("ann@example.org", "Ann")], now=START)
        asyncio.run(sending.send_day(settings, store, dt.date(2026, 11, 23)))
        with TestClient(create_app(settings, store, clock=clock), base_url=SITE) as test:
            # Not without a login.
            assert (
                test.get("/admin/subscribers?email=ann@example.org", follow_redirects=False)
            ).status_code == 303
            assert log_in(test) == 303
            found = test.get("/admin/subscribers", params={"email": "Ann@Example.org"})
            missing = test.get("/admin/subscribers", params={"email": "nobody@example.org"})
            blank = test.get("/admin/subscribers")

    assert found.status_code == 200
    assert found.headers["cache-control"] == "no-store"
    page = lxml.html.document_fromstring(found.text)
    rows = {
        row.findtext("th"): row.findtext("td")
        for row in page.iter("tr")
        if row.find("th") is not None
    }
    assert rows["status"] == "active"
    assert rows["name"] == "Ann"
    text = page.text_content()
    assert "2026-11-23" in text  # the copy of the issue
    assert "joined" in text
    assert missing.status_code == 404
    assert "nobody@example.org is not on the list" in missing.text
    assert blank.status_code == 200
    assert "Look up a subscriber" in blank.text
