"""The start of an article to show in an issue, and how long the whole takes to read.

An excerpt is whole paragraphs while they fit the word budget, then as many whole
sentences of the next paragraph as still fit. It never ends inside a word: only a first
sentence longer than the whole budget is cut, at a space, and marked with "…".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WORDS_PER_MINUTE", "Excerpt", "excerpt", "reading_minutes", "word_count"]

# A usual figure for adults reading news on a screen.
WORDS_PER_MINUTE = 230
# A sentence ends at . ! ? or … (and any closing quotes or brackets), before white space.
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+")


@dataclass(frozen=True, kw_only=True, slots=True)
class Excerpt:
    """The paragraphs shown, and whether the article goes on after them."""

    paragraphs: tuple[str, ...]
    truncated: bool


def word_count(text: str) -> int:
    """Words in ``text``, as runs of non-space characters."""
    return len(text.split())


def reading_minutes(paragraphs: Sequence[str], *, standfirst: str = "") -> int:
    """Minutes to read the whole article, rounded up, at least one."""
    words = word_count(standfirst) + sum(map(word_count, paragraphs))
    return max(1, math.ceil(words / WORDS_PER_MINUTE))


def excerpt(paragraphs: Sequence[str], words: int) -> Excerpt:
    """About ``words`` words of ``paragraphs``, ending at a paragraph or sentence boundary;
    all of them when ``words`` is 0 or they fit."""
    if words <= 0:
        return Excerpt(paragraphs=tuple(paragraphs), truncated=False)
    shown: list[str] = []
    used = 0
    for paragraph in paragraphs:
        size = word_count(paragraph)
        if used + size <= words:
            shown.append(paragraph)
            used += size
            continue
        part = _sentences_within(paragraph, words - used)
        if part:
            shown.append(part)
        elif not shown:
            shown.append(_words_within(paragraph, words))
        # This paragraph did not fit whole: the article goes on.
        return Excerpt(paragraphs=tuple(shown), truncated=True)
    return Excerpt(paragraphs=tuple(shown), truncated=False)


def _sentences_within(paragraph: str, budget: int) -> str:
    """The paragraph's first whole sentences, at most ``budget`` words; "" if none fits."""
    taken: list[str] = []
    used = 0
    position = 0
    for end in _SENTENCE_END.finditer(paragraph):
        sentence = paragraph[position : end.end()]
        size = word_count(sentence)
        if used + size > budget:
            break
        taken.append(sentence)
        used += size
        position = end.end()
    # A paragraph's last sentence has no space after it: it is the whole paragraph,
    # which did not fit, so it is never taken here.
    return " ".join(part.strip() for part in taken)


def _words_within(paragraph: str, budget: int) -> str:
    """The paragraph's first ``budget`` words and "…": only for a first sentence longer than
    the whole excerpt."""
    return " ".join(paragraph.split()[:budget]) + "…"
