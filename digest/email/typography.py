"""Typographic punctuation for seed text, and headlines that do not end on one word.

Scraped text has straight quotes and apostrophes, "--" and "..."; smartypants turns them
into curly quotes, dashes and ellipses. The text is plain, not HTML: it is escaped for
smartypants (which reads HTML) and unescaped after, and URLs in it are left exactly as
they are.
"""

from __future__ import annotations

import html
import re

import smartypants

__all__ = ["NBSP", "keep_last_words_together", "smarten"]

NBSP = "\u00a0"
# Output characters, not entities; otherwise smartypants' default rules.
_ATTRIBUTES = smartypants.Attr.default | smartypants.Attr.u
# URLs and addresses are passed over: a quote or "--" in one is part of it.
_VERBATIM = re.compile(r"(?:https?://|www\.|mailto:)\S+|\S+@\S+\.\S+")


def smarten(text: str) -> str:
    """``text`` with typographic quotes, apostrophes, dashes and ellipses, URLs untouched."""
    pieces: list[str] = []
    position = 0
    for found in _VERBATIM.finditer(text):
        pieces.append(_smarten_plain(text[position : found.start()]))
        pieces.append(found.group())
        position = found.end()
    pieces.append(_smarten_plain(text[position:]))
    return "".join(pieces)


def _smarten_plain(text: str) -> str:
    if not text:
        return text
    escaped = html.escape(text, quote=False)
    return html.unescape(smartypants.smartypants(escaped, _ATTRIBUTES))


def keep_last_words_together(title: str) -> str:
    """The title with a no-break space between its last two words (no one-word last line),
    unless they are long together (a narrow screen would then overflow)."""
    head, space, last = title.rstrip().rpartition(" ")
    if not space or not head:
        return title
    penultimate = head.rpartition(" ")[2]
    if len(penultimate) + len(last) > 24:
        return title
    return f"{head}{NBSP}{last}"
