"""``digest serve``: one-click unsubscribe, the archive and bad input, through the ASGI app."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from xml.etree import ElementTree

import lxml.html
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from itsdangerous import Signer
from pydantic import SecretStr
from starlette.testclient import TestClient

from digest import pipeline, sending
from digest.audience.tokens import (
    PREVIEW_KEY,
    _OnceDerivedSigner,
    read_unsubscribe_token,
    unsubscribe_token,
)
from digest.email.typography import smarten
from digest.errors import ConfigError
from digest.models import Article, Issue, RelatedStory, SubscriberStatus
from digest.options import list_naming
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.web.app import MAX_BODY_BYTES, create_app
from digest.web.archive import PER_PAGE
from digest.web.site import MAX_TITLE, page_title

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
KEY = "web-test-key-of-at-least-32-characters"
ADDRESSES = ["ann@example.org", "bo@example.org"]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def settings(project: Path, database_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        public_url="https://news.example.org",
        secret_key=KEY,
        outbox_dir=project / "var" / "outbox",
    )


@pytest.fixture
def links(settings: Settings) -> dict[str, str]:
    """Each subscriber's unsubscribe path, read off the copy they were sent."""
    with Store.open(settings.database_url) as store:
        store.subscribers.import_rows([(address, None) for address in ADDRESSES], now=NOW)
        asyncio.run(sending.send_day(settings, store, DAY))
    found = {}
    for path in (settings.outbox_dir / "new").iterdir():
        parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        url = str(parsed["List-Unsubscribe"]).split(">")[0].lstrip("<")
        found[parsed["To"].addresses[0].addr_spec] = url.removeprefix("https://news.example.org")
    return found


@pytest.fixture
def client(settings: Settings, links: dict[str, str]) -> Iterator[TestClient]:
    with Store.open(settings.database_url) as store, TestClient(create_app(settings, store)) as c:
        yield c


def status_of(settings: Settings, address: str) -> SubscriberStatus:
    with Store.open(settings.database_url) as store:
        subscriber = store.subscribers.find(address)
    assert subscriber is not None
    return subscriber.status


def test_one_click_post_unsubscribes_at_once_and_again_is_harmless(
    settings: Settings, links: dict[str, str], client: TestClient
) -> None:
    first = client.post(links["ann@example.org"], data=ONE_CLICK)
    again = client.post(links["ann@example.org"], data=ONE_CLICK)

    assert (first.status_code, again.status_code) == (200, 200)
    assert "Unsubscribed" in first.text
    assert "set-cookie" not in first.headers
    assert status_of(settings, "ann@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(settings, "bo@example.org") is SubscriberStatus.ACTIVE


def test_one_click_works_as_multipart_too(
    settings: Settings, links: dict[str, str], client: TestClient
) -> None:
    # RFC 8058 allows either form encoding; some mailbox providers send multipart.
    response = client.post(links["bo@example.org"], files={"List-Unsubscribe": (None, "One-Click")})

    assert response.status_code == 200
    assert status_of(settings, "bo@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_get_shows_a_button_and_changes_nothing(
    settings: Settings, links: dict[str, str], client: TestClient
) -> None:
    response = client.get(links["ann@example.org"])

    assert response.status_code == 200
    assert "Unsubscribe from The Digest?" in response.text
    assert '<form method="post"' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert "ann@example.org" not in response.text
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE


def forged(path: str) -> str:
    """The same link with one character of its signature changed."""
    last = path[-1]
    return path[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize(
    "make_path",
    [
        forged,
        lambda path: path[:-5],  # cut short
        lambda path: "/unsubscribe/not-a-token",
        lambda path: "/unsubscribe/" + "x" * 5000,
        lambda path: "/unsubscribe/%C3%A9t%C3%A9.abc",
        lambda path: "/unsubscribe/" + path.rsplit("/", 1)[1].split(".")[0],  # no signature
    ],
    ids=["forged", "cut-short", "garbage", "very-long", "non-ascii", "unsigned"],
)
def test_a_bad_token_is_a_400_and_changes_nothing(
    settings: Settings, links: dict[str, str], client: TestClient, make_path: object
) -> None:
    assert callable(make_path)
    path = make_path(links["ann@example.org"])

    page, post = client.get(path), client.post(path, data=ONE_CLICK)

    assert (page.status_code, post.status_code) == (400, 400)
    assert "not valid" in post.text
    assert "Traceback" not in post.text
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE


def test_a_token_for_another_list_is_refused(settings: Settings, client: TestClient) -> None:
    with Store.open(settings.database_url) as store:
        ann = store.subscribers.find("ann@example.org")
    assert ann is not None
    token = unsubscribe_token(
        KEY, subscriber_id=ann.id, list_id="other." + list_naming(settings).derived, email=ann.email
    )

    response = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)

    assert response.status_code == 400
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    "body", [{"List-Unsubscribe": "Yes"}, {}, {"Other": "One-Click"}], ids=["wrong", "empty", "key"]
)
def test_a_post_without_the_one_click_body_changes_nothing(
    settings: Settings, links: dict[str, str], client: TestClient, body: dict[str, str]
) -> None:
    response = client.post(links["ann@example.org"], data=body)

    assert response.status_code == 400
    assert "List-Unsubscribe=One-Click" in response.text
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE


