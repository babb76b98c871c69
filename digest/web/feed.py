"""The archive as an Atom feed (RFC 4287): one entry per issue sent, newest first.

Built with the standard library's ElementTree, which escapes every value; every URL is
under ``public_url``, so the feed is served only when that is set.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ATOM", "FeedEntry", "atom_feed"]

ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedEntry:
    """One issue in the feed."""

    title: str
    url: str
    updated: dt.datetime
    summary: str = ""


def atom_feed(*, title: str, site_url: str, feed_url: str, entries: Sequence[FeedEntry]) -> bytes:
    """The feed document, UTF-8, with an XML declaration."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _text(feed, "title", title)
    _text(feed, "id", feed_url)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=feed_url)
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=site_url)
    # A feed with no entry yet is still valid: it was updated when first served empty.
    newest = max(
        (entry.updated for entry in entries), default=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    )
    _text(feed, "updated", _when(newest))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", title)
    for entry in entries:
        item = ET.SubElement(feed, f"{{{ATOM}}}entry")
        _text(item, "title", entry.title)
        _text(item, "id", entry.url)
        ET.SubElement(item, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=entry.url)
        _text(item, "updated", _when(entry.updated))
        if entry.summary:
            _text(item, "summary", entry.summary)
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def _text(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, f"{{{ATOM}}}{name}").text = value


def _when(value: dt.datetime) -> str:
    # RFC 3339, as Atom requires, in UTC.
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
