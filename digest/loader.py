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

Site boilerplate is dropped wherever it stands (see :mod:`digest.boilerplate`). Parsing
(:func:`parse_article`) is pure; :func:`load_paths` does the file I/O around it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from digest.boilerplate import Boilerplate
from digest.errors import SeedError
from digest.models import Article, LoadFailure, LoadResult, RelatedStory, title_key
from digest.text import clean_lines

__all__ = [
    "SEED_SUFFIX",
    "SeedFormat",
    "article_id",
    "decode_seed",
    "load_files",
    "load_paths",
    "parse_article",
    "parse_byline",
    "parse_date",
    "seed_files",
]

log = logging.getLogger(__name__)

SEED_SUFFIX = ".txt"
SEPARATOR = "-"
# Below this many files, starting worker processes costs more than it saves.
PARALLEL_FROM = 400
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
_BYLINE = re.compile(r"^By\s+(?P<who>.*?)\s*\bPublished\b\s*(?P<date>.*)$")
# A line starting "By " is also a byline when it ends a story block, even without "Published".
_LOOSE_BYLINE = re.compile(r"^By\s+(?P<who>.+?)\s*(?:\bPublished\b\s*(?P<date>.*))?$")
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

    def __post_init__(self) -> None:
        # Longest first, so "Instant Opinion" wins over "Opinion".
        names = sorted(self.kickers, key=len, reverse=True)
        alternatives = "|".join(re.escape(name) for name in names)
        kicker = re.compile(rf"^(?P<kicker>{alternatives})\s+(?P<rest>\S.*)$", re.IGNORECASE)
        object.__setattr__(self, "_kicker", kicker if names else None)
        object.__setattr__(self, "_canonical", {name.casefold(): name for name in self.kickers})
        object.__setattr__(
            self, "_publishers", frozenset(name.casefold() for name in self.publishers)
        )

    def split_kicker(self, summary: str) -> tuple[str | None, str]:
        """Separate a leading section label from the summary it precedes."""
        match = self._kicker.match(summary) if self._kicker else None
        # A label is followed by a sentence, which starts with a capital, digit or quote:
        # "Review of the year" is a summary, "Review The film ..." is a kicker and a summary.
        if match is None or match["rest"][0].islower():
            return None, summary
        return self._canonical[match["kicker"].casefold()], match["rest"]

    def is_publisher(self, name: str) -> bool:
        """True when ``name`` is one of the configured publishers."""
        return name.casefold() in self._publishers


def article_id(title: str) -> str:
    """A stable id for an article: the same headline, however punctuated, gives the same id."""
    return hashlib.sha256(title_key(title).encode("utf-8")).hexdigest()[:16]


def decode_seed(data: bytes, source: str) -> str:
    """Bytes of a seed file to text: UTF-8 with or without a BOM, never binary."""
    if b"\x00" in data:
        raise SeedError(source, "binary data (NUL bytes): not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise SeedError(source, f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})") from None


def parse_date(text: str) -> dt.date | None:
    """The first date in ``text`` ("14 March 2025", "March 14, 2025", "2025-03-14"), or None."""
    if match := _ISO_DATE.search(text):
        year, month, day = (int(part) for part in match.groups())
    elif (match := _DAY_MONTH_YEAR.search(text)) and match[2].casefold() in _MONTHS:
        day, month, year = int(match[1]), _MONTHS[match[2].casefold()], int(match[3])
    elif (match := _MONTH_DAY_YEAR.search(text)) and match[1].casefold() in _MONTHS:
        month, day, year = _MONTHS[match[1].casefold()], int(match[2]), int(match[3])
    else:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_byline(
    line: str, seed_format: SeedFormat, *, strict: bool = True
) -> tuple[tuple[str, ...], str | None, dt.date | None] | None:
    """Authors, publisher and date from a byline, or None if ``line`` is not one.

    ``strict`` requires the word "Published", as the site prints it; a loose byline is
    any line starting "By ".
    """
    match = (_BYLINE if strict else _LOOSE_BYLINE).match(line)
    if match is None:
        return None
    who = match["who"].strip().rstrip(",").strip()
    date_text = (match["date"] or "").strip()
    published = parse_date(date_text) if date_text else None
    if date_text and published is None:
        log.warning("byline %r: cannot read the date %r; leaving it out", line, date_text)
    # The site writes "authors, publisher"; without a comma it is one or the other.
    if "," in who:
        authors_text, publisher = (part.strip() for part in who.rsplit(",", 1))
    elif seed_format.is_publisher(who) or not who:
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
    is_boilerplate = seed_format.boilerplate.flags(lines)
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
    for index, line in enumerate(lead[1:], start=1):
        byline = parse_byline(line, seed_format) if line.startswith("By ") else None
        if byline is not None:
            published = byline[2]
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
        paragraphs=tuple(dict.fromkeys(rest[1:])),  # a scrape may repeat a paragraph
        related=tuple(_related_stories(kept[split_at + 1 :], seed_format)),
        published=published,
        modified=modified,
    )


