"""The email's HTML and every page of ``digest serve`` through the Nu HTML checker and
html-validate, as they are sent and served: the seed issue and a five-article issue as the
outbox holds them, the confirmation and welcome mails, the archive, an article, the feed's
pages, the signup and preference pages.

The front page and an issue's page are the issue as it was sent, so they are checked as email.
The email may use the idioms HTML email needs and a web page does not; tests/checkers/README.md
lists them and says why. Everything else either checker reports is a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest import sending
from digest.readers.notices import confirmation_mail, welcome_mail
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.web.adminauth import hash_password
from digest.web.app import create_app

from .conftest import FIVE_LEADS, FIXTURES, REPO, SEED

CHECKERS = REPO / "tests" / "checkers"
VNU = CHECKERS / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
HTML_VALIDATE = CHECKERS / "node_modules" / "html-validate" / "bin" / "html-validate.mjs"
JAVA = shutil.which("java")
NODE = shutil.which("node")
KEY = "html-checker-key-of-at-least-32-characters"
SITE = "https://news.example.org"
ONE = dt.date(2026, 11, 23)
FIVE = dt.date(2026, 11, 24)
NOW = dt.datetime(2026, 11, 24, 7, tzinfo=dt.UTC)
ADMIN_PASSWORD = "an operator's password for the checks"
ADMIN_HASH = hash_password(ADMIN_PASSWORD)

# The Nu checker's messages that are the email's idioms (tests/checkers/README.md says why
# each is there); allowed in the email's HTML only, never in a web page.
EMAIL_IDIOMS = (
    re.compile(r"Attribute “xmlns:[vo]” not allowed here\."),
    re.compile(r"Element “meta” is missing one or more of the following attributes: “content”"),
    re.compile(r"CSS: “(supported-color-schemes|mso-[a-z-]+)”: Property “\1” doesn't exist\."),
)


def _missing() -> str | None:
    if JAVA is None or NODE is None:
        return "java or node is not installed: `make test` installs Debian's packages"
    if not VNU.is_file() or not HTML_VALIDATE.is_file():
        return (
            "the HTML checkers are not installed: `make test-tools` runs npm ci in tests/checkers"
        )
    return None


if (_reason := _missing()) is not None:
    if os.environ.get("CI"):
        pytest.fail(_reason, pytrace=False)
    pytestmark = pytest.mark.skip(reason=_reason)


def html_part(data: bytes) -> str:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def site_settings(project: Path, database_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        public_url=SITE,
        secret_key=KEY,
        outbox_dir=project / "var" / "outbox",
        postal_address="1 High Street, Exampleton",
        note_file=None,
        admin={"password_hash": ADMIN_HASH},
    )


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Every HTML document digest makes, by kind ("email" or "web") and name."""
    project = tmp_path_factory.mktemp("project")
    (project / "seeds").mkdir()
    (project / "seeds" / SEED.name).write_bytes(SEED.read_bytes())
    (project / "config").mkdir()
    (project / "config" / "digest.toml").write_bytes((REPO / "config" / "digest.toml").read_bytes())
    previous = Path.cwd()
    os.chdir(project)
    try:
        settings = site_settings(project, f"sqlite:///{project / 'digest.db'}")
        emails: dict[str, str] = {}
        web: dict[str, str] = {}
        with Store.open(settings.database_url) as store:
            store.subscribers.add("reader@example.org", "Ann Reader", now=NOW)
            asyncio.run(sending.send_day(settings, store, ONE))
            sent_one = sorted((settings.outbox_dir / "new").iterdir())
            for name in FIVE_LEADS:
                (project / "seeds" / name).write_bytes((FIXTURES / name).read_bytes())
            asyncio.run(sending.send_day(settings, store, FIVE))
            sent = sorted((settings.outbox_dir / "new").iterdir())
            [first] = sent_one
            [second] = [path for path in sent if path not in sent_one]
            emails["issue-one"] = html_part(first.read_bytes())
            emails["issue-five"] = html_part(second.read_bytes())
            reader = store.subscribers.find("reader@example.org")
            assert reader is not None
            emails["confirm"] = html_part(
                confirmation_mail(settings, store, reader, secret_key=KEY, now=NOW)
            )
            emails["welcome"] = html_part(
                welcome_mail(settings, store, reader, secret_key=KEY, now=NOW)
            )

            text = BytesParser(policy=policy.default).parsebytes(second.read_bytes())
            unsubscribe = str(text["List-Unsubscribe"]).split(">")[0].lstrip("<")
            preferences = re.search(rf"{SITE}(/preferences/[A-Za-z0-9._-]+)", emails["issue-five"])
            assert preferences is not None
            with TestClient(create_app(settings, store, clock=lambda: NOW)) as client:
                pages = {
                    "front": "/",
                    "archive": "/issues",
                    "issue-one": f"/issues/{ONE}",
                    "issue-five": f"/issues/{FIVE}",
                    "subscribe": "/subscribe",
                    "preferences": "/preferences",
                    "preferences-reader": preferences[1],
                    "unsubscribe": unsubscribe.removeprefix(SITE),
                    "not-found": "/issues/1999-01-01",
                }
                for name, path in pages.items():
                    answer = client.get(path)
                    assert answer.status_code in (200, 404), (path, answer.status_code)
                    web[name] = answer.text
                # The front page and an issue's page are the issue as it was sent: an
                # email document, checked as one.
                for name in ("front", "issue-one", "issue-five"):
                    emails[f"served-{name}"] = web.pop(name)
                web["admin-login"] = client.get("/admin/login").text
            with TestClient(
                create_app(settings, store, clock=lambda: NOW), base_url="https://testserver"
            ) as admin:
                token = re.search(r'name="token" value="([^"]+)"', admin.get("/admin/login").text)
                assert token is not None
                admin.post("/admin/login", data={"token": token[1], "password": ADMIN_PASSWORD})
                overview = admin.get("/admin")
                assert overview.status_code == 200
                web["admin-overview"] = overview.text
                lookup = admin.get("/admin/subscribers", params={"email": "reader@example.org"})
                assert lookup.status_code == 200
                web["admin-subscriber"] = lookup.text
                # An issue's page (its iframe holds the copy as sent, checked above as
                # the archive serves it), a confirmation, and a page saying what happened.
                for name, (path, status) in {
                    "admin-issue": (f"/admin/issues/{FIVE}?email=reader@example.org", 200),
                    "admin-confirm": ("/admin/subscribers/remove?email=reader@example.org", 200),
                    "admin-not-found": ("/admin/nothing-here", 404),
                }.items():
                    answer = admin.get(path)
                    assert answer.status_code == status, (path, answer.status_code)
                    web[name] = answer.text
            with TestClient(create_app(settings, store, clock=lambda: NOW)) as client:
                articles = sorted(
                    set(
                        re.findall(
                            rf'href="{SITE}(/issues/{FIVE}/[a-z0-9-]+)"', emails["issue-five"]
                        )
                    )
                )
                assert len(articles) == 5
                for number, path in enumerate(articles, 1):
                    answer = client.get(path)
                    assert answer.status_code == 200, path
                    web[f"article-{number}"] = answer.text
    finally:
        os.chdir(previous)
    return {"email": emails, "web": web}


