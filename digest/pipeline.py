"""The one module that knows every stage, and runs them in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.boilerplate import load_boilerplate
from digest.loader import SeedFormat, load_paths
from digest.models import Issue, LoadFailure, LoadResult
from digest.picker import pick
from digest.settings import Settings
from digest.store import Store

__all__ = ["IssueBuild", "build_issue", "load_seeds", "seed_format", "today"]


@dataclass(frozen=True, kw_only=True, slots=True)
class IssueBuild:
    """The issue for a date, and how it came about."""

    issue: Issue
    # True when this call froze the issue; False when it was frozen before or not stored.
    created: bool
    stored: bool
    failures: tuple[LoadFailure, ...] = ()


def seed_format(settings: Settings) -> SeedFormat:
    """The site's format as configured: boilerplate rules, kickers, publishers."""
    return SeedFormat(
        boilerplate=load_boilerplate(settings.boilerplate_file),
        kickers=settings.kickers,
        publishers=settings.publishers,
    )


def load_seeds(settings: Settings, paths: Sequence[Path] | None = None) -> LoadResult:
    """Load ``paths`` (default: the seeds directory) with the configured format."""
    return load_paths(paths or [settings.seeds_dir], seed_format(settings))


def today(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Today's date in the configured time zone."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(settings.schedule.zone).date()


def build_issue(
    settings: Settings,
    store: Store,
    date: dt.date,
    *,
    freeze: bool = True,
    now: dt.datetime | None = None,
) -> IssueBuild:
    """The issue for ``date``: the frozen one if it exists, else a new pick.

    With ``freeze`` a non-empty new pick is stored, so every later call for the date gets
    the same articles; without it nothing is written.
    """
    existing = store.get_issue(date)
    if existing is not None:
        return IssueBuild(issue=existing, created=False, stored=True)
    loaded = load_seeds(settings)
    issue = pick(
        loaded.articles,
        today=date,
        already_featured=store.featured_article_ids(excluding=date),
        limits=settings.pick_limits,
    )
    if issue.is_empty or not freeze:
        return IssueBuild(issue=issue, created=False, stored=False, failures=loaded.failures)
    stored, created = store.save_issue(issue, created_at=now or dt.datetime.now(dt.UTC))
    return IssueBuild(issue=stored, created=created, stored=True, failures=loaded.failures)
