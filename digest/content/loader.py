"""Seed files in, articles out.

A seed file is one scraped lead article:

    headline
    standfirst
    body paragraph, one a line ...
    -
    related story title
    [Kicker] summary
    By Author One and Author Two, Publisher Published 14 March 2025
    -
    next related story ...

Site boilerplate is dropped wherever it stands (see :mod:`digest.content.boilerplate`). Parsing
(:func:`parse_article`) is pure; :func:`load_paths` does the file I/O around it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from digest.content.boilerplate import Boilerplate
from digest.content.text import clean_lines, plain_punctuation
from digest.errors import SeedError
from digest.models import Article, LoadFailure, LoadResult, RelatedStory, title_key

__all__ = [
    "MAX_HEADLINE_CHARS",
    "SEED_SUFFIX",
    "SEPARATOR",
    "SeedFormat",
    "article_id",
    "decode_seed",
    "load_file",
    "load_paths",
    "parse_article",
    "parse_byline",
    "parse_date",
    "parse_seed_bytes",
    "seed_files",
]

log = logging.getLogger(__name__)

SEED_SUFFIX = ".txt"
SEPARATOR = "-"
# Longer than any headline the site prints: a longer first line is a mis-scrape.
MAX_HEADLINE_CHARS = 300

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]+)\.?,?\s+(\d{4})")
_MONTH_DAY_YEAR = re.compile(r"([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})")
# "By <who> Published [<date>]": the site's byline, with or without a date.
# "By <who> Published [<date>]", as the site prints it; scrapes may lose the space before
# "Published" or change the case.
_BYLINE = re.compile(r"^by\s+(?P<who>[^:]+?),?\s*published(?:\s+(?P<date>.*?))?\s*$", re.IGNORECASE)
# Ending a story block, "By <who>" is a byline even without "Published".
_LOOSE_BYLINE = re.compile(r"^by\s+(?P<who>[^:]+?)\s*$", re.IGNORECASE)
# What may follow "Published": a date, perhaps with a weekday before and a time after.
_DATE_TEXT = re.compile(
    r"^(?:[a-z]+,?\s+)?"
    r"(?:\d{1,2}(?:st|nd|rd|th)?\s+[a-z]+\.?,?\s+\d{4}|[a-z]+\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}"
    r"|\d{4}-\d{2}-\d{2})"
    r"(?:,?\s+(?:at\s+)?\d{1,2}[:.]\d{2}\s*(?:[ap]m)?(?:\s*[a-z]{2,4})?)?$",
    re.IGNORECASE,
)
# Names and publishers are a few capitalised words; "By the numbers" is a summary.
_MAX_BYLINE_WORDS = 12
_AUTHOR_SEPARATORS = re.compile(r",\s*|\s+and\s+|\s*&\s*")


@dataclass(frozen=True)
class SeedFormat:
    """What the parser needs to know about the site beyond the file itself."""

    boilerplate: Boilerplate
    kickers: tuple[str, ...] = ()
    publishers: tuple[str, ...] = ()
    _kicker: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _canonical: dict[str, str] = field(init=False, repr=False, compare=False)
    _publishers: frozenset[str] = field(init=False, repr=False, compare=False)
    _longest: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Longest first, so "Instant Opinion" wins over "Opinion".
        names = sorted(self.kickers, key=len, reverse=True)
        alternatives = "|".join(re.escape(plain_punctuation(name)) for name in names)
        # Only the start of a summary is matched: the label and the next character.
        kicker = re.compile(rf"^(?P<kicker>{alternatives})\s+(?P<rest>\S)", re.IGNORECASE)
        object.__setattr__(self, "_kicker", kicker if names else None)
        object.__setattr__(self, "_longest", max(map(len, names), default=0))
        canonical = {plain_punctuation(name).casefold(): name for name in self.kickers}
        object.__setattr__(self, "_canonical", canonical)
        object.__setattr__(
            self, "_publishers", frozenset(name.casefold() for name in self.publishers)
        )

    def split_kicker(self, summary: str) -> tuple[str | None, str]:
        """Separate a leading section label from the summary it precedes."""
        # Matched with plain quotes and dashes (a curly apostrophe in "Today's"); as that changes
        # no lengths, the summary is cut from the original at the same place.
        head = plain_punctuation(summary[: self._longest + 2])
        match = self._kicker.match(head) if self._kicker else None
        # A label is followed by a sentence, which starts with a capital, digit or quote:
        # "Review of the year" is a summary, "Review The film ..." is a kicker and a summary.
        if match is None or summary[match.start("rest")].islower():
            return None, summary
        return self._canonical[match["kicker"].casefold()], summary[match.start("rest") :]

    def is_publisher(self, name: str) -> bool:
        """True when ``name`` is one of the configured publishers."""
        return name.casefold() in self._publishers


def article_id(title: str) -> str:
    """A stable id for an article: the same headline, however punctuated, gives the same id."""
    return hashlib.sha256(title_key(title).encode("utf-8")).hexdigest()[:16]


def decode_seed(data: bytes, source: str) -> str:
    """Bytes of a seed file to text: UTF-8 with or without a BOM, never binary."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SeedError(source, "UTF-16 text: save the file as UTF-8")
    if b"\x00" in data:
        raise SeedError(source, "binary data (NUL bytes): not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise SeedError(source, f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})") from None


