"""The seeds directory, parsed once: each pick parses only the files that are new or
changed since the last and forgets the ones removed, instead of every file on disk.

What is kept of each file (``digest.store.seeds``): its path, size, modification time and
the SHA-256 of its bytes, and the key of the parser that read it. A file whose size and time
are as kept is not opened; one whose bytes are as kept (touched, copied back) is not parsed
again, only its time is updated. The parser's key is the hash of the parser's own code and
of the format settings (boilerplate rules, kickers, publishers), so a new digest or other
rules parse everything again once.

A pick chooses among the kept articles by their id, date and file time alone, and reads
only the articles it takes, so its memory does not grow with the folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from digest.content import boilerplate, loader, picker, text
from digest.content.loader import SeedFormat, parse_seed_bytes, seed_files
from digest.content.picker import choose_leads, pick
from digest.models import Issue, LoadFailure, LoadResult, PickLimits
from digest.store import Store
from digest.store.seeds import ParsedSeed, SeedFileState

__all__ = ["Refreshed", "kept", "parser_key", "pick_cached", "refresh"]

# Files parsed per transaction: memory stays flat however many there are.
_WRITE_EVERY = 200
# A file written less than this before it was last read is compared by its bytes.
_RACY_NS = 2_000_000_000


@dataclass(kw_only=True, slots=True)
class Refreshed:
    """What bringing the kept files up to date did."""

    parsed: int = 0
    touched: int = 0
    unchanged: int = 0
    removed: int = 0
    # Files that could not be read this time: reported, not kept, tried again next time.
    unreadable: list[LoadFailure] = field(default_factory=list)


def parser_key(seed_format: SeedFormat) -> str:
    """The hash of the parser's code and of the format settings: what a kept article was
    parsed with, so a change to either parses every file again."""
    digest = hashlib.sha256()
    for module in (loader, boilerplate, text, picker, sys.modules["digest.models"]):
        digest.update(Path(str(module.__file__)).read_bytes())
    rules = seed_format.boilerplate
    for part in (
        *sorted(rules.lines),
        str(rules.max_length),
        rules.anchored.pattern if rules.anchored is not None else "",
        *(pattern.pattern for pattern in rules.unanchored),
        "\x00",
        *seed_format.kickers,
        "\x00",
        *seed_format.publishers,
    ):
        digest.update(part.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def refresh(
    store: Store, seeds_dir: Path, seed_format: SeedFormat, *, now: dt.datetime
) -> Refreshed:
    """Bring the kept files of ``seeds_dir`` up to date with the disk."""
    key = parser_key(seed_format)
    known = store.seed_files.states()
    done = Refreshed()
    seen: set[str] = set()
    parsed: list[ParsedSeed] = []
    touched: list[tuple[str, int, int, dt.datetime]] = []
    for item in seed_files([seeds_dir]):
        if isinstance(item, LoadFailure):
            done.unreadable.append(item)
            continue
        old = known.get(item)
        try:
            if old is not None and old.parser_key == key and not _racy(old):
                status = os.stat(item)
                if (status.st_size, status.st_mtime_ns) == (old.size, old.mtime_ns):
                    seen.add(item)
                    done.unchanged += 1
                    continue
            with open(item, "rb") as file:
                status = os.fstat(file.fileno())
                data = file.read()
        except OSError as exc:
            # Not kept: a pick over the files as they are would not have it either.
            done.unreadable.append(
                LoadFailure(source=item, reason=f"cannot read: {exc.strerror or exc}")
            )
            continue
        seen.add(item)
        modified = dt.datetime.fromtimestamp(status.st_mtime, tz=dt.UTC)
        state = SeedFileState(
            status.st_size, status.st_mtime_ns, hashlib.sha256(data).hexdigest(), key, now
        )
        if old is not None and (old.sha256, old.parser_key) == (state.sha256, key):
            touched.append((item, state.size, state.mtime_ns, modified))
            continue
        outcome = parse_seed_bytes(data, item, seed_format, modified=modified)
        if isinstance(outcome, LoadFailure):
            parsed.append(ParsedSeed(path=item, state=state, failure=outcome.reason))
        else:
            parsed.append(ParsedSeed(path=item, state=state, article=outcome))
        if len(parsed) >= _WRITE_EVERY:
            store.seed_files.write(parsed, now=now)
            done.parsed += len(parsed)
            parsed = []
    store.seed_files.write(parsed, now=now)
    done.parsed += len(parsed)
    store.seed_files.touch(touched, now=now)
    done.touched = len(touched)
    done.removed = store.seed_files.forget(path for path in known if path not in seen)
    return done


def _racy(state: SeedFileState) -> bool:
    """True when the file was written so close to when it was last read that a change since
    may have left its size and time as they were (a coarse file-system clock): its bytes
    are compared, as git does with its index."""
    checked_ns = int(state.checked_at.timestamp() * 1e9)
    return state.mtime_ns >= checked_ns - _RACY_NS


def pick_cached(
    store: Store, *, today: dt.date, already_featured: Collection[str], limits: PickLimits
) -> Issue:
    """:func:`~digest.content.picker.pick` over the kept articles, reading only those it
    takes: the same issue as a pick over every article."""
    chosen = choose_leads(
        store.seed_files.candidates(),
        today=today,
        already_featured=already_featured,
        limit=limits.max_articles,
    )
    articles = store.seed_files.articles([candidate.source for candidate in chosen])
    return pick(articles, today=today, already_featured=already_featured, limits=limits)


def kept(store: Store, refreshed: Refreshed, *, articles: bool) -> LoadResult:
    """After :func:`refresh`: every file that fails (kept or unreadable now), and with
    ``articles`` every kept article too (``digest load --cached``)."""
    failures = sorted(
        [*store.seed_files.failures(), *refreshed.unreadable], key=lambda failure: failure.source
    )
    found = tuple(store.seed_files.articles()) if articles else ()
    return LoadResult(articles=found, failures=tuple(failures))
