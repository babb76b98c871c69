"""How fast seed files become an issue: load 10,000 seed files and pick from them.

The benchmark writes synthetic seed files in the site's format (headline, standfirst,
paragraphs with site boilerplate between them, related stories separated by ``-`` lines,
some files with CRLF line endings and a BOM) to a temporary directory, then times, best
of ``--runs``:

- reading every file's bytes, the I/O floor no loader can beat;
- :func:`digest.content.loader.load_paths` with the shipped rules
- :func:`digest.content.picker.pick` on what was loaded;
- load and pick together, the figure the target is about.

Target: 10,000 files loaded and picked in under 2 s on a 2-core machine. The result is
printed, never asserted, so a slow machine does not fail a build. The last line of the
output is one JSON object with the figures, for scripts to compare runs.

With ``--cached`` it measures the daily pick instead, as ``digest pick`` makes it through
the kept articles (:mod:`digest.seedcache`): 20,000 seed files, a first pick that parses
and keeps them all, then 100 new files and a second pick, each in a fresh process, with a
pick that parses every file (as without the kept articles) as the reference. Targets: the
second pick at most a tenth of the first; the first pick's memory growing by at most
twice the size of the text.

Run it with ``make bench`` or ``.venv/bin/python bench/load.py [--files N] [--runs N]
[--cached [--new N]]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from digest.content.boilerplate import load_boilerplate
from digest.content.loader import SEED_SUFFIX, SeedFormat, article_id, load_paths
from digest.content.picker import pick
from digest.models import Issue, LoadResult, PickLimits
from digest.settings import DEFAULT_KICKERS, DEFAULT_PUBLISHERS

__all__ = ["generate_seeds", "main"]

T = TypeVar("T")

# The line the site prints between related stories.
SEPARATOR = "-"
TARGET_FILES = 10_000
TARGET_SECONDS = 2.0
# The fixed seed makes every run write the same files, so runs compare.
RANDOM_SEED = 20250314
ALREADY_FEATURED = 300
# One file in this many repeats an earlier headline, punctuated differently.
DUPLICATE_EVERY = 100
# One file in this many is written with CRLF line endings and a BOM, like a Windows scrape.
CRLF_BOM_EVERY = 20

# The promotions in the real seed file, and variants the rules are meant to catch.
BOILERPLATE_LINES = (
    "Subscribe to The Week",
    "SUBSCRIBE TO THE WEEK",
    "Subscribe now and save",
    "Subscribe today.",
    "Escape your echo chamber. Get the facts behind the news, plus analysis from multiple "
    "perspectives.",
    "Escape your echo chamber: get the facts behind the news.",
    "Sign up for The Week's Free Newsletters",
    "Sign up for The Week\u2019s free newsletters!",
    "Sign up to our newsletter",
    "From our morning news briefing to a weekly Good News Newsletter, get the best of The Week "
    "delivered directly to your inbox.",
    "From our evening briefing to a weekly Good News Newsletter, get the best of The Week "
    "delivered straight to your inbox.",
    "Sign up for Today's Best Articles in your inbox",
    "A free daily email with the biggest news stories of the day \u2013 and the best features "
    "from TheWeek.com",
    "A free weekly newsletter with the best features from TheWeek.com",
    "Get our Morning Briefing in your inbox",
    "Try 6 free issues",
)

# Word pools, kept compact: one item a line would run to hundreds of lines.
# fmt: off
SUBJECTS = (
    "Ministers", "Scientists", "Voters", "Central bankers", "Farmers", "Teachers", "Doctors",
    "Regulators", "Investors", "Rebels", "Diplomats", "Judges", "Unions", "Tech giants",
    "Fishermen", "Museums", "Pilots", "Astronomers", "Carmakers", "Brewers", "Councils",
    "Bashar al-Assad", "The Kremlin", "The White House", "Downing Street", "Brussels",
    "The Bank of England", "Beijing", "Paris", "N\u00e9stor Kirchner's heirs",
)
VERBS = (
    "warn of", "push back against", "bet on", "count the cost of", "scramble to contain",
    "quietly welcome", "'informed' on", "split over", "rethink", "gamble on", "brace for",
    "celebrate", "investigate", "vote down", "look beyond", "fall out over", "cash in on",
    "defend", "race to fix", "sound the alarm on",
)
OBJECTS = (
    "interest rates", "the housing crisis", "AI chatbots", "US-led airstrikes", "tariffs",
    "a heatwave", "the four-day week", "nuclear power", "deep-sea mining", "plastic waste",
    "a royal visit", "school dinners", "the energy cap", "drone deliveries", "a border deal",
    "bird flu", "the World Cup bid", "rail strikes", "river pollution", "crypto scams",
    "a \u201cgolden visa\u201d scheme", "the migrant boats", "welfare reform", "ghost towns",
)
PLACES = (
    "in Syria", "in Wales", "across Europe", "in the Midlands", "in Texas", "in Lagos",
    "after the election", "before the budget", "as prices climb", "in the Arctic", "in Kyiv",
    "at the summit", "in Gaza", "on the coast", "in Seoul", "in S\u00e3o Paulo", "",
)
# Body text is drawn from this, a run of words at a time.
FILLER = (
    "the government said it would review the figures before the end of the year while critics "
    "argued that the plan had been rushed through without proper scrutiny and that ordinary "
    "households would bear most of the cost of a policy few of them had asked for analysts "
    "pointed to a sharp rise in borrowing over the past decade which left little room for "
    "manoeuvre officials insisted the numbers were sound the opposition called for an inquiry "
    "residents described queues outside the clinic long before it opened at eight the report "
    "found that three in five firms had delayed investment campaigners welcomed the move but "
    "warned it came too late for many towns on the coast the minister declined to comment"
)
NAMES = (
    "Jane Roe", "John Doe", "Chas Newkey-Burden", "Harriet Marsden", "Hollie Clemence",
    "Richard Windsor", "Arion McNicoll", "Sorcha Bradley", "Rafi Mohamed", "Ren\u00e9e Dubois",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
# fmt: on
WORDS = tuple(FILLER.split())


def _sentence(rng: random.Random, low: int, high: int) -> str:
    start = rng.randrange(len(WORDS))
    words = [WORDS[(start + offset) % len(WORDS)] for offset in range(rng.randint(low, high))]
    text = " ".join(words)
    if rng.random() < 0.15:
        # A quotation with curly quotes and a dash, as the site prints them.
        text = f"{text} \u2013 \u201cwe will not back down\u201d, one of them said"
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng, 6, 30) for _ in range(rng.choice((1, 1, 2, 3, 4, 6))))


def _headline(rng: random.Random) -> str:
    place = rng.choice(PLACES)
    words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), place]
    if rng.random() < 0.3:
        words.append(f"as {rng.choice(SUBJECTS).lower()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}")
    return " ".join(word for word in words if word)


def _reworded(headline: str, rng: random.Random) -> str:
    """The same headline as another scrape prints it: same words, other case and punctuation."""
    return rng.choice(
        (headline.upper(), f"{headline}?", f"{headline}!", headline.replace(" ", "  ").title())
    )


def _date(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.choice((2024, 2025))
    return rng.choice((f"{day} {month} {year}", f"{month} {day}, {year}"))


def _byline(rng: random.Random, *, dated: bool) -> str:
    publisher = rng.choice(DEFAULT_PUBLISHERS)
    date = f" {_date(rng)}" if dated else ""
    authors = rng.sample(NAMES, rng.choice((0, 1, 1, 1, 2)))
    if not authors:
        return f"By {publisher} Published{date}"
    joined = rng.choice((" and ", " & ")).join(authors)
    return f"By {joined}, {publisher} Published{date}"


def _related_story(rng: random.Random) -> list[str]:
    lines = [_headline(rng)]
    summary = _sentence(rng, 8, 28).rstrip(".")
    roll = rng.random()
    if roll < 0.65:
        lines.append(f"{rng.choice(DEFAULT_KICKERS)} {summary}")
    elif roll < 0.7:
        # A kicker word followed by lower case is a summary, not a label.
        lines.append(f"Review of the year: {summary[0].lower()}{summary[1:]}")
    else:
        lines.append(summary)
    roll = rng.random()
    if roll < 0.55:
        lines.append(_byline(rng, dated=False))
    elif roll < 0.85:
        lines.append(_byline(rng, dated=True))
    if rng.random() < 0.05:
        lines.insert(rng.randint(1, len(lines)), rng.choice(BOILERPLATE_LINES))
    return lines


def _seed_text(rng: random.Random, headline: str) -> str:
    lead = [headline, _sentence(rng, 10, 25).rstrip(".")]
    if rng.random() < 0.2:
        lead.append(_byline(rng, dated=True))
    body = [_paragraph(rng) for _ in range(rng.randint(3, 25))]
    for _ in range(rng.choice((0, 1, 2, 2, 3, 4, 6))):
        promotion = rng.choice(BOILERPLATE_LINES)
        body.insert(rng.randint(0, len(body)), promotion)
        if rng.random() < 0.2:
            # Scrapes often repeat a promotion on the next line.
            body.insert(body.index(promotion), promotion)
    if rng.random() < 0.1:
        body.insert(rng.randint(0, len(body)), "")
    lines = lead + body
    for _ in range(rng.randint(0, 12)):
        lines.append(SEPARATOR)
        lines.extend(_related_story(rng))
    text = "\n".join(lines)
    return text + "\n" if rng.random() < 0.5 else text


def generate_seeds(directory: Path, count: int, rng: random.Random) -> list[str]:
    """Write ``count`` seed files to ``directory``; return their headlines, duplicates included."""
    headlines: list[str] = []
    seen: set[str] = set()
    for index in range(count):
        if headlines and index % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:
            headline = _reworded(rng.choice(headlines), rng)
        else:
            headline = _headline(rng)
            while article_id(headline) in seen:
                headline = _headline(rng)
        seen.add(article_id(headline))
        headlines.append(headline)
        text = _seed_text(rng, headline)
        data = text.encode("utf-8")
        if index % CRLF_BOM_EVERY == CRLF_BOM_EVERY - 1:
            data = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")
        name = f"{index:05d}_{rng.getrandbits(64):016x}{SEED_SUFFIX}"
        (directory / name).write_bytes(data)
    return headlines


def best_of(runs: int, work: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of ``runs`` calls of ``work``, and the last call's result."""
    start = time.perf_counter()
    result = work()
    best = time.perf_counter() - start
    for _ in range(runs - 1):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def read_all(directory: Path) -> int:
    """The I/O floor: find the seed files as the loader does and read their bytes."""
    return sum(len(path.read_bytes()) for path in sorted(directory.rglob(f"*{SEED_SUFFIX}")))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time loading and picking from synthetic seed files.",
        epilog=f"Target: {TARGET_FILES:,} files loaded and picked in under {TARGET_SECONDS:g} s "
        "on a 2-core machine.",
    )
    parser.add_argument(
        "--files", type=_positive, default=TARGET_FILES, help="seed files to generate"
    )
    parser.add_argument(
        "--runs", type=_positive, default=3, help="timed runs per stage; the best counts"
    )
    parser.add_argument(
        "--cached",
        action="store_true",
        help=f"time a first and a second pick through the kept articles instead "
        f"({TARGET_CACHED_FILES:,} files unless --files says, then --new more)",
    )
    parser.add_argument(
        "--new", type=_positive, default=TARGET_CACHED_NEW, help="with --cached: files added"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the seed files, time each stage and print the figures."""
    options = _parser().parse_args(argv)
    if options.cached:
        files = TARGET_CACHED_FILES if options.files == TARGET_FILES else options.files
        cached(files, options.new)
        return
    seed_format = SeedFormat(
        boilerplate=load_boilerplate(None),
        kickers=DEFAULT_KICKERS,
        publishers=DEFAULT_PUBLISHERS,
    )
    rng = random.Random(RANDOM_SEED)
    today = dt.date.today()
    limits = PickLimits()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as temporary:
        directory = Path(temporary)
        start = time.perf_counter()
        headlines = generate_seeds(directory, options.files, rng)
        generate_seconds = time.perf_counter() - start
        ids = sorted({article_id(headline) for headline in headlines})
        already_featured = frozenset(rng.sample(ids, min(ALREADY_FEATURED, len(ids) // 2)))

        def load() -> LoadResult:
            return load_paths([directory], seed_format)

        def pick_from(loaded: LoadResult) -> Issue:
            return pick(
                loaded.articles, today=today, already_featured=already_featured, limits=limits
            )

        read_seconds, total_bytes = best_of(options.runs, lambda: read_all(directory))
        load_seconds, loaded = best_of(options.runs, load)
        pick_seconds, issue = best_of(options.runs, lambda: pick_from(loaded))
        seconds, _ = best_of(options.runs, lambda: pick_from(load()))

    files = options.files
    files_per_s = files / seconds
    ratio_to_read = load_seconds / read_seconds
    rss = peak_rss_mb()
    distinct = len({article.id for article in loaded.articles})
    print(
        f"digest load benchmark: {files:,} seed files, {total_bytes / 1e6:.1f} MB, "
        f"best of {options.runs} runs, {os.cpu_count()} CPUs"
    )
    print(f"  generate      {generate_seconds:8.3f} s  (not timed against the target)")
    print(f"  read floor    {read_seconds:8.3f} s  {files / read_seconds:10,.0f} files/s")
    print(
        f"  load          {load_seconds:8.3f} s  {files / load_seconds:10,.0f} files/s"
        f"  {ratio_to_read:.1f}x the read floor"
    )
    print(f"  pick          {pick_seconds:8.3f} s")
    print(f"  load + pick   {seconds:8.3f} s  {files_per_s:10,.0f} files/s")
    print(
        f"  loaded {len(loaded.articles):,} articles ({distinct:,} distinct ids), "
        f"{len(loaded.failures):,} failures; picked {len(issue.articles)} articles "
        f"with {issue.related_count} related stories"
    )
    print(f"  peak RSS      {rss:8.1f} MB")
    target = (
        f"target: {TARGET_FILES:,} files loaded and picked in under {TARGET_SECONDS:g} s "
        "on a 2-core machine"
    )
    target_met: bool | None = None
    if files == TARGET_FILES:
        target_met = seconds < TARGET_SECONDS
        print(f"{target}: {'met' if target_met else 'NOT met'} ({seconds:.2f} s)")
    else:
        print(f"{target}: not checked for {files:,} files")
    figures = {
        "files": files,
        "runs": options.runs,
        "seconds": round(seconds, 4),
        "files_per_s": round(files_per_s, 1),
        "read_seconds": round(read_seconds, 4),
        "load_seconds": round(load_seconds, 4),
        "pick_seconds": round(pick_seconds, 4),
        "ratio_to_read": round(ratio_to_read, 2),
        "peak_rss_mb": round(rss, 1),
        "target_met": target_met,
    }
    print(json.dumps(figures))


# -- --cached: the daily pick through the kept articles (digest.seedcache) ----------------

TARGET_CACHED_FILES = 20_000
TARGET_CACHED_NEW = 100
TARGET_SECOND_PICK_SHARE = 0.1
TARGET_MEMORY_TO_TEXT = 2.0

# Run in a fresh process: one pick as `digest pick --dry-run` makes it (or, with "every",
# every file parsed and picked from, as before the cache), its time and memory.
_ONE_PICK = """
import datetime as dt, json, sys, time
from digest import pipeline
from digest.content.picker import pick
from digest.settings import load_settings
from digest.store import Store

def rss(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024

settings = load_settings(database_url=sys.argv[1], seeds_dir=sys.argv[2])
with Store.open(settings.database_url) as store:
    before = rss("VmRSS:")
    start = time.perf_counter()
    if sys.argv[3] == "every":
        loaded = pipeline.load_seeds(settings)
        issue = pick(loaded.articles, today=dt.date(2026, 1, 1), already_featured=set(),
                     limits=settings.pick_limits)
    else:
        issue = pipeline.build_issue(settings, store, dt.date(2026, 1, 1), freeze=False).issue
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rss_before_mb": before, "peak_mb": rss("VmHWM:"),
                  "articles": len(issue.articles)}))