def test_a_huge_body_is_refused_unread(
    settings: Settings, links: dict[str, str], client: TestClient
) -> None:
    declared = client.post(
        links["ann@example.org"], content=b"List-Unsubscribe=One-Click&" + b"x" * 100_000
    )

    def chunks() -> Iterator[bytes]:
        yield b"List-Unsubscribe=One-Click&"
        for _ in range(10):
            yield b"x" * MAX_BODY_BYTES

    undeclared = client.post(  # chunked: no Content-Length to go by
        links["ann@example.org"],
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert (declared.status_code, undeclared.status_code) == (413, 413)
    assert status_of(settings, "ann@example.org") is SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/unsubscribe/abc"), ("DELETE", "/unsubscribe/abc"), ("POST", "/issues")],
)
def test_wrong_methods_are_405(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert "Traceback" not in response.text


def test_the_archive_lists_sent_issues_and_shows_one_without_personal_data(
    client: TestClient,
) -> None:
    archive = client.get("/issues")
    issue = client.get(f"/issues/{DAY.isoformat()}")

    assert archive.status_code == 200
    assert f'href="/issues/{DAY.isoformat()}"' in archive.text
    assert issue.status_code == 200
    assert issue.headers["content-type"].startswith("text/html")
    for address in ADDRESSES:
        assert address not in issue.text
        assert address not in archive.text
    assert "/unsubscribe/" not in issue.text  # nobody's own link
    assert "because you subscribed" in issue.text
    assert "__digest_" not in issue.text


@pytest.mark.parametrize("date", ["2020-01-01", "2026-13-45", "yesterday", "2026-11-23x"])
def test_an_unknown_or_malformed_date_is_a_404(client: TestClient, date: str) -> None:
    response = client.get(f"/issues/{date}")

    assert response.status_code == 404
    assert "Traceback" not in response.text


def test_an_old_link_does_not_unsubscribe_whoever_now_has_its_id(
    settings: Settings, client: TestClient
) -> None:
    with Store.open(settings.database_url) as store:
        gone = store.subscribers.find("bo@example.org")
        assert gone is not None
        store.subscribers.remove("bo@example.org")
        newcomer, _ = store.subscribers.add("cy@example.org", None, now=NOW)
    # SQLite may give a removed subscriber's id to the next one; the link stays theirs.
    old_link = unsubscribe_token(
        KEY, subscriber_id=newcomer.id, list_id=list_naming(settings).derived, email=gone.email
    )

    response = client.post(f"/unsubscribe/{old_link}", data=ONE_CLICK)

    assert response.status_code == 200
    assert "no longer on the list" in response.text
    assert status_of(settings, "cy@example.org") is SubscriberStatus.ACTIVE


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")

    assert (response.status_code, response.text) == (200, "ok\n")


def test_serving_needs_the_secret_key(project: Path, database_url: str) -> None:
    settings = load_settings(database_url=database_url)

    with Store.open(database_url) as store, pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
        create_app(settings, store)


@pytest.mark.parametrize("key", ["", "x", "k" * 31])
def test_no_token_is_made_or_read_with_a_short_key(key: str) -> None:
    # A token signed with an empty key once unsubscribed a real subscriber: whoever knows
    # a subscriber id could have made it.
    good = unsubscribe_token(KEY, subscriber_id=1, list_id="the-digest.example.org", email="a@b.c")

    with pytest.raises(ValueError, match="at least 32 characters"):
        unsubscribe_token(key, subscriber_id=1, list_id="the-digest.example.org", email="a@b.c")
    with pytest.raises(ValueError, match="at least 32 characters"):
        read_unsubscribe_token(key, good)
    read = read_unsubscribe_token(KEY, good)
    assert read is not None
    with pytest.raises(ValueError, match="at least 32 characters"):
        read.is_for(key, "a@b.c")


def test_the_preview_key_still_signs_preview_links() -> None:
    token = unsubscribe_token(PREVIEW_KEY, subscriber_id=0, list_id="d.example.org", email="a@b.c")

    assert read_unsubscribe_token(PREVIEW_KEY, token) is not None


@pytest.mark.parametrize("key", ["", "k" * 31])
def test_serving_refuses_a_short_key(settings: Settings, key: str) -> None:
    # Settings refuse such a key when read; the app does not rely on it.
    short = settings.model_copy(update={"secret_key": SecretStr(key)})

    with Store.open(settings.database_url) as store, pytest.raises(ConfigError) as caught:
        create_app(short, store)

    assert str(caught.value) == (
        "DIGEST_SECRET_KEY is shorter than 32 characters: digest serve refuses it, since "
        "links signed with it could be forged"
    )


def test_every_continue_reading_link_of_a_sent_copy_serves_the_whole_article(
    settings: Settings, links: dict[str, str], client: TestClient
) -> None:
    path = next((settings.outbox_dir / "new").iterdir())
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    html_part = message.get_body(("html",))
    assert html_part is not None
    page = lxml.html.document_fromstring(str(html_part.get_content()))
    continues = [str(p.find("a").get("href")) for p in page.find_class("continue")]
    assert continues
    with Store.open(settings.database_url) as store:
        issue = store.issues.get(DAY)
    assert issue is not None
    for href, article in zip(continues, issue.articles, strict=False):
        assert href.startswith(f"https://news.example.org/issues/{DAY.isoformat()}/")
        answer = client.get(href.removeprefix("https://news.example.org"))
        assert answer.status_code == 200
        served = lxml.html.document_fromstring(answer.text)
        assert served.find(".//link[@rel='canonical']").get("href") == href
        assert served.find(".//meta[@property='og:title']").get("content")
        text = served.text_content()
        assert all(smarten(paragraph) in text for paragraph in article.paragraphs)
    assert client.get(f"/issues/{DAY.isoformat()}/no-such-article").status_code == 404
    assert client.get("/issues/2020-01-01/anything").status_code == 404


def publish(store: Store, days: int) -> list[dt.date]:
    """``days`` issues gone out, one a day after the one the links fixture sent."""
    dates = [DAY + dt.timedelta(days=offset) for offset in range(1, days + 1)]
    for index, date in enumerate(dates):
        article = Article(
            source=f"seeds/{index}.txt",
            id=f"a{index}",
            title=f"Story number {index}",
            standfirst=f"What happened on day {index}",
            paragraphs=("It happened.",),
        )
        store.issues.save(Issue(date=date, articles=(article,)), created_at=NOW)
        store.issues.freeze_rendering(
            date,
            subject=f"The Digest: story {index}",
            html=f"<html><head></head><body><p>Issue {index}</p></body></html>",
            text="x",
        )
    return dates


def test_the_front_page_is_the_latest_issue_with_its_neighbours(
    settings: Settings, client: TestClient
) -> None:
    with Store.open(settings.database_url) as store:
        dates = publish(store, 3)
    front = client.get("/")
    assert front.status_code == 200
    assert "<p>Issue 2</p>" in front.text
    assert f'href="/issues/{dates[1].isoformat()}" rel="prev"' in front.text
    assert 'href="/subscribe"' in front.text
    assert 'rel="alternate" type="application/atom+xml"' in front.text
    middle = client.get(f"/issues/{dates[1].isoformat()}").text
    assert f'href="/issues/{dates[0].isoformat()}" rel="prev"' in middle
    assert f'href="/issues/{dates[2].isoformat()}" rel="next"' in middle


def test_the_archive_pages_through_every_issue_newest_first(
    settings: Settings, client: TestClient
) -> None:
    with Store.open(settings.database_url) as store:
        dates = publish(store, PER_PAGE + 2)
    first = client.get("/issues")
    listed = re.findall(r'<li><a href="/issues/([0-9-]+)">', first.text)
    assert listed[0] == dates[-1].isoformat()
    assert len(listed) == PER_PAGE
    assert "Story number" in first.text
    assert 'href="/issues?page=2" rel="next"' in first.text
    second = client.get("/issues?page=2")
    # The issue the links fixture sent is among them too, oldest.
    assert re.findall(r'<li><a href="/issues/([0-9-]+)">', second.text) == [
        date.isoformat() for date in (dates[1], dates[0], DAY)
    ]
    assert client.get("/issues?page=3").status_code == 404
    assert client.get("/issues?page=x").status_code == 404


def test_the_feed_lists_the_issues_as_atom(settings: Settings, client: TestClient) -> None:
    with Store.open(settings.database_url) as store:
        dates = publish(store, 2)
    answer = client.get("/feed.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = ElementTree.fromstring(answer.content)
    atom = "{http://www.w3.org/2005/Atom}"
    entries = feed.findall(f"{atom}entry")
    assert [e.findtext(f"{atom}id") for e in entries][:2] == [
        f"https://news.example.org/issues/{date.isoformat()}" for date in reversed(dates)
    ]
    assert entries[0].findtext(f"{atom}summary") == "What happened on day 1"
    assert feed.findtext(f"{atom}updated", "").endswith("Z")


def test_without_an_issue_the_front_page_says_so(project: Path, database_url: str) -> None:
    settings = load_settings(database_url=database_url, secret_key=KEY)
    with Store.open(settings.database_url) as store, TestClient(create_app(settings, store)) as c:
        front = c.get("/")
        assert front.status_code == 200
        assert "No issue has gone out yet." in front.text
        assert c.get("/feed.xml").status_code == 404  # no public URL: no absolute links


def test_a_related_story_that_led_an_earlier_issue_links_to_its_page(
    settings: Settings, links: dict[str, str], client: TestClient
) -> None:
    with Store.open(settings.database_url) as store:
        sent = store.issues.get(DAY)
        assert sent is not None
        earlier_lead = sent.articles[0]
        later = Issue(
            date=DAY + dt.timedelta(days=1),
            articles=(
                Article(
                    source="seeds/later.txt",
                    id="later",
                    title="A later story",
                    standfirst="It follows up.",
                    paragraphs=("More happened.",),
                    related=(
                        RelatedStory(
                            title=earlier_lead.title, kicker=None, summary="What came before"
                        ),
                        RelatedStory(title="Never a lead", kicker=None, summary="Only related"),
                    ),
                ),
            ),
        )
        rendered = pipeline.rendering(settings, store, later)
    page = lxml.html.document_fromstring(rendered.html)
    cards = {
        card.text_content().strip(): card.find(".//a") for card in page.find_class("related-title")
    }
    linked = cards[smarten(earlier_lead.title)]
    assert linked is not None
    href = str(linked.get("href"))
    assert href.startswith(f"https://news.example.org/issues/{DAY.isoformat()}/")
    assert cards["Never a lead"] is None
    assert client.get(href.removeprefix("https://news.example.org")).status_code == 200


@pytest.mark.parametrize(
    ("block", "title"),
    [
        ("Archive · The Digest", "Archive · The Digest"),
        # Too long with the name: the headline alone.
        (
            "Council approves new cycle lanes for the whole of the city · The Digest",
            "Council approves new cycle lanes for the whole of the city",
        ),
        # Too long alone: cut at a word, with an ellipsis, counted as written.
        (
            "Web developers warn of &lt;script&gt;alert(“x”)&lt;/script&gt; injection · The Digest",
            "Web developers warn of &lt;script&gt;alert(“x”)&lt;/script&gt;…",
        ),
    ],
)
def test_a_page_title_stays_under_seventy_characters(block: str, title: str) -> None:
    assert page_title(block) == title
    assert len(page_title(block)) <= MAX_TITLE


@given(payload=st.binary(max_size=200))
@hypothesis_settings(max_examples=100, deadline=None)
def test_tokens_are_signed_exactly_as_itsdangerous_signs_them(payload: bytes) -> None:
    """Links already in inboxes were signed by itsdangerous's own Signer: the faster signer
    must make and accept the same signatures."""
    theirs = Signer(KEY, salt="digest.preferences")
    ours = _OnceDerivedSigner(KEY, salt="digest.preferences")
    assert ours.sign(payload) == theirs.sign(payload)
    assert ours.unsign(theirs.sign(payload)) == payload
