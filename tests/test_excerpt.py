"""Excerpts and reading times, typographic text and headlines: the pure parts of an issue's
front page, with hypothesis properties over random paragraphs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.content.excerpt import excerpt, reading_minutes, word_count
from digest.email.typography import NBSP, keep_last_words_together, smarten

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzÀé'\"-", min_size=1, max_size=12)
SENTENCE = st.lists(WORD, min_size=1, max_size=25).map(lambda words: " ".join(words) + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=6).map(" ".join)
PARAGRAPHS = st.lists(PARAGRAPH, min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(PARAGRAPHS, st.integers(min_value=1, max_value=300))
def test_an_excerpt_never_cuts_inside_a_word_and_starts_the_article(
    paragraphs: list[str], words: int
) -> None:
    shown = excerpt(paragraphs, words)
    assert shown.paragraphs
    source_words = " ".join(paragraphs).split()
    shown_words = " ".join(shown.paragraphs).removesuffix("…").split()
    # The excerpt's words are the article's first words, each whole.
    assert shown_words == source_words[: len(shown_words)]
    # Within the budget, unless the first sentence alone is longer (then cut at a word).
    assert len(shown_words) <= max(words, 1)
    assert shown.truncated == (len(shown_words) < len(source_words))


@settings(max_examples=200, deadline=None)
@given(PARAGRAPHS, st.integers(min_value=1, max_value=300))
def test_whole_paragraphs_that_fit_stay_whole(paragraphs: list[str], words: int) -> None:
    shown = excerpt(paragraphs, words)
    for index, paragraph in enumerate(shown.paragraphs[:-1]):
        assert paragraph == paragraphs[index]
    if word_count(paragraphs[0]) <= words:
        assert shown.paragraphs[0] == paragraphs[0]
    last = shown.paragraphs[-1]
    # It ends at a paragraph or a sentence, or (only alone) at a word with "…".
    assert last.endswith(".") or (len(shown.paragraphs) == 1 and last.endswith("…"))


def test_zero_words_and_short_articles_are_shown_whole() -> None:
    paragraphs = ["One two three.", "Four five."]
    assert excerpt(paragraphs, 0).paragraphs == tuple(paragraphs)
    assert excerpt(paragraphs, 0).truncated is False
    assert excerpt(paragraphs, 5).truncated is False
    assert excerpt(paragraphs, 4).paragraphs == ("One two three.",)
    assert excerpt(["A very long first sentence indeed."], 3).paragraphs == ("A very long…",)


def test_reading_time_rounds_up_and_is_never_zero() -> None:
    assert reading_minutes(["word"]) == 1
    assert reading_minutes(["word " * 230]) == 1
    assert reading_minutes(["word " * 231]) == 2
    assert reading_minutes(["word " * 200], standfirst="word " * 40) == 2


def test_smarten_curls_quotes_and_leaves_urls_and_markup_characters() -> None:
    assert smarten('He said "it\'s fine" -- then left...') == ("He said “it’s fine” — then left…")
    assert smarten('See https://example.org/a\'b--c and "x"') == (
        "See https://example.org/a'b--c and “x”"
    )
    assert smarten("5 < 6 & <b>not markup</b>") == "5 < 6 & <b>not markup</b>"
    assert smarten("") == ""


@given(st.text(max_size=200))
def test_smarten_keeps_every_letter_and_digit(text: str) -> None:
    def kept(value: str) -> str:
        return "".join(char for char in value if char.isalnum())

    assert kept(smarten(text)) == kept(text)


def test_the_last_two_words_of_a_headline_stay_together() -> None:
    assert keep_last_words_together("Ministers clash over energy bills") == (
        f"Ministers clash over energy{NBSP}bills"
    )
    assert keep_last_words_together("Alone") == "Alone"
    long_pair = "A headline with extraordinarily unbreakableword"
    assert keep_last_words_together(long_pair) == long_pair
