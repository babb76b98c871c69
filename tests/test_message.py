"""The MIME message: structure, headers and tokens, parsed back as a client would."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
import subprocess
from collections.abc import Callable
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import dkim
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from digest.audience.subscribers import normalise_address
from digest.audience.tokens import read_unsubscribe_token, unsubscribe_token
from digest.content.loader import SeedFormat, decode_seed, parse_article
from digest.content.picker import pick
from digest.email.dkim import DkimKey
from digest.email.message import (
    MessageTemplate,
    build_message,
    preferences_link,
    recipient,
    unsubscribe_links,
)
from digest.email.render import Personal, Renderer, personalise
from digest.errors import DigestError, MessageError
from digest.models import PickLimits, RenderedIssue, Subscriber
from digest.options import list_naming, message_options, render_options
from digest.settings import Settings

from .conftest import SEED

NOW = dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC)
KEY = "test-secret-key-of-at-least-32-characters"


def settings(**values: object) -> Settings:
    defaults: dict[str, object] = {
        "from_address": "digest@news.example.org",
        "public_url": "https://news.example.org",
    }
    return Settings(_env_file=None, **(defaults | values))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rendered(seed_format: SeedFormat) -> RenderedIssue:
    article = parse_article(
        decode_seed(SEED.read_bytes(), "seed"), source="seed", seed_format=seed_format
    )
    issue = pick([article], today=NOW.date(), already_featured=set(), limits=PickLimits())
    return Renderer().render(issue, render_options(settings()))


def wire(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_structure_text_first_then_html_no_defects(rendered: RenderedIssue) -> None:
    message = wire(
        build_message(
            rendered,
            Subscriber(id=7, email="ann@example.org", name="Ann"),
            message_options(settings()),
            secret_key=KEY,
            now=NOW,
        )
    )

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert message.defects == []
    assert all(part.defects == [] for part in message.walk())


def test_no_line_over_998_octets(rendered: RenderedIssue) -> None:
    data = build_message(
        rendered,
        Subscriber(id=7, email="ann@example.org"),
        message_options(settings()),
        secret_key=KEY,
        now=NOW,
    )

    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_header_lines_are_folded_at_78_except_a_lone_url(rendered: RenderedIssue) -> None:
    long_name = "Annabel Theodora Example-Smythe of the Northern Regional Office, Editorial"
    data = build_message(
        rendered,
        Subscriber(id=7, email="annabel.example-smythe@example.org", name=long_name),
        message_options(settings()),
        secret_key=KEY,
        now=NOW,
    )
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")

    long_lines = [line for line in head if len(line) > 78]
    # Only an unbreakable URL, alone on its line after folding, may be longer.
    assert all(re.fullmatch(rb"(List-Unsubscribe:)? <[^ ]+>,?", line) for line in long_lines)
    message = wire(data)
    assert message["To"].addresses[0].display_name == long_name
    https, mailto = str(message["List-Unsubscribe"]).split(", ")
    assert https.startswith("<https://")
    assert mailto.startswith("<mailto:")


def test_headers(rendered: RenderedIssue) -> None:
    message = wire(
        build_message(
            rendered,
            Subscriber(id=7, email="ann@example.org", name="Ann Example"),
            message_options(settings()),
            secret_key=KEY,
            now=NOW,
        )
    )

    assert message["From"] == "The Digest <digest@news.example.org>"
    assert message["To"] == "Ann Example <ann@example.org>"
    assert message["Subject"] == rendered.subject
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["Message-ID"].endswith("@news.example.org>")
    assert message["List-Id"] == "The Digest <the-digest.news.example.org>"
    token = unsubscribe_token(
        KEY, subscriber_id=7, list_id="the-digest.news.example.org", email="ann@example.org"
    )
    assert message["List-Unsubscribe"] == (
        f"<https://news.example.org/unsubscribe/{token}>, <mailto:digest@news.example.org?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_subscribers_own_link_is_in_both_parts(rendered: RenderedIssue) -> None:
    subscriber = Subscriber(id=42, email="bo@example.org")
    https, _ = unsubscribe_links(message_options(settings()), subscriber, secret_key=KEY)
    message = wire(
        build_message(rendered, subscriber, message_options(settings()), secret_key=KEY, now=NOW)
    )
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None

    assert https is not None
    assert https in text.get_content()
    assert https in html.get_content()
    assert "bo@example.org" in text.get_content()


def test_non_ascii_names_are_encoded(rendered: RenderedIssue) -> None:
    raw = build_message(
        rendered,
        Subscriber(id=1, email="zoe@example.org", name="Zoë Brontë"),
        message_options(settings(from_name="Rédaction")),
        secret_key=KEY,
        now=NOW,
    )
    headers = raw.split(b"\r\n\r\n", 1)[0]

    assert headers.isascii()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["To"] == "Zoë Brontë <zoe@example.org>"
    assert parsed["From"] == "Rédaction <digest@news.example.org>"


def test_without_a_public_url_only_mailto(rendered: RenderedIssue) -> None:
    message = wire(
        build_message(
            rendered,
            Subscriber(id=1, email="a@example.org"),
            message_options(settings(public_url=None)),
            secret_key=KEY,
            now=NOW,
        )
    )

    assert message["List-Unsubscribe"] == "<mailto:digest@news.example.org?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in message


def test_test_copies_say_so(rendered: RenderedIssue) -> None:
    message = wire(
        build_message(
            rendered,
            Subscriber(id=1, email="a@example.org"),
            message_options(settings()),
            secret_key=KEY,
            now=NOW,
            test=True,
        )
    )

    assert message["Subject"].startswith("[TEST] ")


@pytest.mark.parametrize(
    ("subscriber", "message"),
    [
        (
            Subscriber(id=1, email="a@example.org", name="Eve\r\nBcc: victim@example.org"),
            "contains a line break",
        ),
        (Subscriber(id=1, email="a@example.org\nBcc: x@example.org"), "contains a line break"),
        (Subscriber(id=1, email="not-an-address"), "is not an email address"),
        (Subscriber(id=1, email="a@example.org", name="Eve\x00"), "control character"),
        (Subscriber(id=1, email="a@example.org", name="Eve\u2028Bcc"), "line break"),
    ],
)
def test_line_breaks_from_data_never_become_headers(
    rendered: RenderedIssue, subscriber: Subscriber, message: str
) -> None:
    with pytest.raises(MessageError, match=message) as caught:
        build_message(rendered, subscriber, message_options(settings()), secret_key=KEY, now=NOW)

    assert isinstance(caught.value, DigestError)


def test_tokens_round_trip_and_resist_forgery() -> None:
    token = unsubscribe_token(
        KEY, subscriber_id=42, list_id="the-digest.news.example.org", email="Ann@Example.org"
    )

    read = read_unsubscribe_token(KEY, token)
    assert read is not None
    assert (read.subscriber_id, read.list_id) == (42, "the-digest.news.example.org")
    assert read.is_for(KEY, "ann@example.org")
    assert not read.is_for(KEY, "someone.else@example.org")
    assert not read.is_for("another-key-of-at-least-32-characters", "ann@example.org")
    assert read_unsubscribe_token("another-key-of-at-least-32-characters", token) is None
    assert (
        read_unsubscribe_token(KEY, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
        is None
    )
    assert read_unsubscribe_token(KEY, "garbage") is None
    assert "@" not in token
    assert "ann" not in base64.urlsafe_b64decode(token.split(".")[0] + "==").decode().casefold()


def test_list_id_quotes_a_name_with_specials(rendered: RenderedIssue) -> None:
    message = wire(
        build_message(
            rendered,
            Subscriber(id=1, email="a@example.org"),
            message_options(settings(newsletter_name="News, Daily")),
            secret_key=KEY,
            now=NOW,
        )
    )

    assert message["List-Id"] == '"News, Daily" <news-daily.news.example.org>'


def test_list_id_is_derived_from_name_and_domain() -> None:
    assert (
        list_naming(settings(newsletter_name="Morning Brief!")).derived
        == "morning-brief.news.example.org"
    )


def test_each_copy_decodes_to_exactly_the_personalised_parts(rendered: RenderedIssue) -> None:
    template = MessageTemplate.build(rendered, message_options(settings()), secret_key=KEY, now=NOW)
    for subscriber in (
        Subscriber(id=1, email="a@example.org"),
        Subscriber(id=2, email="b@example.org", name=("Bé " + "long name " * 30).strip()),
        Subscriber(id=3, email="c@example.org", name='Quote "Me", & <you>'),
    ):
        data = template.render(subscriber)
        message = wire(data)
        https, mailto = unsubscribe_links(message_options(settings()), subscriber, secret_key=KEY)
        preferences = preferences_link(message_options(settings()), subscriber, secret_key=KEY)
        personal = Personal(
            unsubscribe_url=https or mailto,
            recipient=recipient(subscriber),
            preferences_url=preferences or "",
        )
        assert personal == template.personal(subscriber)
        html, text = personalise(rendered, personal)
        text_part = message.get_body(("plain",))
        html_part = message.get_body(("html",))
        assert text_part is not None
        assert html_part is not None

        assert text_part.get_content().replace("\r\n", "\n") == text
        assert html_part.get_content().replace("\r\n", "\n") == html
        assert message.defects == []
        assert all(part.defects == [] for part in message.walk())
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
        assert max(len(line) for line in body_lines) <= 76
        assert message["To"].addresses[0].display_name == (subscriber.name or "")


def test_two_copies_differ_only_in_what_is_personal(rendered: RenderedIssue) -> None:
    template = MessageTemplate.build(rendered, message_options(settings()), secret_key=KEY, now=NOW)
    first = wire(template.render(Subscriber(id=1, email="a@example.org")))
    second = wire(template.render(Subscriber(id=2, email="b@example.org")))

    assert first["Message-ID"] != second["Message-ID"]
    assert first["List-Unsubscribe"] != second["List-Unsubscribe"]
    for header in ("From", "Subject", "Date", "List-Id", "List-Unsubscribe-Post"):
        assert first[header] == second[header]


def test_dkim_signs_both_list_unsubscribe_headers_and_verifies(
    rendered: RenderedIssue, tmp_path: Path
) -> None:
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signer = DkimKey(selector="digest", domain="news.example.org", private_key=key.read_bytes())
    template = MessageTemplate.build(
        rendered, message_options(settings()), secret_key=KEY, now=NOW, dkim=signer
    )

    data = template.render(Subscriber(id=5, email="ann@example.org"))

    assert data.startswith(b"DKIM-Signature:")
    signature = wire(data)["DKIM-Signature"]
    signed = signature.split("h=")[1].split(";")[0].replace(" ", "").lower().split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "to", "subject"} <= set(signed)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"digest._domainkey.news.example.org."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"unsubscribe/", b"unsubscribe/x"), dnsfunc=dns)
    # Signed, the copy is still in wire form: the signature's lines fold with white space.
    raw = bytes(data)
    assert raw.count(b"\r") == raw.count(b"\r\n") == raw.count(b"\n")
    assert b"\r\n." not in raw


# Header values built from data, read back by the strictest parser there is.

_SPECIALS = [
    *' ,;:"()<>[]\\.@=?_-',
    "=?",
    "?=",
    "=?utf-8?q?x?=",
    "é",
    "€",
    "😀",
]
# Whatever the builder takes: no controls, surrogates or line separators. Format
# characters (joiners, a soft hyphen, a bidi override) and other spaces are text.
_SENDABLE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")) | st.sampled_from(
    ["\u200d", "\ufe0f", "\u00ad", "\u200b", "\u202e", "\u00a0"]
)
# What the settings take for newsletter_name and from_name: printable text.
_PRINTABLE = st.characters(blacklist_categories=("C", "Zl", "Zp", "Zs")) | st.just(" ")


def _texts(characters: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pieces = st.sampled_from(_SPECIALS) | characters
    return st.lists(pieces, min_size=1, max_size=300).map(lambda parts: "".join(parts)[:300])


def strict(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.strict).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


def mailbox(header: Any) -> tuple[str, str]:
    """The one display name and address of an address header, which must have no defects."""
    assert header.defects == ()
    [address] = header.addresses
    return address.display_name, address.addr_spec


def list_id_parts(message: EmailMessage) -> tuple[str, str]:
    """List-Id's phrase, read as a display name is (RFC 2919 borrows its syntax), and its id."""
    assert message["List-Id"].defects == ()
    [raw] = [value for field, value in message.raw_items() if field == "List-Id"]
    phrase, _, ident = f" {raw}".replace("\r\n", "").rpartition(" <")
    if not phrase:
        return "", ident.removesuffix(">")
    display_name, _ = mailbox(policy.strict.header_factory("From", f"{phrase} <a@example.org>"))
    return display_name, ident.removesuffix(">")


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.fixture(scope="module")
def template(rendered: RenderedIssue) -> MessageTemplate:
    return MessageTemplate.build(rendered, message_options(settings()), secret_key=KEY, now=NOW)


