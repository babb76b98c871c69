"""Plain-text normalisation for scraped text, done on a whole file at a time.

Each step is one C-level pass over the whole text rather than a Python call per line, and
the costlier steps run only when a cheap scan says they are needed: loading thousands of
seed files is dominated by this.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "LINE_BREAKS",
    "TRAILING_PUNCTUATION",
    "clean_lines",
    "comparison_form",
    "fold",
    "plain_punctuation",
    "slug",
]

# Line breaks as str.splitlines sees them: any of them would end a header line early, or
# split a name or an address that must stay one line.
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Control characters (C0 and C1), soft hyphens, zero-width spaces and direction
# overrides never belong in a headline or a paragraph, and would change an article's id.
# The zero-width joiners stay: emoji and some scripts need them.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u200b\u200e\u200f"
    "\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)
# Typographic variants a site's templates use interchangeably.
_FOLD = (
    ("\u2018", "'"),
    ("\u2019", "'"),
    ("\u201a", "'"),
    ("\u201b", "'"),
    ("\u2032", "'"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u201e", '"'),
    ("\u2033", '"'),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\u2212", "-"),
)
# Ignored at the end of a line when comparing: "Subscribe now!" is "subscribe now".
TRAILING_PUNCTUATION = " .!:;,-"


def clean_lines(text: str) -> list[str]:
    """The lines of ``text``: any line end, no control characters, single spaces, trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    # One C-level scan each; a well-formed scrape passes them all and skips the per-line work.
    if not text.replace("\n", " ").isprintable():  # control, zero-width or unusual spaces
        text = _INVISIBLE.sub("", text)
    elif not (
        "  " in text or " \n" in text or "\n " in text or text[:1] == " " or text[-1:] == " "
    ):
        return text.split("\n")
    return [" ".join(line.split()) for line in text.split("\n")]


def comparison_form(text: str) -> str:
    """Case-folded, one kind of quote and dash, single spaces, no trailing punctuation.

    Works line by line on multi-line text and keeps the line count.
    """
    return "\n".join(
        line.rstrip(TRAILING_PUNCTUATION) for line in fold("\n".join(clean_lines(text))).split("\n")
    )


def fold(text: str) -> str:
    """Case-folded, compatibility-normalised, with one kind of quote and dash.

    For text that :func:`clean_lines` produced; keeps its line count and its spacing.
    """
    if not text.isascii():
        if not unicodedata.is_normalized("NFKC", text):
            # A compatibility character may decompose to a space ("\u00a8" is " \u0308").
            text = "\n".join(clean_lines(unicodedata.normalize("NFKC", text)))
        text = plain_punctuation(text)
    return text.casefold()


def plain_punctuation(text: str) -> str:
    """Curly quotes and long dashes made straight quotes and "-"; one character for one."""
    for typographic, plain in _FOLD:
        text = text.replace(typographic, plain)
    return text


_SLUG_NOISE = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """``text`` in lower case, runs of anything but ASCII letters and digits as one "-"."""
    return _SLUG_NOISE.sub("-", text.casefold()).strip("-")
