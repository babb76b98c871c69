"""The seeds directory parsed once (digest.seedcache): a pick through the kept articles is
the pick over every file, and a second pick parses only what is new or changed."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest import pipeline, seedcache
from digest.cli import cli
from digest.content.loader import load_paths
from digest.content.picker import pick
from digest.models import Issue, PickLimits
from digest.settings import Settings, load_settings
from digest.store import Store

from .conftest import FIXTURES, REPO

sys.path.insert(0, str(REPO / "bench"))
from load import generate_seeds

NOW = dt.datetime(2026, 11, 23, 7, tzinfo=dt.UTC)
TODAY = dt.date(2025, 12, 31)


@pytest.fixture
def seeded(project: Path) -> Path:
    """The project with 120 generated seed files, a second apart, in seeds/."""
    seeds = project / "seeds"
    for path in seeds.iterdir():
        path.unlink()
    generate_seeds(seeds, 120, random.Random(7))
    # File times a second apart, so recency orders them and a touch is visible.
    for number, path in enumerate(sorted(seeds.iterdir())):
        os.utime(path, ns=(0, (1_700_000_000 + number) * 10**9))
    return seeds


@pytest.fixture
def settings(seeded: Path, database_url: str) -> Settings:
    return load_settings(database_url=database_url)


def refresh(settings: Settings, store: Store) -> seedcache.Refreshed:
    return seedcache.refresh(store, settings.seeds_dir, pipeline.seed_format(settings), now=NOW)


def everything(settings: Settings, featured: set[str], today: dt.date, limits: PickLimits) -> Issue:
    loaded = load_paths([settings.seeds_dir], pipeline.seed_format(settings))
    return pick(loaded.articles, today=today, already_featured=featured, limits=limits)


def test_a_pick_from_the_kept_articles_is_the_pick_from_every_file(settings: Settings) -> None:
    loaded = load_paths([settings.seeds_dir], pipeline.seed_format(settings))
    ids = sorted({article.id for article in loaded.articles})
    rng = random.Random(11)
    with Store.open(settings.database_url) as store:
        first = refresh(settings, store)
        assert (first.parsed, first.unchanged, first.removed) == (120, 0, 0)
        for limits in (PickLimits(), PickLimits(max_articles=1, max_related=2)):
            for today in (TODAY, dt.date(2024, 6, 1), dt.date(2030, 1, 1)):
                featured = set(rng.sample(ids, 30))
                cached = seedcache.pick_cached(
                    store, today=today, already_featured=featured, limits=limits
                )
                assert cached == everything(settings, featured, today, limits)
                assert cached.articles


def test_a_second_refresh_parses_only_what_changed(settings: Settings) -> None:
    seeds = settings.seeds_dir
    files = sorted(seeds.iterdir())
    with Store.open(settings.database_url) as store:
        refresh(settings, store)
        # Two new files, one changed, one touched (same bytes, a newer time), one removed.
        for name in ("no_related.txt", "lead_byline.txt"):
            (seeds / name).write_bytes((FIXTURES / name).read_bytes())
        files[0].write_bytes(files[0].read_bytes() + b"\nOne more paragraph.\n")
        os.utime(files[1], ns=(0, 1_800_000_000 * 10**9))
        files[2].unlink()

        again = refresh(settings, store)

        assert (again.parsed, again.touched, again.removed) == (3, 1, 1)
        assert again.unchanged == 120 - 3
        third = refresh(settings, store)
        # Nothing parsed again; files written within the last seconds are compared by their
        # bytes once more (see the next test), the rest not even opened.
        assert (third.parsed, third.unchanged + third.touched) == (0, 121)
        # The kept articles are now those of the files on disk, file times and all.
        kept = {article.source: article for article in store.seed_files.articles()}
        on_disk = load_paths([seeds], pipeline.seed_format(settings)).articles
        assert kept == {article.source: article for article in on_disk}
        # The touched file is the newest undated one: a pick now takes it first.
        issue = seedcache.pick_cached(
            store, today=TODAY, already_featured=set(), limits=PickLimits()
        )
        assert issue == everything(settings, set(), TODAY, PickLimits())
        assert str(files[2]) not in {article.source for article in issue.articles}


def test_a_file_rewritten_within_the_clocks_grain_is_read_again(settings: Settings) -> None:
    """A file changed so soon after it was read that its size and time came out the same
    (a coarse file-system clock) is still parsed again: recently written files are compared
    by their bytes."""
    path = settings.seeds_dir / "fresh.txt"
    path.write_bytes((FIXTURES / "no_related.txt").read_bytes())
    with Store.open(settings.database_url) as store:
        refresh(settings, store)
        status = path.stat()
        before = path.read_bytes()
        after = before.replace(b"Council approves", b"Council rejects!")
        assert len(after) == len(before)
        path.write_bytes(after)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))

        again = refresh(settings, store)

        assert again.parsed == 1
        titles = {article.title for article in store.seed_files.articles([str(path)])}
        assert titles == {"Council rejects! new cycle lanes for the city centre"}


def test_a_file_that_fails_is_kept_as_failed_until_it_changes(settings: Settings) -> None:
    broken = settings.seeds_dir / "broken.txt"
    broken.write_bytes((FIXTURES / "no_headline.txt").read_bytes())
    with Store.open(settings.database_url) as store:
        refresh(settings, store)
        assert [failure.source for failure in store.seed_files.failures()] == [str(broken)]
        assert refresh(settings, store).parsed == 0
        assert [failure.source for failure in store.seed_files.failures()] == [str(broken)]

        broken.write_bytes((FIXTURES / "no_related.txt").read_bytes())
        assert refresh(settings, store).parsed == 1
        assert store.seed_files.failures() == []


def test_other_format_settings_parse_every_file_again(
    settings: Settings, project: Path, database_url: str
) -> None:
    with Store.open(settings.database_url) as store:
        refresh(settings, store)
        other = load_settings(database_url=database_url, kickers=["Briefing"])
        assert (
            seedcache.refresh(store, other.seeds_dir, pipeline.seed_format(other), now=NOW).parsed
            == 120
        )


def test_load_cached_says_what_load_says(seeded: Path) -> None:
    (seeded / "broken.txt").write_bytes((FIXTURES / "empty.txt").read_bytes())
    runner = CliRunner()
    plain = runner.invoke(cli, ["load", "--json"])
    cached = runner.invoke(cli, ["load", "--json", "--cached"])
    again = runner.invoke(cli, ["load", "--json", "--cached"])

    assert plain.exit_code == cached.exit_code == again.exit_code == 1
    assert json.loads(cached.stdout) == json.loads(plain.stdout) == json.loads(again.stdout)
    text = runner.invoke(cli, ["load", "--cached"])
    assert text.stdout == runner.invoke(cli, ["load"]).stdout


def test_load_cached_reads_only_the_seeds_directory(seeded: Path) -> None:
    result = CliRunner().invoke(cli, ["load", "--cached", "seeds/x.txt"])

    assert result.exit_code == 2
    assert "--cached" in result.stderr


def test_a_file_that_can_no_longer_be_read_is_not_picked(settings: Settings) -> None:
    """A kept file that cannot be read now (here a link to nothing) is reported and its
    article dropped, as a pick over the files as they are would not have it either."""
    path = settings.seeds_dir / "gone.txt"
    path.write_bytes((FIXTURES / "no_related.txt").read_bytes())
    with Store.open(settings.database_url) as store:
        refresh(settings, store)
        assert str(path) in {article.source for article in store.seed_files.articles()}
        path.unlink()
        path.symlink_to(settings.seeds_dir / "nowhere.txt")

        again = refresh(settings, store)

        assert [failure.source for failure in again.unreadable] == [str(path)]
        assert str(path) not in {article.source for article in store.seed_files.articles()}