@pytest.fixture(scope="module")
def copy_for(template: MessageTemplate) -> Callable[[Subscriber], bytes]:
    # A function, so that a failing example is reported without the whole issue.
    return lambda subscriber: template.render(subscriber)


@pytest.fixture(scope="module")
def copy_of(rendered: RenderedIssue) -> Callable[[str, Settings], bytes]:
    """A copy of the issue under another subject, with other settings."""

    def build(subject: str, configured: Settings) -> bytes:
        issue = replace(rendered, subject=subject)
        template = MessageTemplate.build(
            issue, message_options(configured), secret_key=KEY, now=NOW
        )
        return template.render(Subscriber(id=1, email="ann@example.org"))

    return build


@examples(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_texts(_SENDABLE))
def test_any_subscriber_name_round_trips_in_to(
    copy_for: Callable[[Subscriber], bytes], name: str
) -> None:
    data = copy_for(Subscriber(id=1, email="ann@example.org", name=name))

    # A display name is shown with its white space collapsed, as the subscriber rule keeps it.
    assert mailbox(strict(data)["To"]) == (" ".join(name.split()), "ann@example.org")
    assert max(len(line) for line in head_lines(data)) <= 998


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_texts(_PRINTABLE), subject=_texts(_SENDABLE))
def test_from_list_id_and_subject_round_trip(
    copy_of: Callable[[str, Settings], bytes], name: str, subject: str
) -> None:
    configured = settings(newsletter_name=name)
    data = copy_of(subject, configured)
    message = strict(data)

    shown = " ".join(name.split())
    assert mailbox(message["From"]) == (shown, "digest@news.example.org")
    assert list_id_parts(message) == (shown, list_naming(configured).derived)
    assert message["Subject"].defects == ()
    assert str(message["Subject"]) == subject
    assert max(len(line) for line in head_lines(data)) <= 998


