"""The stages up to a message: the seeds loaded, the issue picked and frozen, rendered.

:mod:`digest.sending` takes it from there (the send itself); ``preview`` shows exactly
the copy a send would make.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digest import seedcache
from digest.audience.listid import current_list_id
from digest.audience.tokens import PREVIEW_KEY
from digest.clock import utc_now
from digest.content.boilerplate import load_boilerplate
from digest.content.loader import SeedFormat, article_id, load_paths
from digest.email.message import MessageTemplate
from digest.email.render import Renderer, personalise
from digest.email.view import article_slugs
from digest.errors import ConfigError, InputError, NotFound
from digest.models import Issue, LoadFailure, LoadResult, RenderedIssue, Subscriber
from digest.options import list_naming, message_options, render_options
from digest.settings import Settings
from digest.store import Store

log = logging.getLogger(__name__)

__all__ = [
    "IssueBuild",
    "Preview",
    "build_issue",
    "earlier_articles",
    "editor_note",
    "frozen_rendering",
    "load_cached",
    "load_seeds",
    "preview",
    "rendering",
    "seed_format",
    "today",
    "unsent_template",
]


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


def load_seeds(settings: Settings, paths: Sequence[str | Path] | None = None) -> LoadResult:
    """Load ``paths`` (default: the seeds directory, which must exist) as configured."""
    if not paths and not settings.seeds_dir.is_dir():
        raise ConfigError(
            f"{settings.seeds_dir}: seeds directory not found (setting seeds_dir, DIGEST_SEEDS_DIR)"
        )
    return load_paths(paths or [settings.seeds_dir], seed_format(settings))


def today(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Today's date in the configured time zone."""
    return (now or utc_now()).astimezone(settings.schedule.zone).date()


def build_issue(
    settings: Settings,
    store: Store,
    date: dt.date,
    *,
    freeze: bool = True,
    now: dt.datetime | None = None,
    for_send: bool = False,
) -> IssueBuild:
    """The issue for ``date``: the frozen one if it exists, else a new pick.

    With ``freeze`` a non-empty new pick is stored, so every later call for the date gets
    the same articles; without it nothing of the issue is written. With ``for_send`` a new
    issue is stored as one whose send has begun. A new pick reads the seeds directory
    through the kept articles (:mod:`digest.seedcache`): only new or changed files are
    parsed, and the kept ones brought up to date with them.
    """
    existing = store.issues.get(date)
    if existing is not None:
        return IssueBuild(issue=existing, created=False, stored=True)
    loaded = load_cached(settings, store, now=now)
    issue = seedcache.pick_cached(
        store,
        today=date,
        already_featured=store.issues.featured_article_ids(excluding=date),
        limits=settings.pick_limits,
    )
    if issue.is_empty or not freeze:
        return IssueBuild(issue=issue, created=False, stored=False, failures=loaded.failures)
    stored, created = store.issues.save(issue, created_at=now or utc_now(), send_started=for_send)
    return IssueBuild(issue=stored, created=created, stored=True, failures=loaded.failures)


def load_cached(
    settings: Settings, store: Store, *, now: dt.datetime | None = None, articles: bool = False
) -> LoadResult:
    """Bring the kept articles up to date with the seeds directory (which must exist); the
    files that fail, and with ``articles`` every article kept (``digest load --cached``)."""
    if not settings.seeds_dir.is_dir():
        raise ConfigError(
            f"{settings.seeds_dir}: seeds directory not found (setting seeds_dir, DIGEST_SEEDS_DIR)"
        )
    refreshed = seedcache.refresh(
        store, settings.seeds_dir, seed_format(settings), now=now or utc_now()
    )
    return seedcache.kept(store, refreshed, articles=articles)


@dataclass(frozen=True, kw_only=True, slots=True)
class Preview:
    """What ``digest preview`` wrote, and from which issue."""

    rendered: RenderedIssue
    html_path: Path
    text_path: Path
    eml_path: Path
    html_bytes: int
    # Set when nothing was new for the date and an earlier issue is shown instead.
    instead_of: dt.date | None
    failures: tuple[LoadFailure, ...] = ()
    # The issue's rendering as frozen at its first send was shown: later changes to the
    # templates or settings do not show in it (``fresh`` renders them).
    frozen: bool = False


