"""Whatever text or bytes a scrape produces, the loader returns an article or a SeedError."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.content.loader import SeedFormat, article_id, decode_seed, parse_article
from digest.errors import SeedError

from .conftest import SEED

# Lines built from the pieces seeds are made of, so the structure is exercised, not just noise.
PIECES = st.sampled_from(
    [
        "-",
        "",
        "Subscribe to The Week",
        "Sign up for The Week's Free Newsletters",
        "By The Week UK Published",
        "By Jane Roe and John Doe, The Week US Published 14 March 2025",
        "Talking Point Isis has carried out almost 700 attacks",
        "Review of the year",
        "<script>alert(1)</script> & friends",
        "\ufeff",
        "\r",
    ]
)
LINES = st.lists(st.one_of(PIECES, st.text(max_size=80)), max_size=30)
FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check(article_text: str, seed_format: SeedFormat) -> None:
    try:
        article = parse_article(article_text, source="prop.txt", seed_format=seed_format)
    except SeedError as exc:
        assert exc.source == "prop.txt"
        assert exc.reason
        return
    assert article.title
    assert article.id == article_id(article.title)
    texts = [article.title, article.standfirst, *article.paragraphs]
    texts += [
        text for story in article.related for text in (story.title, story.summary, *story.authors)
    ]
    for text in texts:
        assert text == text.strip()
        assert not any(char in text for char in "\r\n\x00\ufeff")
    for text in [*article.paragraphs, *(story.title for story in article.related)]:
        assert text
        assert not seed_format.boilerplate.matches(text)
    assert all(a != b for a, b in itertools.pairwise(article.paragraphs))


@FAST
@given(text=st.text())
def test_any_text(text: str, seed_format: SeedFormat) -> None:
    check(text, seed_format)


@FAST
@given(lines=LINES, newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_arrangement_of_seed_like_lines(
    lines: list[str], newline: str, seed_format: SeedFormat
) -> None:
    check(newline.join(lines), seed_format)


@FAST
@given(data=st.binary(max_size=2000))
def test_any_bytes(data: bytes, seed_format: SeedFormat) -> None:
    try:
        text = decode_seed(data, "prop.txt")
    except SeedError as exc:
        assert exc.source == "prop.txt"
        return
    check(text, seed_format)


@FAST
@given(cut=st.integers(min_value=0, max_value=len(SEED.read_bytes())))
def test_any_truncation_of_the_real_seed(cut: int, seed_format: SeedFormat) -> None:
    data = SEED.read_bytes()[:cut]
    try:
        text = decode_seed(data, "seed.txt")
    except SeedError as exc:
        # Cutting inside a multi-byte character is the one way a prefix of UTF-8 goes bad.
        assert "not valid UTF-8" in exc.reason
        return
    check(text, seed_format)
