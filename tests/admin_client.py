"""What the /admin tests share: the password and its hash, a clock the test moves, and
logging in through the form as a browser would."""

from __future__ import annotations

import datetime as dt
import re

from starlette.testclient import TestClient

from digest.web.adminauth import hash_password

__all__ = ["HASH", "KEY", "PASSWORD", "SITE", "START", "Clock", "csrf_of", "log_in", "login_token"]

KEY = "admin-test-key-of-at-least-32-characters"
PASSWORD = "correct horse battery staple"
HASH = hash_password(PASSWORD)
START = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
SITE = "https://testserver"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def login_token(client: TestClient) -> str:
    page = client.get("/admin/login")
    assert page.status_code == 200
    found = re.search(r'name="token" value="([^"]+)"', page.text)
    assert found is not None
    return found[1]


def log_in(client: TestClient, password: str = PASSWORD) -> int:
    answer = client.post(
        "/admin/login",
        data={"token": login_token(client), "password": password},
        follow_redirects=False,
    )
    return answer.status_code


def csrf_of(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text)
    assert found is not None
    return found[1]