@pytest.mark.parametrize(
    "name",
    [
        "x",
        # Folded right after "To:" by the email package, which made "To: To: ...".
        "é" * 17,
        # Lost its quotes when folded, and came back as two addresses.
        "Smith, John (the Northern Regional Office of the Editorial Board) Example",
        'Quote "Me", \\ back\\slash = equals',
        "=?utf-8?q?Eve?=",
        "Zoë Brontë",
        "Éléonore Bérénice-Amélie Rosemonde Dûbois-Bénard, Rédaction (Zürich)",
        "👩\u200d👩\u200d👧\u200d👦 Family",
        "Soft\u00adhyphen and zero\u200bwidth",
        ("Bé " + "long name " * 30).strip(),
    ],
)
def test_names_round_trip_in_lines_of_78(template: MessageTemplate, name: str) -> None:
    data = template.render(Subscriber(id=1, email="ann@example.org", name=name))

    assert mailbox(strict(data)["To"]) == (name, "ann@example.org")
    long_lines = [line for line in head_lines(data) if len(line) > 78]
    assert all(re.fullmatch(rb"(List-Unsubscribe:)? <[^ ]+>,?", line) for line in long_lines)


def test_an_unbreakable_name_makes_a_long_line_but_never_over_998(
    template: MessageTemplate,
) -> None:
    for name in ("A" * 300, "é" * 300, "😀" * 150):
        data = template.render(Subscriber(id=1, email="ann@example.org", name=name))

        assert mailbox(strict(data)["To"]) == (name, "ann@example.org")
        assert max(len(line) for line in head_lines(data)) <= 998


