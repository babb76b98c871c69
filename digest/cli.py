"""The ``digest`` command line: thin commands over :mod:`digest.pipeline`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import signal
import sys
import traceback
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
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

from digest import __version__, eventloop, pipeline
from digest.clock import utc_now
from digest.errors import DigestError
from digest.ledger import Ledger
from digest.models import Article, Issue, SubscriberStatus
from digest.preview_server import PreviewServer
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.subscribers import (
    InvalidAddress,
    InvalidName,
    normalise_address,
    normalise_name,
    read_csv,
)

__all__ = ["cli", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class App:
    """What the top-level options decide for every command."""

    config_file: Path | None
    verbose: bool

    def settings(self, **overrides: Any) -> Settings:
        """Settings from every source, with the command's own options on top."""
        return load_settings(self.config_file, **overrides)


class DigestGroup(click.Group):
    """Turns a :class:`DigestError` into ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            if ctx.obj is not None and ctx.obj.verbose:
                traceback.print_exc()
            raise click.ClickException(str(exc)) from exc


DATE_OPTION = click.option(
    "--date",
    "date_",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Issue date (default: today in the configured time zone).",
)
SEEDS_OPTION = click.option(
    "--seeds",
    "seeds_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Seeds directory (setting seeds_dir).",
)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML settings file (default: $DIGEST_CONFIG, else config/digest.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log details, and show tracebacks on errors.")
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, verbose: bool) -> None:
    """Build the daily newsletter digest from scraped articles and mail it."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    ctx.obj = App(config_file=config_file, verbose=verbose)


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print articles and errors as one JSON object."
)
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_obj
def load(app: App, as_json: bool, paths: tuple[str, ...]) -> None:
    """Parse seed files (or directories of *.txt files; default: the seeds directory).

    Prints every article that loaded, then every file that did not; exits 1 if any failed.
    """
    settings = app.settings()
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
            click.echo(_article_summary(article))
        for failure in result.failures:
            click.echo(f"error: {failure.source}: {failure.reason}", err=True)
        searched = ", ".join(str(path) for path in paths or [settings.seeds_dir])
        click.echo(
            f"{_plural(len(result.articles), 'article')} loaded from {searched}; "
            f"{_plural(len(result.failures), 'file')} failed."
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
    click.echo(f"Issue of {day.isoformat()} ({state}): {_issue_counts(built.issue)}")
    for number, article in enumerate(built.issue.articles, start=1):
        click.echo(f"  {number}. {article.title} ({_related_count(len(article.related))})")


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
@click.pass_obj
def preview(
    app: App,
    date_: dt.datetime | None,
    seeds_dir: Path | None,
    out_dir: Path | None,
    serve: bool,
    port: int,
    open_browser: bool,
) -> None:
    """Render the day's digest exactly as a send would, for a sample subscriber, and write it.

    Writes digest.html, digest.txt and digest.eml (the whole MIME message). Stores nothing
    and sends nothing: preview as often as you like while the seeds change. With --serve,
    http://127.0.0.1:8025/ shows it (/text and /eml the other parts) and reloads itself
    when a seed, template or config file changes.
    """

    def build() -> tuple[Settings, pipeline.Preview]:
        settings = app.settings(seeds_dir=seeds_dir, preview_dir=out_dir)
        day = date_.date() if date_ else pipeline.today(settings)
        with Store.open(settings.database_url, create=False) as store:
            return settings, pipeline.preview(settings, store, day, out_dir=settings.preview_dir)

    if serve:
        _serve_preview(app, build, port, open_browser)
        return
    settings, result = build()
    for failure in result.failures:
        click.echo(f"warning: skipped {failure.source}: {failure.reason}", err=True)
    if result.instead_of is not None:
        wanted, shown = result.instead_of.isoformat(), result.rendered.date.isoformat()
        click.echo(f"Nothing new to send for {wanted}; previewing the issue of {shown}.")
    if settings.secret_key is None:
        note = "unsubscribe links are signed with the preview key; set DIGEST_SECRET_KEY to send"
        click.echo(f"note: {note}.", err=True)
    for path in (result.html_path, result.text_path, result.eml_path):
        click.echo(str(path))
    rendered = result.rendered
    click.echo(
        f"Issue of {rendered.date.isoformat()}: {_plural(rendered.article_count, 'article')}, "
        f"{_related_count(rendered.related_count)}, HTML {result.html_bytes / 1024:.1f} KB"
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
        raise DigestError(f"cannot serve the preview on port {port}: {exc.strerror}") from exc
    click.echo(f"Serving the preview at {server.url} (also /text and /eml); Ctrl-C stops it.")
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.httpd.server_close()


@cli.command()
@DATE_OPTION
@SEEDS_OPTION
@click.option(
    "--to",
    "test_addresses",
    multiple=True,
    help="Send a [TEST] copy to this address instead (repeatable); no ledger is touched.",
)
@click.option("--dry-run", is_flag=True, help="Build every copy but send and store nothing.")
@click.option(
    "--worker",
    is_flag=True,
    help="Share the issue with other `send --worker` processes (PostgreSQL).",
)
@click.pass_obj
def send(
    app: App,
    date_: dt.datetime | None,
    seeds_dir: Path | None,
    test_addresses: tuple[str, ...],
    dry_run: bool,
    worker: bool,
) -> None:
    """Send the day's digest to every active subscriber who has not had it yet.

    The issue is frozen at the first send; each delivery is recorded as it completes, so
    running it again sends nothing twice. Messages go to the SMTP relay smtp.host (or the
    relays smtp.hosts), or,
    with none set, into the local outbox (outbox_dir, a Maildir). Exit status: 0 when
    everything was delivered, 2 when some deliveries failed or are left to retry, 1 on an
    error that stopped the run.
    """
    settings = app.settings(seeds_dir=seeds_dir)
    day = date_.date() if date_ else pipeline.today(settings)
    if dry_run and test_addresses:
        raise click.UsageError("--dry-run and --to do not go together: choose one")
    if worker and (dry_run or test_addresses):
        raise click.UsageError("--worker sends the issue: it goes with neither --dry-run nor --to")
    if worker and not settings.database_url.startswith("postgresql"):
        click.echo(
            "note: on SQLite a worker is the only sender of its issue; several workers "
            "need PostgreSQL.",
            err=True,
        )
    if settings.smtp.relays:
        pipeline.check_ready_for_relay(settings)
    if dry_run:
        with Store.open(settings.database_url, create=False) as store:
            plan = pipeline.plan_send(settings, store, day)
        if plan.nothing_new:
            click.echo(f"Nothing new to send for {day.isoformat()}.")
        else:
            click.echo(
                f"Dry run for the issue of {day.isoformat()}: {plan.would_send} to send, "
                f"{plan.already_sent} sent before; nothing was sent or stored."
            )
        return
    addresses = [_address_argument(address) for address in test_addresses]
    if pipeline.uses_preview_key(settings):
        click.echo(
            "note: DIGEST_SECRET_KEY is not set; the outbox copies carry preview-key links.",
            err=True,
        )
    where = pipeline.destination(settings)

    async def run() -> pipeline.SendReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGINT and SIGTERM: start nothing new, let what is under way finish and be recorded.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            if addresses:
                transport, secret_key = pipeline.transport_for(settings)
                try:
                    return await pipeline.send_test_copies(
                        settings, store, day, transport, addresses, secret_key=secret_key, stop=stop
                    )
                finally:
                    await transport.close()
            with _progress(store, day) as advance:
                return await pipeline.send_day(
                    settings, store, day, stop=stop, on_delivery=advance, worker=worker
                )
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    with Store.open(settings.database_url) as store:
        report = eventloop.run(run())
    for failure in report.failures:
        click.echo(f"warning: skipped {failure.source}: {failure.reason}", err=True)
    if report.nothing_new:
        click.echo(f"Nothing new to send for {day.isoformat()}.")
        return
    if addresses:
        counts = f"{report.sent} sent, {report.failed} failed"
        click.echo(f"Test copies of {day.isoformat()} to {where}: {counts}.")
        if report.failed:
            raise SystemExit(2)
        return
    click.echo(
        f"Issue of {day.isoformat()} to {where}: "
        f"{report.sent} sent, {report.failed} failed, {report.still_pending} to retry, "
        f"{report.already_sent} sent before."
    )
    if report.failed or report.still_pending:
        raise SystemExit(2)


class _RateColumn(ProgressColumn):
    """Messages a second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "- msg/s")


@contextmanager
def _progress(store: Store, day: dt.date) -> Iterator[Callable[[], None]]:
    """A progress bar with rate and time left on a terminal; a log line a thousand otherwise."""
    to_send = store.count_to_send(store.issue_id(day))
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


@cli.command()
@DATE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_obj
def status(app: App, date_: dt.datetime | None, as_json: bool) -> None:
    """How the issue's sending stands: pending, claimed, sent, failed, per worker, the rate."""
    settings = app.settings()
    day = date_.date() if date_ else pipeline.today(settings)
    now = utc_now()
    with Store.open(settings.database_url, create=False) as store:
        issue_id = store.issue_id(day)
        if issue_id is None:
            raise DigestError(f"no issue for {day.isoformat()} yet")
        ledger = Ledger(store, issue_id)
        counts = ledger.counts(now=now)
        workers = ledger.by_worker(now=now)
        rate = ledger.sent_since(now - RATE_WINDOW) / RATE_WINDOW.total_seconds()
    if as_json:
        document = {
            "date": day.isoformat(),
            "pending": counts.pending,
            "claimed": counts.claimed,
            "sent": counts.sent,
            "failed": counts.failed,
            "msgs_per_s": round(rate, 1),
            "workers": [
                {
                    "worker": worker.worker,
                    "sent": worker.sent,
                    "failed": worker.failed,
                    "claimed": worker.claimed,
                    "last_sent_at": worker.last_sent_at.isoformat()
                    if worker.last_sent_at
                    else None,
                }
                for worker in workers
            ],
        }
        click.echo(json.dumps(document))
        return
    total = counts.pending + counts.claimed + counts.sent + counts.failed
    click.echo(f"Issue of {day.isoformat()}: {total:,} deliveries")
    for label, value, note in (
        ("sent", counts.sent, ""),
        ("failed", counts.failed, ""),
        ("claimed", counts.claimed, "  (being sent now)"),
        ("pending", counts.pending, ""),
    ):
        click.echo(f"  {label:<8} {value:>10,}{note}")
    window = int(RATE_WINDOW.total_seconds())
    click.echo(f"rate: {rate:,.0f} msg/s over the last {window} s")
    if workers:
        click.echo("workers:")
        for worker in workers:
            last = worker.last_sent_at.strftime("%H:%M:%S") if worker.last_sent_at else "-"
            click.echo(
                f"  {worker.worker}: {worker.sent:,} sent, {worker.failed:,} failed, "
                f"{worker.claimed:,} claimed, last sent {last} UTC"
            )


# The send rate that `digest status` shows is over this much time just past.
RATE_WINDOW = dt.timedelta(seconds=60)


HOST_OPTION = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
PORT_OPTION = click.option(
    "--port", type=click.IntRange(0, 65535), default=8025, show_default=True, help="Port."
)


@cli.command()
@HOST_OPTION
@PORT_OPTION
@click.pass_obj
def serve(app: App, host: str, port: int) -> None:
    """Serve one-click unsubscribe, the web archive and /healthz (behind your proxy).

    POST /unsubscribe/TOKEN unsubscribes at once (RFC 8058); GET shows a page with a
    button. /issues lists the issues sent, /issues/YYYY-MM-DD shows one as sent.
    """
    settings = app.settings()
    _log_for_service(app)
    with Store.open(settings.database_url) as store:
        server = _web_server(settings, store, host, port)
        eventloop.run(server.serve())


@cli.command()
@click.option("--serve", "with_server", is_flag=True, help="Also run `digest serve` here.")
@click.option(
    "--worker",
    is_flag=True,
    help="Send as one of several workers sharing each issue (PostgreSQL).",
)
@HOST_OPTION
@PORT_OPTION
@click.pass_obj
def schedule(app: App, with_server: bool, worker: bool, host: str, port: int) -> None:
    """Send the digest every day at schedule.cron in schedule.timezone, in the foreground.

    The schedule's state is kept in the database: a send missed while this was not
    running is made on restart if within schedule.misfire_grace_seconds, else skipped
    (the log says so). At start and before each run, the sends of the last
    schedule.catch_up_days days left unfinished (killed, or stopped) are finished first;
    a send that stops is tried again schedule.retry_minutes later, the same day. SIGINT
    or SIGTERM: no new runs; a send under way finishes and is recorded (up to
    schedule.stop_timeout_seconds), then it exits.
    """
    settings = app.settings()
    if settings.smtp.relays:
        pipeline.check_ready_for_relay(settings)
    _log_for_service(app)
    # Imported here: the other commands need no scheduler.
    from digest.schedule import Scheduler

    async def run(store: Store) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            server = _web_server(settings, store, host, port) if with_server else None
            scheduler = Scheduler(settings, store, worker=worker)
            await scheduler.run(
                stop,
                also=server.serve() if server else None,
                stop_also=(lambda: setattr(server, "should_exit", True)) if server else None,
            )
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    with Store.open(settings.database_url) as store:
        eventloop.run(run(store))
    log.info("stopped")


def _web_server(settings: Settings, store: Store, host: str, port: int) -> Any:
    import uvicorn

    from digest.web import HideTokens, create_app

    config = uvicorn.Config(
        create_app(settings, store),
        host=host,
        port=port,
        lifespan="off",
        log_level="info",
        # The proxy in front is trusted for the client's address, nothing else.
        proxy_headers=True,
        server_header=False,
    )
    # uvicorn's access log writes each request's path, and an unsubscribe link's path is
    # its token: added after the Config, which (re)configures uvicorn's loggers.
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, HideTokens) for existing in logger.filters):
            logger.addFilter(HideTokens())
    return uvicorn.Server(config)


