"""What goes into an issue: ``digest load``, ``pick`` and ``preview``."""

from __future__ import annotations

import datetime as dt
import json
import webbrowser
from collections.abc import Callable
from pathlib import Path

import click

from digest import pipeline
from digest.cli.output import article_summary, issue_counts, plural, related_count
from digest.cli.root import DATE_OPTION, SEEDS_OPTION, App, cli
from digest.errors import ServiceError
from digest.settings import Settings
from digest.store import Store
from digest.web.preview import PreviewServer

__all__ = ["load", "pick_command", "preview"]


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print articles and errors as one JSON object."
)
@click.option(
    "--cached",
    is_flag=True,
    help="The seeds directory as picks read it: parse only new or changed files.",
)
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_obj
def load(app: App, as_json: bool, cached: bool, paths: tuple[str, ...]) -> None:
    """Parse seed files (or directories of *.txt files; default: the seeds directory).

    Prints every article that loaded, then every file that did not; exits 1 if any failed.
    With --cached, the seeds directory's kept articles, brought up to date first.
    """
    settings = app.settings()
    if cached:
        if paths:
            raise click.UsageError("--cached reads the seeds directory: give no PATH with it")
        with Store.open(settings.database_url) as store:
            result = pipeline.load_cached(settings, store, articles=True)
    else:
        result = pipeline.load_seeds(settings, list(paths))
    if as_json:
        document = {
            "articles": [article.to_dict() for article in result.articles],
            "errors": [
                {"source": failure.source, "error": failure.reason} for failure in result.failures
            ],
        }
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        for article in result.articles:
            click.echo(article_summary(article))
        for failure in result.failures:
            click.echo(f"error: {failure.source}: {failure.reason}", err=True)
        searched = ", ".join(str(path) for path in paths or [settings.seeds_dir])
        click.echo(
            f"{plural(len(result.articles), 'article')} loaded from {searched}; "
            f"{plural(len(result.failures), 'file')} failed."
        )
    if result.failures:
        raise SystemExit(1)


@cli.command("pick")
@DATE_OPTION
@SEEDS_OPTION
@click.option("--dry-run", is_flag=True, help="Show the pick without freezing it in the database.")
@click.option("--json", "as_json", is_flag=True, help="Print the issue as JSON.")
@click.pass_obj
def pick_command(
    app: App, date_: dt.datetime | None, seeds_dir: Path | None, dry_run: bool, as_json: bool
) -> None:
    """Pick the articles for a day's issue and freeze them, or show the issue already frozen.

    Once frozen, an issue keeps its articles: running this again for the date changes nothing.
    """
    settings = app.settings(seeds_dir=seeds_dir)
    day = date_.date() if date_ else pipeline.today(settings)
    with Store.open(settings.database_url, create=not dry_run) as store:
        built = pipeline.build_issue(settings, store, day, freeze=not dry_run)
    for failure in built.failures:
        click.echo(f"warning: skipped {failure.source}: {failure.reason}", err=True)
    if as_json:
        document = {
            "date": day.isoformat(),
            "frozen": built.stored,
            "created": built.created,
            "articles": [article.to_dict() for article in built.issue.articles],
        }
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    if built.issue.is_empty:
        click.echo(
            f"Nothing new to send for {day.isoformat()}: "
            f"no article in {settings.seeds_dir} that an earlier issue has not featured."
        )
        return
    state = (
        "frozen now"
        if built.created
        else "frozen earlier"
        if built.stored
        else "not frozen: dry run"
    )
    click.echo(f"Issue of {day.isoformat()} ({state}): {issue_counts(built.issue)}")
    for number, article in enumerate(built.issue.articles, start=1):
        click.echo(f"  {number}. {article.title} ({related_count(len(article.related))})")


@cli.command()
@DATE_OPTION
@SEEDS_OPTION
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write the preview (setting preview_dir).",
)
@click.option(
    "--serve", is_flag=True, help="Serve the preview locally; it re-renders on every edit."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port for --serve.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in a web browser.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Render an issue already sent with today's templates and settings, not as sent.",
)
@click.option(
    "--note",
    "note_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The editor's note (Markdown), instead of notes/YYYY-MM-DD.md in the seeds folder.",
)
@click.pass_obj
def preview(
    app: App,
    date_: dt.datetime | None,
    seeds_dir: Path | None,
    out_dir: Path | None,
    serve: bool,
    port: int,
    open_browser: bool,
    fresh: bool,
    note_file: Path | None,
) -> None:
    """Render the day's digest exactly as a send would, for a sample subscriber, and write it.

    Writes digest.html, digest.txt and digest.eml (the whole MIME message). Stores nothing
    and sends nothing: preview as often as you like while the seeds change. With --serve,
    http://127.0.0.1:8025/ shows it (/text and /eml the other parts) and reloads itself
    when a seed, template or config file changes.
    """

    def build() -> tuple[Settings, pipeline.Preview]:
        settings = app.settings(seeds_dir=seeds_dir, preview_dir=out_dir, note_file=note_file)
        day = date_.date() if date_ else pipeline.today(settings)
        with Store.open(settings.database_url, create=False) as store:
            return settings, pipeline.preview(
                settings, store, day, out_dir=settings.preview_dir, fresh=fresh
            )

    if serve:
        _serve_preview(app, build, port, open_browser)
        return
    settings, result = build()
    for failure in result.failures:
        click.echo(f"warning: skipped {failure.source}: {failure.reason}", err=True)
    if result.instead_of is not None:
        wanted, shown = result.instead_of.isoformat(), result.rendered.date.isoformat()
        click.echo(f"Nothing new to send for {wanted}; previewing the issue of {shown}.")
    if result.frozen:
        click.echo(
            f"note: the issue of {result.rendered.date.isoformat()} was rendered and frozen "
            "at its first send; this is it as sent, whatever the templates and settings say "
            "now. digest preview --fresh renders it anew (a send would not).",
            err=True,
        )
    if settings.secret_key is None:
        note = "unsubscribe links are signed with the preview key; set DIGEST_SECRET_KEY to send"
        click.echo(f"note: {note}.", err=True)
    for path in (result.html_path, result.text_path, result.eml_path):
        click.echo(str(path))
    rendered = result.rendered
    click.echo(
        f"Issue of {rendered.date.isoformat()}: {plural(rendered.article_count, 'article')}, "
        f"{related_count(rendered.related_count)}, HTML {result.html_bytes / 1024:.1f} KB"
    )
    if open_browser:
        webbrowser.open(result.html_path.resolve().as_uri())


def _serve_preview(
    app: App, build: Callable[[], tuple[Settings, pipeline.Preview]], port: int, open_browser: bool
) -> None:
    def parts() -> tuple[Settings, str, str, bytes]:
        settings, result = build()
        return (
            settings,
            result.html_path.read_text(encoding="utf-8"),
            result.text_path.read_text(encoding="utf-8"),
            result.eml_path.read_bytes(),
        )

    try:
        server = PreviewServer(parts, app.config_file, port=port)
    except OSError as exc:
        raise ServiceError(f"cannot serve the preview on port {port}: {exc.strerror}") from exc
    click.echo(f"Serving the preview at {server.url} (also /text and /eml); Ctrl-C stops it.")
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.httpd.server_close()