def test_a_name_too_long_for_one_line_is_cut_into_encoded_words(
    template: MessageTemplate,
) -> None:
    name = "😀" * 300
    data = template.render(Subscriber(id=1, email="ann@example.org", name=name))

    assert max(len(line) for line in head_lines(data)) <= 998
    display_name, _ = mailbox(strict(data)["To"])
    # RFC 2047 readers join the words again; Python's parser (CPython issue 128110)
    # puts a space between them.
    assert display_name.replace(" ", "") == name


@pytest.mark.parametrize(
    "name",
    [
        "é" * 17,
        "Smith, John (the Northern Regional Office of the Editorial Board) Example",
        'Quote "Me", \\ back\\slash = equals',
        "=?utf-8?q?Eve?=",
    ],
)
def test_from_and_list_id_names_round_trip(rendered: RenderedIssue, name: str) -> None:
    for configured in (settings(newsletter_name=name), settings(from_name=name)):
        data = MessageTemplate.build(
            rendered, message_options(configured), secret_key=KEY, now=NOW
        ).render(Subscriber(id=1, email="ann@example.org"))
        message = strict(data)

        assert mailbox(message["From"]) == (name, "digest@news.example.org")
        assert list_id_parts(message) == (
            configured.newsletter_name,
            list_naming(configured).derived,
        )
        long_lines = [line for line in head_lines(data) if len(line) > 78]
        # Only an unbreakable URL or list id, alone on its line, may be longer.
        assert all(re.fullmatch(rb"(List-Unsubscribe:)? <[^ ]+>,?", line) for line in long_lines)


