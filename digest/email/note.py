"""The editor's note: a few lines of Markdown above the stories, rendered with
markdown-it-py in CommonMark mode.

Raw HTML in the note is escaped, never passed through; images are left out (remote
images are blocked by most mail clients and need sizes and alt text); headings become
plain paragraphs, so the issue keeps its one ``h1`` and its heading order.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt

__all__ = ["note_html"]


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.disable(["heading", "lheading", "image", "html_block", "html_inline"])
    return parser


def note_html(markdown: str) -> str:
    """The note's HTML: paragraphs, emphasis, links, lists, quotes; raw HTML escaped."""
    return str(_markdown().render(markdown)).strip()