def _log_for_service(app: App) -> None:
    """Long-running commands: their log is their output, with times."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("digest").setLevel(logging.DEBUG if app.verbose else logging.INFO)


@cli.group("subscribers")
def subscribers_group() -> None:
    """Manage the subscriber list: add, import, list, unsubscribe, remove."""


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", help="The subscriber's name, used in the To header.")
@click.pass_obj
def subscribers_add(app: App, email: str, name: str | None) -> None:
    """Add one address to the list (syntax checked; no DNS look-up)."""
    address = _address_argument(email)
    try:
        checked_name = normalise_name(name)
    except InvalidName as exc:
        raise DigestError(f"--name: {exc}") from exc
    with Store.open(app.settings().database_url) as store:
        subscriber, added = store.add_subscriber(address, checked_name, now=utc_now())
    if added:
        click.echo(f"Added {subscriber.email}.")
    else:
        click.echo(
            f"{subscriber.email} is already on the list ({subscriber.status}); left as it is."
        )


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def subscribers_import(app: App, csv_file: Path) -> None:
    """Import a CSV file with the columns email,name; importing it again changes nothing.

    Rows that cannot be imported are listed with their line numbers, the others are
    imported; the exit status is then 1.
    """
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestError(f"{csv_file}: cannot read it as UTF-8 text: {exc}") from exc
    rows = read_csv(text)
    errors = [row for row in rows if row.error is not None]
    valid = [(row.email, row.name) for row in rows if row.email is not None]
    with Store.open(app.settings().database_url) as store:
        added, known = store.import_subscribers(valid, now=utc_now())
    for row in errors:
        click.echo(f"error: {csv_file}:{row.line}: {row.error}", err=True)
    click.echo(
        f"{_plural(added, 'subscriber')} added, {known} already on the list, "
        f"{_plural(len(errors), 'row')} refused."
    )
    if errors:
        raise SystemExit(1)


@subscribers_group.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="A JSON array of objects with email, name, status."
)
@click.pass_obj
def subscribers_list(app: App, status: str | None, as_json: bool) -> None:
    """List subscribers, oldest first."""
    wanted = SubscriberStatus(status) if status else None
    with Store.open(app.settings().database_url, create=False) as store:
        found = store.iter_subscribers(status=wanted)
        if as_json:
            # Written as it is read, so a long list is never held in memory whole.
            click.echo("[", nl=False)
            for index, subscriber in enumerate(found):
                item = {
                    "email": subscriber.email,
                    "name": subscriber.name,
                    "status": subscriber.status.value,
                }
                click.echo(
                    ("," if index else "") + "\n  " + json.dumps(item, ensure_ascii=False), nl=False
                )
            click.echo("\n]")
            return
        for subscriber in found:
            click.echo(f"{subscriber.email}\t{subscriber.name or ''}\t{subscriber.status}")


@subscribers_group.command("unsubscribe")
@click.argument("email")
@click.pass_obj
def subscribers_unsubscribe(app: App, email: str) -> None:
    """Stop sending to an address; it stays on the list as unsubscribed."""
    address = _address_argument(email)
    with Store.open(app.settings().database_url) as store:
        subscriber = store.set_subscriber_status(
            address, SubscriberStatus.UNSUBSCRIBED, now=utc_now()
        )
    if subscriber is None:
        raise DigestError(f"{address} is not on the list")
    click.echo(f"Unsubscribed {subscriber.email}.")


@subscribers_group.command("remove")
@click.argument("email")
@click.pass_obj
def subscribers_remove(app: App, email: str) -> None:
    """Delete an address from the list altogether."""
    address = _address_argument(email)
    with Store.open(app.settings().database_url) as store:
        removed = store.remove_subscriber(address)
    if not removed:
        raise DigestError(f"{address} is not on the list")
    click.echo(f"Removed {address}.")


def _address_argument(email: str) -> str:
    try:
        return normalise_address(email)
    except InvalidAddress as exc:
        raise DigestError(str(exc)) from exc


def _article_summary(article: Article) -> str:
    counts = (
        f"{_plural(len(article.paragraphs), 'paragraph')}, {_related_count(len(article.related))}"
    )
    return f"{article.source}: {article.title} [{counts}]"


def _issue_counts(issue: Issue) -> str:
    return f"{_plural(len(issue.articles), 'article')}, {_related_count(issue.related_count)}"


def _related_count(count: int) -> str:
    return f"{count} related {'story' if count == 1 else 'stories'}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="digest")