def seed_files(paths: Iterable[Path]) -> Iterator[Path | LoadFailure]:
    """Each seed file named by ``paths``: files as given, directories' ``*.txt`` files sorted."""
    for path in paths:
        if path.is_dir():
            found = [
                Path(folder, name)
                for folder, _, names in os.walk(path)
                for name in names
                if name.endswith(SEED_SUFFIX)
            ]
            yield from sorted(found)
        elif path.is_file():
            yield path
        elif path.exists():
            yield LoadFailure(source=str(path), reason="not a regular file or directory")
        else:
            yield LoadFailure(source=str(path), reason="no such file or directory")


def load_paths(
    paths: Iterable[Path], seed_format: SeedFormat, *, workers: int | None = None
) -> LoadResult:
    """Load every seed file under ``paths``; a file that fails is reported, the others load.

    Many files are parsed in ``workers`` processes (default: one per CPU); the result is
    the same, in the same order, as loading them one by one.
    """
    items = list(seed_files(paths))
    files = [str(item) for item in items if isinstance(item, Path)]
    workers = workers or os.cpu_count() or 1
    loaded: list[Article | LoadFailure] = []
    if workers > 1 and len(files) >= PARALLEL_FROM:
        loaded = _load_in_processes(files, seed_format, workers)
    else:
        loaded = load_files(files, seed_format)
    outcomes = iter(loaded)
    articles: list[Article] = []
    failures: list[LoadFailure] = []
    for item in items:
        outcome = item if isinstance(item, LoadFailure) else next(outcomes)
        if isinstance(outcome, LoadFailure):
            failures.append(outcome)
        else:
            articles.append(outcome)
    return LoadResult(articles=tuple(articles), failures=tuple(failures))


def load_files(sources: list[str], seed_format: SeedFormat) -> list[Article | LoadFailure]:
    """Read and parse each file: its article, or why it failed."""
    outcomes: list[Article | LoadFailure] = []
    for source in sources:
        try:
            with Path(source).open("rb") as file:
                data = file.read()
                modified = dt.datetime.fromtimestamp(os.fstat(file.fileno()).st_mtime, tz=dt.UTC)
            text = decode_seed(data, source)
            outcomes.append(
                parse_article(text, source=source, seed_format=seed_format, modified=modified)
            )
        except SeedError as exc:
            outcomes.append(LoadFailure(source=source, reason=exc.reason))
        except OSError as exc:
            reason = f"cannot read: {exc.strerror or exc}"
            outcomes.append(LoadFailure(source=source, reason=reason))
    return outcomes


def _load_in_processes(
    sources: list[str], seed_format: SeedFormat, workers: int
) -> list[Article | LoadFailure]:
    # A few chunks per worker keeps them all busy to the end without paying per file.
    size = max(64, len(sources) // (workers * 4) + 1)
    chunks = [sources[start : start + size] for start in range(0, len(sources), size)]
    # forkserver, not fork: the caller may be a scheduler with threads running. Workers
    # forked from a server that has already imported the caller's modules start in
    # milliseconds instead of importing them again each.
    context: multiprocessing.context.BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        forkserver = multiprocessing.get_context("forkserver")
        forkserver.set_forkserver_preload(["__main__", __name__])
        context = forkserver
    else:
        context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(load_files, chunks, [seed_format] * len(chunks)))
    except (OSError, BrokenProcessPool) as exc:
        log.warning(
            "cannot load seeds in %d processes (%s); loading them in this one", workers, exc
        )
        return load_files(sources, seed_format)
    return [outcome for chunk in results for outcome in chunk]


def _related_stories(lines: list[str], seed_format: SeedFormat) -> Iterator[RelatedStory]:
    block: list[str] = []
    for line in [*lines, SEPARATOR]:
        if line != SEPARATOR:
            block.append(line)
            continue
        story = _related_story(block, seed_format)
        if story is not None:
            yield story
        block = []


def _related_story(block: list[str], seed_format: SeedFormat) -> RelatedStory | None:
    if not block:
        return None
    title, *rest = block
    authors: tuple[str, ...] = ()
    publisher = None
    published = None
    if rest:
        # A lone second line is a byline only if it says "Published"; otherwise it is the summary.
        byline = parse_byline(rest[-1], seed_format, strict=len(rest) == 1)
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