def parse_date(text: str) -> dt.date | None:
    """The first date in ``text`` ("14 March 2025", "March 14, 2025", "2025-03-14"), or None."""
    found: list[tuple[int, int, int, int]] = []  # where it starts, year, month, day
    if match := _ISO_DATE.search(text):
        found.append((match.start(), int(match[1]), int(match[2]), int(match[3])))
    if (match := _DAY_MONTH_YEAR.search(text)) and match[2].casefold() in _MONTHS:
        found.append((match.start(), int(match[3]), _MONTHS[match[2].casefold()], int(match[1])))
    if (match := _MONTH_DAY_YEAR.search(text)) and match[1].casefold() in _MONTHS:
        found.append((match.start(), int(match[3]), _MONTHS[match[1].casefold()], int(match[2])))
    if not found:
        return None
    _, year, month, day = min(found)
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_byline(
    line: str, seed_format: SeedFormat, *, strict: bool = True, source: str = ""
) -> tuple[tuple[str, ...], str | None, dt.date | None] | None:
    """Authors, publisher and date from a byline, or None if ``line`` is not one.

    ``strict`` requires "Published", as the site prints it, followed by nothing or a date;
    a loose byline is "By" and a name. Either way the name starts with a capital.
    """
    if line[:3].lower() != "by ":
        return None
    match = _BYLINE.match(line) or (None if strict else _LOOSE_BYLINE.match(line))
    if match is None:
        return None
    who = match["who"].strip()
    date_text = (match.groupdict().get("date") or "").strip()
    if not who[:1].isupper() or len(who.split()) > _MAX_BYLINE_WORDS:
        return None
    if date_text and not _DATE_TEXT.match(date_text):
        return None
    published = parse_date(date_text) if date_text else None
    if date_text and published is None:
        log.warning("%s: byline %r: %r is not a real date; leaving it out", source, line, date_text)
    # The site writes "authors, publisher"; without a comma it is one or the other.
    if "," in who:
        authors_text, publisher = (part.strip() for part in who.rsplit(",", 1))
    elif seed_format.is_publisher(who):
        authors_text, publisher = "", who
    else:
        authors_text, publisher = who, ""
    authors = tuple(
        name for name in (part.strip() for part in _AUTHOR_SEPARATORS.split(authors_text)) if name
    )
    return authors, publisher or None, published


def parse_article(
    text: str, *, source: str, seed_format: SeedFormat, modified: dt.datetime | None = None
) -> Article:
    """One seed file's text to an :class:`Article`; :class:`SeedError` if it has no headline.

    ``modified`` is the file's modification time, kept for the picker.
    """
    lines = clean_lines(text)
    if not any(lines):
        raise SeedError(source, "empty file")
    # The headline and each story's title: patterns are not trusted to drop a title.
    titles = set()
    title_next = True
    for index, line in enumerate(lines):
        if line == SEPARATOR:
            title_next = True
        elif line and title_next:
            titles.add(index)
            title_next = False
    is_boilerplate = seed_format.boilerplate.flags(lines, exact_only=titles)
    kept = [
        line
        for line, dropped in zip(lines, is_boilerplate, strict=True)
        if line == SEPARATOR or (line and not dropped)
    ]
    split_at = kept.index(SEPARATOR) if SEPARATOR in kept else len(kept)
    lead = kept[:split_at]
    if not lead:
        before_separator = lines[: lines.index(SEPARATOR)] if SEPARATOR in lines else lines
        what = "site boilerplate" if any(before_separator) else "the related-stories separator '-'"
        raise SeedError(source, f"no headline: the file starts with {what}")
    published = None
    authors: tuple[str, ...] = ()
    publisher = None
    # An article's own byline, when the scrape kept it, sits under the headline or standfirst.
    for index, line in enumerate(lead[1:3], start=1):
        byline = parse_byline(line, seed_format, source=source)
        if byline is not None:
            authors, publisher, published = byline
            del lead[index]
            break
    title, *rest = lead
    if len(title) > MAX_HEADLINE_CHARS:
        raise SeedError(
            source,
            f"no headline: the first line is {len(title)} characters long "
            f"(a headline has at most {MAX_HEADLINE_CHARS})",
        )
    return Article(
        source=source,
        id=article_id(title),
        title=title,
        standfirst=rest[0] if rest else "",
        paragraphs=_without_repeats(rest[1:]),
        related=tuple(_related_stories(kept[split_at + 1 :], seed_format, source)),
        authors=tuple(authors),
        publisher=publisher,
        published=published,
        modified=modified,
    )