"""


def _one_pick(database: str, seeds: Path, how: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _ONE_PICK, database, str(seeds), how],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def cached(files: int, new: int) -> None:
    """The --cached run: a first pick over ``files`` seeds, then one after ``new`` more."""
    rng = random.Random(RANDOM_SEED)
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as temporary:
        seeds = Path(temporary) / "seeds"
        seeds.mkdir()
        generate_seeds(seeds, files, rng)
        text_mb = sum(path.stat().st_size for path in seeds.iterdir()) / 1e6
        database = f"sqlite:///{Path(temporary) / 'digest.db'}"
        every = _one_pick(database, seeds, "every")
        first = _one_pick(database, seeds, "cache")
        more = Path(temporary) / "more"
        more.mkdir()
        generate_seeds(more, new, random.Random(RANDOM_SEED + 1))
        for path in more.iterdir():
            path.rename(seeds / f"new_{path.name}")
        second = _one_pick(database, seeds, "cache")
    share = second["seconds"] / first["seconds"]
    grown = first["peak_mb"] - first["rss_before_mb"]
    print(
        f"digest pick through the kept articles: {files:,} seed files ({text_mb:.1f} MB of text), "
        f"then {new} new; each pick in a fresh process"
    )
    print(
        f"  every file parsed, as without the cache: {every['seconds']:7.2f} s, "
        f"peak {every['peak_mb']:.0f} MB"
    )
    print(
        f"  first pick (parses and keeps every file): {first['seconds']:7.2f} s, "
        f"peak {first['peak_mb']:.0f} MB ({grown:.0f} MB over the {first['rss_before_mb']:.0f} MB "
        "the process had before)"
    )
    print(f"  second pick ({new} new files):           {second['seconds']:7.2f} s")
    print(
        f"target: second pick <= {TARGET_SECOND_PICK_SHARE:g} of the first: "
        f"{share:.3f}, {'met' if share <= TARGET_SECOND_PICK_SHARE else 'NOT met'}"
    )
    memory_met = grown <= TARGET_MEMORY_TO_TEXT * text_mb
    print(
        f"target: the first pick's memory grows by at most {TARGET_MEMORY_TO_TEXT:g}x the text: "
        f"{grown / text_mb:.2f}x, {'met' if memory_met else 'NOT met'}"
    )
    print(
        json.dumps(
            {
                "files": files,
                "new": new,
                "text_mb": round(text_mb, 1),
                "every_file_seconds": round(every["seconds"], 3),
                "first_seconds": round(first["seconds"], 3),
                "second_seconds": round(second["seconds"], 3),
                "second_share": round(share, 4),
                "first_peak_mb": round(first["peak_mb"], 1),
                "first_growth_mb": round(grown, 1),
                "every_file_peak_mb": round(every["peak_mb"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
