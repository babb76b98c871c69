"""The loader, rule by rule, on the real seed and on one fixture per format variation."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from digest.content.boilerplate import Boilerplate
from digest.content.loader import (
    SeedFormat,
    article_id,
    decode_seed,
    load_paths,
    parse_article,
    parse_byline,
    parse_date,
)
from digest.errors import SeedError
from digest.models import Article, LoadFailure, RelatedStory

from .conftest import FIXTURES, SEED

SEED_BOILERPLATE = [
    "Subscribe to The Week",
    "Escape your echo chamber",
    "Sign up for",
    "delivered directly to your inbox",
    "A free daily email",
]


def load_fixture(name: str, seed_format: SeedFormat) -> Article:
    path = FIXTURES / name
    return parse_article(decode_seed(path.read_bytes(), name), source=name, seed_format=seed_format)


def test_the_seed_has_eleven_paragraphs_and_eight_related_stories(seed_format: SeedFormat) -> None:
    article = parse_article(
        SEED.read_text(encoding="utf-8"), source="seed.txt", seed_format=seed_format
    )

    assert article.title == "Bashar al-Assad 'informed' on US-led airstrikes against IS"
    assert article.standfirst.startswith("Syrian President says regime has no plans")
    assert len(article.paragraphs) == 11
    assert article.paragraphs[0].startswith("Syrian President Bashar al-Assad has revealed")
    assert article.paragraphs[-1].startswith('"His end has been predicted')
    assert len(article.related) == 8
    everything = " ".join([article.title, article.standfirst, *article.paragraphs])
    everything += " ".join(f"{s.title} {s.summary}" for s in article.related)
    for promotion in SEED_BOILERPLATE:
        assert promotion not in everything


def test_the_seeds_related_stories_are_parsed_field_by_field(seed_format: SeedFormat) -> None:
    article = parse_article(
        SEED.read_text(encoding="utf-8"), source="seed.txt", seed_format=seed_format
    )

    assert article.related[0] == RelatedStory(
        title="The challenge facing Syria's Alawites",
        kicker="Under The Radar",
        summary="Minority sect that was favoured under Assad now fears for its future",
        authors=("Chas Newkey-Burden",),
        publisher="The Week UK",
        published=None,
    )
    assert article.related[1].authors == ()
    assert article.related[1].publisher == "The Week UK"
    # "Multi-billion-dollar drug network ..." starts with no known label.
    assert article.related[6].kicker is None
    assert (
        article.related[6].summary
        == "Multi-billion-dollar drug network sustained former Syrian regime"
    )
    assert [story.kicker for story in article.related] == [
        "Under The Radar",
        "Talking Point",
        "The Explainer",
        "Speed Read",
        "The Explainer",
        "Talking Point",
        None,
        "The Explainer",
    ]


def test_no_related_section(seed_format: SeedFormat) -> None:
    article = load_fixture("no_related.txt", seed_format)

    assert article.related == ()
    assert article.paragraphs == (
        "The council voted on Tuesday to build three new cycle lanes.",
        "Shopkeepers said they feared losing passing trade.",
        "Commuters welcomed the plan.",
    )


def test_several_authors_are_split(seed_format: SeedFormat) -> None:
    article = load_fixture("several_authors.txt", seed_format)

    assert article.related[0].authors == ("Harriet Marsden", "Richard Windsor")
    assert article.related[0].publisher == "The Week US"
    assert article.related[0].kicker == "In Depth"
    assert article.related[1].authors == ("Anna Bell", "Tom Price", "Ruth Adeyemi")
    assert article.related[1].kicker == "Instant Opinion"


def test_dated_bylines_are_parsed_and_unreadable_dates_left_out(seed_format: SeedFormat) -> None:
    article = load_fixture("dated_byline.txt", seed_format)

    assert [story.published for story in article.related] == [
        dt.date(2025, 3, 14),
        dt.date(2024, 3, 2),
        None,
    ]
    assert article.related[2].publisher == "The Week UK"
    assert article.related[2].summary == "Something happened on a day nobody wrote down properly"


def test_missing_byline(seed_format: SeedFormat) -> None:
    article = load_fixture("missing_byline.txt", seed_format)

    first, second = article.related
    assert first.summary == "Forecasters pick names from a list agreed in advance"
    assert (first.authors, first.publisher, first.published) == ((), None, None)
    assert second.publisher == "The Week UK"


def test_unknown_labels_and_lowercase_continuations_are_not_kickers(
    seed_format: SeedFormat,
) -> None:
    article = load_fixture("unknown_label.txt", seed_format)

    unknown, lowercase, review = article.related
    assert unknown.kicker is None
    assert unknown.summary == "Cinema Corner A season of big releases and small surprises"
    assert lowercase.kicker is None
    assert lowercase.summary == "Review of a year that brought audiences back to the cinema"
    assert review.kicker == "Review"
    assert review.summary == "The documentary nobody expected to sell out"


def test_kickers_match_case_insensitively_and_come_out_as_configured() -> None:
    seed_format = SeedFormat(boilerplate=Boilerplate.none(), kickers=("Under The Radar", "Opinion"))

    assert seed_format.split_kicker("under the radar A quiet story") == (
        "Under The Radar",
        "A quiet story",
    )
    assert seed_format.split_kicker("Instant Opinion Something") == (
        None,
        "Instant Opinion Something",
    )


def test_crlf_and_bom(seed_format: SeedFormat) -> None:
    article = load_fixture("crlf_bom.txt", seed_format)

    assert article.title == "Election called for December"
    assert article.paragraphs == (
        "The announcement came after a cabinet meeting.",
        "Polls suggest a close race.",
    )
    assert article.related[0].kicker == "Talking Point"
    assert all(
        "\r" not in text and "\ufeff" not in text for text in (article.title, *article.paragraphs)
    )


def test_boilerplate_in_other_places_and_other_words(seed_format: SeedFormat) -> None:
    article = load_fixture("boilerplate_elsewhere.txt", seed_format)

    assert article.paragraphs == (
        "The survey used sonar from a fleet of research ships.",
        "The maps will be shared with fishing authorities.",
        # Mentions newsletters and an inbox, but is reporting, not a promotion.
        "Researchers said newsletters sent to the team's inbox every morning kept the project on track.",
    )
    assert article.related == (
        RelatedStory(
            title="Life at the bottom of the sea",
            kicker="Feature",
            summary="Strange creatures found in the new survey",
            publisher="The Week UK",
        ),
    )


def test_markup_like_text_survives_as_text(seed_format: SeedFormat) -> None:
    article = load_fixture("markup.txt", seed_format)

    assert article.title == 'Web developers warn of <script>alert("x")</script> injection'
    assert (
        article.standfirst
        == "Bugs & fixes: why <b>markup</b> in text is not markup &amp; never will be"
    )
    assert article.paragraphs == (
        'A paragraph with <a href="javascript:alert(1)">a link</a> & an ampersand.',
    )
    story = article.related[0]
    assert story.title == "Tom & Jerry <i>returns</i>"
    assert story.summary == 'Cartoon "classics" & their <em>heirs</em>'
    assert story.authors == ("A", "B")


def test_a_byline_in_the_lead_dates_the_article(seed_format: SeedFormat) -> None:
    article = load_fixture("lead_byline.txt", seed_format)

    assert article.published == dt.date(2026, 11, 3)
    assert article.paragraphs == ("Work on the harbour wall took two years.",)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.txt", "empty file"),
        ("blank_lines.txt", "empty file"),
        ("not_utf8.txt", "not valid UTF-8 (byte 0xe9 at offset 24)"),
        ("binary.txt", "binary data (NUL bytes): not a text file"),
        ("no_headline.txt", "no headline: the file starts with the related-stories separator '-'"),
        ("only_boilerplate.txt", "no headline: the file starts with site boilerplate"),
    ],
)
def test_bad_files_are_errors_that_name_the_file(
    name: str, reason: str, seed_format: SeedFormat
) -> None:
    with pytest.raises(SeedError) as caught:
        load_fixture(name, seed_format)

    assert caught.value.reason == reason
    assert str(caught.value) == f"{name}: {reason}"


def test_an_overlong_first_line_is_not_a_headline(seed_format: SeedFormat) -> None:
    with pytest.raises(SeedError, match="first line is 400 characters long"):
        parse_article("x" * 400, source="blob.txt", seed_format=seed_format)


def test_the_id_is_stable_and_ignores_case_and_punctuation() -> None:
    assert article_id("Why Assad fell so fast") == article_id("  why assad fell — so fast? ")
    assert article_id("Why Assad fell so fast") == article_id("Why Assad Fell So Fast")
    assert article_id("Why Assad fell so fast") != article_id("Why Assad fell so slowly")
    assert article_id("Why Assad fell so fast") == "a456178aa8b96c24"


def test_blank_lines_spaces_and_control_characters_are_tidied(seed_format: SeedFormat) -> None:
    text = "\n\n  Headline\twith  tab \n\nStand\x07first\n\n Body\u00a0one \n\x00\n-\n\n-\nTitle\n"
    article = parse_article(text, source="messy.txt", seed_format=seed_format)

    assert article.title == "Headline with tab"
    assert article.standfirst == "Standfirst"
    assert article.paragraphs == ("Body one",)
    assert [story.title for story in article.related] == ["Title"]
    assert article.related[0].summary == ""


def test_a_byline_without_published_ends_a_story_block(seed_format: SeedFormat) -> None:
    text = "Headline\nStandfirst\n-\nTitle\nBriefing A summary\nBy Jane Roe\n-\nTitle two\nBy the numbers\n"
    article = parse_article(text, source="x.txt", seed_format=seed_format)

    assert article.related[0].authors == ("Jane Roe",)
    assert article.related[0].summary == "A summary"
    # A lone second line is the summary unless it carries "Published".
    assert article.related[1].summary == "By the numbers"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14 March 2025", dt.date(2025, 3, 14)),
        ("1st Sept 2024", dt.date(2024, 9, 1)),
        ("March 14, 2025", dt.date(2025, 3, 14)),
        ("Friday, 14 March 2025 at 10:30 GMT", dt.date(2025, 3, 14)),
        ("2025-03-14", dt.date(2025, 3, 14)),
        ("31 February 2025", None),
        ("14 Brumaire 2025", None),
        ("yesterday", None),
    ],
)
def test_parse_date(text: str, expected: dt.date | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "By Chas Newkey-Burden, The Week UK Published",
            (("Chas Newkey-Burden",), "The Week UK", None),
        ),
        ("By The Week UK Published", ((), "The Week UK", None)),
        (
            "By Harriet Marsden and Richard Windsor, The Week US Published",
            (("Harriet Marsden", "Richard Windsor"), "The Week US", None),
        ),
        ("By Jane Roe Published 14 March 2025", (("Jane Roe",), None, dt.date(2025, 3, 14))),
        ("By Jane Roe, Other Paper Published", (("Jane Roe",), "Other Paper", None)),
        ("Published 14 March 2025", None),
        ("Bystanders Published nothing", None),
    ],
)
def test_parse_byline(
    line: str,
    expected: tuple[tuple[str, ...], str | None, dt.date | None] | None,
    seed_format: SeedFormat,
) -> None:
    assert parse_byline(line, seed_format) == expected


def test_load_paths_keeps_the_good_files_and_reports_the_bad(
    tmp_path: Path, seed_format: SeedFormat
) -> None:
    (tmp_path / "good.txt").write_text("Headline\nStandfirst\nBody\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"abc\xff")
    (tmp_path / "notes.md").write_text("not a seed", encoding="utf-8")
    nested = tmp_path / "archive"
    nested.mkdir()
    (nested / "older.txt").write_text("Older headline\nStandfirst\n", encoding="utf-8")
    os.utime(nested / "older.txt", (0, 86_400))

    result = load_paths([tmp_path, tmp_path / "missing.txt"], seed_format)

    assert [article.source for article in result.articles] == [
        str(tmp_path / "archive" / "older.txt"),
        str(tmp_path / "good.txt"),
    ]
    assert result.articles[0].modified == dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
    assert result.failures == (
        LoadFailure(
            source=str(tmp_path / "bad.txt"), reason="not valid UTF-8 (byte 0xff at offset 3)"
        ),
        LoadFailure(source=str(tmp_path / "missing.txt"), reason="no such file or directory"),
    )


def test_a_file_named_explicitly_loads_whatever_its_suffix(
    tmp_path: Path, seed_format: SeedFormat
) -> None:
    path = tmp_path / "story.scraped"
    path.write_text("Headline\nStandfirst\n", encoding="utf-8")

    result = load_paths([path], seed_format)

    assert [article.title for article in result.articles] == ["Headline"]


@pytest.mark.parametrize(
    "line",
    [
        "By 2030, Published figures show the target will be missed.",
        "By the time the vote was Published, most members had left.",
        "By the book: Published authors speak out",
        "By The Week UK Published sometime last spring",
    ],
)
def test_reporting_that_starts_with_by_is_not_a_byline(line: str, seed_format: SeedFormat) -> None:
    assert parse_byline(line, seed_format) is None

    article = parse_article(
        f"Headline\n{line}\nBody.\n-\nTitle\n{line}\n", source="x.txt", seed_format=seed_format
    )

    assert article.standfirst == line
    assert article.related[0].summary == line
    assert article.related[0].authors == ()


def test_a_loose_byline_needs_a_name() -> None:
    seed_format = SeedFormat(boilerplate=Boilerplate.none())
    text = "Headline\nStandfirst\n-\nTitle\nBriefing A summary\nBy the numbers\n"

    story = parse_article(text, source="x.txt", seed_format=seed_format).related[0]

    assert story.summary == "Briefing A summary By the numbers"
    assert story.authors == ()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("By The Week UKPublished 14 March 2025", ((), "The Week UK", dt.date(2025, 3, 14))),
        ("BY JANE ROE PUBLISHED", (("JANE ROE",), None, None)),
        (
            "by Jane Roe, The Week UK published 2 May 2024",
            (("Jane Roe",), "The Week UK", dt.date(2024, 5, 2)),
        ),
        ("By Jane Roe Published 31 February 2025", (("Jane Roe",), None, None)),
    ],
)
def test_bylines_as_scrapes_mangle_them(
    line: str, expected: tuple[tuple[str, ...], str | None, dt.date | None], seed_format: SeedFormat
) -> None:
    assert parse_byline(line, seed_format) == expected


def test_parse_date_takes_the_first_date() -> None:
    assert parse_date("14 March 2025, updated 2025-03-20") == dt.date(2025, 3, 14)


def test_only_a_paragraph_repeated_at_once_is_dropped(seed_format: SeedFormat) -> None:
    text = 'Headline\nStandfirst\n"Yes."\nShe paused.\n"Yes."\n"Yes."\n'

    article = parse_article(text, source="x.txt", seed_format=seed_format)

    assert article.paragraphs == ('"Yes."', "She paused.", '"Yes."')


def test_a_kicker_with_a_curly_apostrophe(seed_format: SeedFormat) -> None:
    assert seed_format.split_kicker("Today\u2019s Big Question Is it safe?") == (
        "Today's Big Question",
        "Is it safe?",
    )


def test_utf16_is_named(seed_format: SeedFormat) -> None:
    with pytest.raises(SeedError, match="UTF-16 text: save the file as UTF-8"):
        decode_seed("Headline\n".encode("utf-16"), "x.txt")


def test_paths_keep_their_spelling_and_empty_folders_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed_format: SeedFormat
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("seeds").mkdir()
    Path("empty").mkdir()
    Path("seeds", "a.txt").write_text("Headline\nStandfirst\n", encoding="utf-8")

    result = load_paths(["./seeds/", "seeds//a.txt", "empty"], seed_format)

    assert [article.source for article in result.articles] == ["./seeds/a.txt", "seeds//a.txt"]
    assert result.failures == (LoadFailure(source="empty", reason="no seed files (*.txt) in it"),)