def seed_files(paths: Iterable[str | Path]) -> Iterator[str | LoadFailure]:
    """Each seed file named by ``paths``, spelt as given: files as they are, directories'
    ``*.txt`` files (in sub-directories too) sorted."""
    for given in map(str, paths):
        if os.path.isdir(given):
            found = sorted(
                os.path.join(folder, name)
                for folder, _, names in os.walk(given)
                for name in names
                if name.endswith(SEED_SUFFIX)
            )
            if not found:
                yield LoadFailure(source=given, reason=f"no seed files (*{SEED_SUFFIX}) in it")
            yield from found
        elif os.path.isfile(given):
            yield given
        elif os.path.exists(given):
            yield LoadFailure(source=given, reason="not a regular file or directory")
        else:
            yield LoadFailure(source=given, reason="no such file or directory")


def load_paths(paths: Iterable[str | Path], seed_format: SeedFormat) -> LoadResult:
    """Load every seed file under ``paths``; a file that fails is reported, the others load."""
    articles: list[Article] = []
    failures: list[LoadFailure] = []
    for item in seed_files(paths):
        outcome = item if isinstance(item, LoadFailure) else load_file(item, seed_format)
        if isinstance(outcome, LoadFailure):
            failures.append(outcome)
        else:
            articles.append(outcome)
    return LoadResult(articles=tuple(articles), failures=tuple(failures))


def load_file(source: str, seed_format: SeedFormat) -> Article | LoadFailure:
    """Read and parse one file: its article, or why it failed."""
    try:
        with open(source, "rb") as file:  # the path as the user spelt it
            data = file.read()
            modified = dt.datetime.fromtimestamp(os.fstat(file.fileno()).st_mtime, tz=dt.UTC)
    except OSError as exc:
        return LoadFailure(source=source, reason=f"cannot read: {exc.strerror or exc}")
    return parse_seed_bytes(data, source, seed_format, modified=modified)


def parse_seed_bytes(
    data: bytes, source: str, seed_format: SeedFormat, *, modified: dt.datetime | None
) -> Article | LoadFailure:
    """One seed file's bytes as its article, or why they are not one."""
    try:
        return parse_article(
            decode_seed(data, source), source=source, seed_format=seed_format, modified=modified
        )
    except SeedError as exc:
        return LoadFailure(source=source, reason=exc.reason)


def _without_repeats(paragraphs: list[str]) -> tuple[str, ...]:
    """Drop a paragraph that repeats the one before it: a scrape's stutter, not the text's."""
    return tuple(
        paragraph
        for index, paragraph in enumerate(paragraphs)
        if index == 0 or paragraph != paragraphs[index - 1]
    )


def _related_stories(
    lines: list[str], seed_format: SeedFormat, source: str
) -> Iterator[RelatedStory]:
    block: list[str] = []
    for line in [*lines, SEPARATOR]:
        if line != SEPARATOR:
            block.append(line)
            continue
        story = _related_story(block, seed_format, source)
        if story is not None:
            yield story
        block = []


def _related_story(block: list[str], seed_format: SeedFormat, source: str) -> RelatedStory | None:
    if not block:
        return None
    title, *rest = block
    authors: tuple[str, ...] = ()
    publisher = None
    published = None
    if rest:
        # A lone second line is a byline only if it says "Published"; otherwise it is the summary.
        byline = parse_byline(rest[-1], seed_format, strict=len(rest) == 1, source=source)
        if byline is not None:
            authors, publisher, published = byline
            rest = rest[:-1]
    kicker, summary = seed_format.split_kicker(" ".join(rest))
    return RelatedStory(
        title=title,
        kicker=kicker,
        summary=summary,
        authors=authors,
        publisher=publisher,
        published=published,
    )