def write(folder: Path, found: dict[str, str]) -> dict[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, html in found.items():
        path = folder / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        paths[path] = name
    return paths


@pytest.mark.timeout(180)
def test_the_nu_html_checker_finds_nothing_but_email_idioms(
    documents: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    emails = write(tmp_path / "email", documents["email"])
    web = write(tmp_path / "web", documents["web"])
    assert JAVA is not None
    checked = subprocess.run(
        [JAVA, "-jar", str(VNU), "--format", "json", "--errors-only", *map(str, emails | web)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    report = json.loads(checked.stderr or checked.stdout)
    problems = []
    for message in report["messages"]:
        path = Path(message.get("url", "").removeprefix("file:"))
        said = message.get("message", "")
        if path in emails and any(idiom.search(said) for idiom in EMAIL_IDIOMS):
            continue
        where = f"{path.parent.name}/{path.name}:{message.get('lastLine', '?')}"
        problems.append(f"{where}: {said} [{message.get('extract', '').strip()}]")
    assert problems == []
    # Every document was read: a checker that saw nothing would find nothing.
    assert checked.returncode == (1 if report["messages"] else 0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["email", "web"])
def test_html_validate_finds_nothing(
    kind: str, documents: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    paths = write(tmp_path / kind, documents[kind])
    report = tmp_path / "report.json"
    assert NODE is not None
    checked = subprocess.run(
        [
            NODE,
            str(HTML_VALIDATE),
            "--config",
            str(CHECKERS / f"htmlvalidate-{kind}.json"),
            # To a file: piped, the report of many pages is cut short when node exits.
            "--formatter",
            f"json={report}",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    results = json.loads(report.read_text(encoding="utf-8"))
    assert {Path(result["filePath"]).name for result in results} <= {p.name for p in paths}
    problems = [
        f"{kind}/{Path(result['filePath']).name}:{message['line']}: {message['message']} "
        f"({message['ruleId']})"
        for result in results
        for message in result["messages"]
    ]
    assert problems == []
    assert checked.returncode == 0, checked.stderr


def test_an_email_idiom_in_a_web_page_is_a_problem(tmp_path: Path) -> None:
    """The allowances are the email's only: the same idiom in a page is reported."""
    page = (
        '<!DOCTYPE html><html lang="en" xmlns:v="urn:schemas-microsoft-com:vml"><head>'
        '<meta charset="utf-8"><title>t</title></head><body><table cellpadding="0">'
        "<tr><td>x</td></tr></table></body></html>"
    )
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    assert NODE is not None
    assert JAVA is not None
    html_validate = subprocess.run(
        [NODE, str(HTML_VALIDATE), "--config", str(CHECKERS / "htmlvalidate-web.json"), str(path)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert html_validate.returncode != 0
    assert "no-deprecated-attr" in html_validate.stdout
    vnu = subprocess.run(
        [JAVA, "-jar", str(VNU), "--errors-only", str(path)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert "xmlns:v" in vnu.stderr
