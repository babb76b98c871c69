"""The seed files already parsed: how each file was when it was parsed, and what came of it.

:mod:`digest.seedcache` decides what to parse again; this module only reads and writes the
rows. An article is kept as ``digest load --json`` shows it, with its id, date and file
time in columns of their own, so a pick can choose among thousands without reading them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select, text, update

from digest.models import Article, LoadFailure
from digest.store.clock import aware
from digest.store.tables import seed_files

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["ParsedSeed", "SeedCandidate", "SeedFileRecords", "SeedFileState"]

# Paths per statement: well under SQLite's limit on bound parameters.
_BATCH = 500
# The advisory lock writers of seed_files take on PostgreSQL (within the schema's space).
_SEED_FILES_LOCK = 0x73656564


@dataclass(frozen=True, slots=True)
class SeedFileState:
    """How a seed file was when it was parsed, and by which parser."""

    size: int
    mtime_ns: int
    sha256: str
    parser_key: str
    # When the file was last read or found unchanged.
    checked_at: dt.datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedSeed:
    """One seed file just parsed: its state, and its article or why it failed."""

    path: str
    state: SeedFileState
    article: Article | None = None
    failure: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SeedCandidate:
    """What a pick chooses a kept article by, without the article itself: its file (the
    article's source), id, date and file time."""

    source: str
    id: str
    published: dt.date | None
    modified: dt.datetime | None


class SeedFileRecords:
    """The ``seed_files`` table."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def states(self) -> dict[str, SeedFileState]:
        """Every file parsed so far, by path."""
        query = select(
            seed_files.c.path,
            seed_files.c.size,
            seed_files.c.mtime_ns,
            seed_files.c.sha256,
            seed_files.c.parser_key,
            seed_files.c.checked_at,
        )
        with self._db.reading() as connection:
            return {
                row.path: SeedFileState(
                    row.size, row.mtime_ns, row.sha256, row.parser_key, _aware(row.checked_at)
                )
                for row in connection.execute(query)
            }

    def write(self, parsed: Sequence[ParsedSeed], *, now: dt.datetime) -> None:
        """Keep what ``parsed`` says of each file, in place of what was kept before."""
        if not parsed:
            return
        rows = [_row(seed, now) for seed in parsed]

        def work(connection: Any) -> None:
            if connection.dialect.name == "postgresql":
                # Two picks at once (a send and a preview) would both delete a row and
                # both insert it: one waits for the other instead.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(current_schema()), :key)"),
                    {"key": _SEED_FILES_LOCK},
                )
            connection.execute(
                delete(seed_files).where(seed_files.c.path.in_([row["path"] for row in rows]))
            )
            connection.execute(insert(seed_files), rows)

        self._db.transact(work)

    def touch(
        self, changed: Sequence[tuple[str, int, int, dt.datetime]], *, now: dt.datetime
    ) -> None:
        """Files whose bytes are as parsed but whose size or time changed: (path, size,
        mtime_ns, modified) each. The article stays; its file time is the new one."""
        if not changed:
            return
        statement = (
            update(seed_files)
            .where(seed_files.c.path == bindparam("b_path"))
            .values(
                size=bindparam("b_size"),
                mtime_ns=bindparam("b_mtime_ns"),
                modified=bindparam("b_modified"),
                checked_at=now,
            )
        )
        rows = [
            {"b_path": path, "b_size": size, "b_mtime_ns": mtime_ns, "b_modified": modified}
            for path, size, mtime_ns, modified in changed
        ]
        self._db.transact(lambda connection: connection.execute(statement, rows))

    def forget(self, paths: Iterable[str]) -> int:
        """Drop the rows of files no longer there; how many were dropped."""
        gone = list(paths)

        def work(connection: Any) -> None:
            for start in range(0, len(gone), _BATCH):
                chunk = gone[start : start + _BATCH]
                connection.execute(delete(seed_files).where(seed_files.c.path.in_(chunk)))

        if gone:
            self._db.transact(work)
        return len(gone)

    def candidates(self) -> list[SeedCandidate]:
        """Every file that gave an article: what a pick chooses by."""
        query = select(
            seed_files.c.path,
            seed_files.c.article_id,
            seed_files.c.published,
            seed_files.c.modified,
        ).where(seed_files.c.article_id.is_not(None))
        with self._db.reading() as connection:
            return [
                SeedCandidate(
                    source=row.path,
                    id=row.article_id,
                    published=row.published,
                    modified=aware(row.modified),
                )
                for row in connection.execute(query)
            ]

    def articles(self, paths: Sequence[str] | None = None) -> list[Article]:
        """The articles of ``paths`` (every file's when None), in path order."""
        query = (
            select(
                seed_files.c.path,
                seed_files.c.content,
                seed_files.c.published,
                seed_files.c.modified,
            )
            .where(seed_files.c.content.is_not(None))
            .order_by(seed_files.c.path)
        )
        if paths is not None:
            query = query.where(seed_files.c.path.in_(list(paths)))
        with self._db.reading() as connection:
            return [
                dataclasses.replace(
                    Article.from_dict(row.content, published=row.published),
                    modified=aware(row.modified),
                )
                for row in connection.execute(query)
            ]

    def failures(self) -> list[LoadFailure]:
        """Every file that did not parse, and why, in path order."""
        query = (
            select(seed_files.c.path, seed_files.c.failure)
            .where(seed_files.c.failure.is_not(None))
            .order_by(seed_files.c.path)
        )
        with self._db.reading() as connection:
            return [
                LoadFailure(source=row.path, reason=row.failure)
                for row in connection.execute(query)
            ]


def _aware(value: dt.datetime) -> dt.datetime:
    found = aware(value)
    assert found is not None
    return found


def _row(seed: ParsedSeed, now: dt.datetime) -> dict[str, Any]:
    article = seed.article
    return {
        "path": seed.path,
        "size": seed.state.size,
        "mtime_ns": seed.state.mtime_ns,
        "sha256": seed.state.sha256,
        "parser_key": seed.state.parser_key,
        "article_id": article.id if article else None,
        "published": article.published if article else None,
        "modified": article.modified if article else None,
        "content": article.to_dict() if article else None,
        "failure": seed.failure,
        "checked_at": now,
    }