def preview(
    settings: Settings,
    store: Store,
    date: dt.date,
    *,
    out_dir: Path,
    now: dt.datetime | None = None,
    fresh: bool = False,
) -> Preview:
    """Render the issue for ``date`` exactly as a send would, for a sample subscriber.

    Writes ``digest.html``, ``digest.txt`` and ``digest.eml`` into ``out_dir``. Nothing is
    stored and nothing is sent: a later preview or send may pick differently. An issue
    already sent is shown as it was rendered then, unless ``fresh``: then with today's
    templates and settings (what a send of it would not use).
    """
    built = build_issue(settings, store, date, freeze=False)
    issue, instead_of = built.issue, None
    if issue.is_empty:
        earlier = store.issues.latest_date(before=date)
        if earlier is None:
            raise NotFound(
                f"nothing to preview for {date.isoformat()}: no new article in "
                f"{settings.seeds_dir} and no earlier issue"
            )
        issue = store.issues.get(earlier) or issue
        instead_of = date
    frozen = not fresh and store.issues.rendering(issue.date) is not None
    rendered = _render(settings, store, issue) if fresh else rendering(settings, store, issue)
    sample = Subscriber(id=0, email=settings.from_address, name="Preview")
    template = unsent_template(settings, store, rendered, now=now or utc_now())
    eml = template.render(sample)
    html, text = personalise(rendered, template.personal(sample))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "digest.html", out_dir / "digest.txt", out_dir / "digest.eml"]
    paths[0].write_text(html, encoding="utf-8")
    paths[1].write_text(text, encoding="utf-8")
    paths[2].write_bytes(eml)
    return Preview(
        rendered=rendered,
        html_path=paths[0],
        text_path=paths[1],
        eml_path=paths[2],
        html_bytes=len(html.encode("utf-8")),
        instead_of=instead_of,
        failures=built.failures,
        frozen=frozen,
    )


def unsent_template(
    settings: Settings,
    store: Store,
    rendered: RenderedIssue,
    *,
    now: dt.datetime,
    secret_key: str = PREVIEW_KEY,
    test: bool = False,
) -> MessageTemplate:
    """The message of copies that are no send (a preview, a dry run, test copies, a check).

    They carry the list id a send would, read and never kept: only a real send keeps
    one (see :mod:`digest.audience.listid`).
    """
    ident = current_list_id(list_naming(settings), store.list_ids)
    return MessageTemplate.build(
        rendered,
        message_options(settings, list_id=ident),
        secret_key=secret_key,
        now=now,
        test=test,
    )


def editor_note(settings: Settings, date: dt.date) -> str | None:
    """The editor's note for ``date``: ``note_file`` if set, else NOTES/YYYY-MM-DD.md if
    there is one (NOTES: ``notes_dir``, or the seeds folder's ``notes``)."""
    path = settings.note_file
    if path is None:
        folder = settings.notes_dir or settings.seeds_dir / "notes"
        path = folder / f"{date.isoformat()}.md"
        if not path.is_file():
            return None
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: the editor's note does not exist") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the editor's note: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the editor's note is not UTF-8 text ({exc.reason})") from None
    return text.strip() or None


def _render(settings: Settings, store: Store, issue: Issue) -> RenderedIssue:
    return Renderer(settings.templates_dir).render(
        issue,
        render_options(settings),
        number=store.issues.number(issue.date),
        note=editor_note(settings, issue.date),
        earlier=earlier_articles(settings, store, issue),
    )


def earlier_articles(settings: Settings, store: Store, issue: Issue) -> dict[str, str]:
    """The archive page of each related story that was itself a lead article of an earlier
    issue, by article id (only with a public URL, where those pages are served)."""
    if settings.public_url is None:
        return {}
    wanted = {article_id(story.title) for article in issue.articles for story in article.related}
    found = store.issues.earlier_leads(wanted, before=issue.date)
    links = {}
    for story_id, (date, position) in found.items():
        earlier = store.issues.get(date)
        if earlier is None or position >= len(earlier.articles):
            continue
        name = article_slugs(earlier.articles)[position]
        links[story_id] = f"{settings.public_url}/issues/{date.isoformat()}/{name}"
    return links


def rendering(settings: Settings, store: Store, issue: Issue) -> RenderedIssue:
    """The frozen rendering if the issue has one, else a fresh one (not stored)."""
    frozen = store.issues.rendering(issue.date)
    fresh = _render(settings, store, issue) if frozen is None else None
    return fresh or _as_rendered(issue, frozen)


def _as_rendered(issue: Issue, frozen: tuple[str, str, str] | None) -> RenderedIssue:
    assert frozen is not None
    subject, html, text = frozen
    return RenderedIssue(
        date=issue.date,
        subject=subject,
        html=html,
        text=text,
        article_count=len(issue.articles),
        related_count=issue.related_count,
    )


def frozen_rendering(settings: Settings, store: Store, issue: Issue) -> RenderedIssue:
    """The issue's rendering as first sent; rendered and frozen now if this is the first send."""
    frozen = store.issues.rendering(issue.date)
    if frozen is None:
        fresh = _render(settings, store, issue)
        store.issues.freeze_rendering(
            issue.date, subject=fresh.subject, html=fresh.html, text=fresh.text
        )
        frozen = store.issues.rendering(issue.date)
    return _as_rendered(issue, frozen)
