"""What the /admin tests share: the password and its hash, a clock the test moves, and
logging in through the form as a browser would."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from digest.models import SubscriberStatus
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.web.adminauth import hash_password

__all__ = [
    "HASH",
    "KEY",
    "PASSWORD",
    "SITE",
    "START",
    "Clock",
    "admin_settings",
    "cells",
    "csrf_of",
    "log_in",
    "login_token",
    "status_of",
]

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


def admin_settings(project: Path, database_url: str, **more: Any) -> Settings:
    """Settings with /admin on, the outbox in ``project``, and ``more``."""
    return load_settings(
        database_url=database_url,
        secret_key=KEY,
        outbox_dir=project / "var" / "outbox",
        admin={"password_hash": HASH},
        **more,
    )


def status_of(store: Store, email: str) -> SubscriberStatus | None:
    found = store.subscribers.find(email)
    return None if found is None else found.status


def cells(page: Any) -> list[list[str]]:
    """The text of each table row's cells, for rows that have any."""
    return [
        [cell.text_content().strip() for cell in row.iter("td")]
        for row in page.iter("tr")
        if row.find("td") is not None
    ]