@pytest.mark.parametrize("subject", ["=?utf-8?q?x?= looks encoded", "  Leading spaces", "a  b"])
def test_subjects_round_trip(rendered: RenderedIssue, subject: str) -> None:
    message = strict(
        MessageTemplate.build(
            replace(rendered, subject=subject), message_options(settings()), secret_key=KEY, now=NOW
        ).render(Subscriber(id=1, email="ann@example.org"))
    )

    assert message["Subject"].defects == ()
    assert str(message["Subject"]) == subject


def address_of_length(length: int) -> str:
    """A valid address of exactly ``length`` characters: the local part grows, then the domain."""
    if length < 13:
        return "a" * (length - 5) + "@b.io"
    local = min(64, length - 12)
    if length - 1 - local - len("example.org") == 1:  # a label cannot be empty
        local -= 1
    labels, left = [], length - 1 - local - len("example.org")
    while left:
        size = min(63, left - 1)
        if left - size - 1 == 1:
            size -= 1
        labels.append("d" * size + ".")
        left -= size + 1
    return "r" * local + "@" + "".join(labels) + "example.org"


def test_quoted_printable_lines_stay_within_76_whatever_the_personal_values(
    template: MessageTemplate,
) -> None:
    subscribers = []
    for length in range(6, 255):
        address = address_of_length(length)
        assert len(address) == length
        assert normalise_address(address) == address
        subscribers.append(Subscriber(id=length, email=address))
    for text in ("n" * 300, "é" * 300, "Bo & Zoë <x> " * 30):
        subscribers += [
            Subscriber(id=n, email="ann@example.org", name=text[:n]) for n in range(1, 301)
        ]

    for subscriber in subscribers:
        data = template.render(subscriber)
        body = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
        assert max(len(line) for line in body) <= 76, subscriber
        message = wire(data)
        text_part = message.get_body(("plain",))
        html_part = message.get_body(("html",))
        assert text_part is not None
        assert html_part is not None
        assert recipient(subscriber) in text_part.get_content()
        assert html.escape(recipient(subscriber), quote=True) in html_part.get_content()


@pytest.mark.parametrize("ending", [" ", "  ", "\t", "é "])
@pytest.mark.parametrize("width", [72, 73, 74, 75, 76])
def test_a_line_ending_in_white_space_stays_within_76_when_quoted(
    rendered: RenderedIssue, ending: str, width: int
) -> None:
    # Custom templates may leave white space at a line's end, which quoted-printable
    # writes as "=20": b2a_qp alone lets such a line reach 77 or 78.
    line = "x" * width + ending
    issue = replace(rendered, text=f"{line}\n{line}", html=f"<p>{line}</p>\n{rendered.html}")
    template = MessageTemplate.build(issue, message_options(settings()), secret_key=KEY, now=NOW)

    data = template.render(Subscriber(id=1, email="ann@example.org"))

    body = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(body_line) for body_line in body) <= 76
    text_part = wire(data).get_body(("plain",))
    assert text_part is not None
    assert text_part.get_content().replace("\r\n", "\n").startswith(f"{line}\n{line}")
