"""What the commands share: progress display, counts in words, address arguments."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from digest.audience.subscribers import (
    normalise_address,
)
from digest.models import Article, Issue
from digest.store import Store
from digest.store.deliveries import ErrorCount
from digest.store.tables import FAILED, PENDING

__all__ = [
    "address_argument",
    "article_summary",
    "error_lines",
    "issue_counts",
    "plural",
    "progress",
    "related_count",
]

log = logging.getLogger(__name__)


class _RateColumn(ProgressColumn):
    """Messages a second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "- msg/s")


@contextmanager
def progress(store: Store, day: dt.date) -> Iterator[Callable[[], None]]:
    """A progress bar with rate and time left on a terminal; a log line a thousand otherwise."""
    to_send = store.deliveries.count_to_send(store.issues.id_of(day))
    if sys.stderr.isatty():
        with Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("send", total=to_send)
            yield lambda: bar.advance(task)
        return
    done = 0

    def count() -> None:
        nonlocal done
        done += 1
        if done % 1000 == 0:
            log.info("%s: %d sent so far", day.isoformat(), done)

    yield count


def article_summary(article: Article) -> str:
    counts = (
        f"{plural(len(article.paragraphs), 'paragraph')}, {related_count(len(article.related))}"
    )
    return f"{article.source}: {article.title} [{counts}]"


def issue_counts(issue: Issue) -> str:
    return f"{plural(len(issue.articles), 'article')}, {related_count(issue.related_count)}"


def related_count(count: int) -> str:
    return f"{count} related {'story' if count == 1 else 'stories'}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def address_argument(email: str) -> str:
    return normalise_address(email)


def error_lines(errors: Sequence[ErrorCount]) -> list[str]:
    """Why copies failed or wait, a line per reason: "  6 to retry: 451 4.7.1 try later"."""
    label = {FAILED: "failed", PENDING: "to retry"}
    return [
        f"  {error.count:,} {label.get(error.status, error.status)}: {error.error}"
        for error in errors
    ]
