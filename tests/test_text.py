"""Whole-text normalisation: the same result as doing it line by line, only faster."""

from __future__ import annotations

import sys
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from digest.content.text import clean_lines, comparison_form


def test_no_character_normalises_into_a_line_end() -> None:
    # comparison_form keeps the line count of multi-line text only if this holds.
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char not in "\n\r" and unicodedata.category(char) != "Cs":
            folded = unicodedata.normalize("NFKC", char).casefold()
            assert not {"\n", "\r"} & set(folded), hex(code)


def test_clean_lines() -> None:
    text = "\ufeff  Head\u00a0line \r\n\tStand\x07first\u200b\rBody  one \n\n \u2003 \n"

    assert clean_lines(text) == ["Head line", "Standfirst", "Body one", "", "", ""]


def test_comparison_form_folds_case_quotes_dashes_spacing_and_trailing_punctuation() -> None:
    assert comparison_form("  Sign up for The Week’s  “Free” Newsletters – now!! ") == (
        'sign up for the week\'s "free" newsletters - now'
    )


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\n\r")), min_size=1, max_size=8))
def test_whole_text_equals_line_by_line(lines: list[str]) -> None:
    whole = comparison_form("\n".join(lines)).split("\n")

    assert whole == [comparison_form(line) for line in lines]
    assert [" ".join(line.split()) for line in clean_lines("\n".join(lines))] == clean_lines(
        "\n".join(lines)
    )


def test_invisible_characters_go_and_do_not_change_ids() -> None:
    from digest.content.loader import article_id

    (line,) = clean_lines("Head\u00adline\u200e with \u202eoverride\x9b")

    assert line == "Headline with override"
    assert article_id(line) == article_id("Headline with override")
    assert clean_lines("family \U0001f468\u200d\U0001f469") == ["family \U0001f468\u200d\U0001f469"]
