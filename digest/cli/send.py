"""Sending an issue and watching it go: ``digest send`` and ``digest status``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from pathlib import Path

import click

from digest import eventloop, pipeline, sending
from digest.cli.output import address_argument, error_lines, progress
from digest.cli.root import DATE_OPTION, SEEDS_OPTION, App, cli
from digest.delivery import transport as transports
from digest.delivery.ledger import Ledger
from digest.errors import NotFound
from digest.store import Store

__all__ = ["RATE_WINDOW", "send", "status"]


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
@click.option(
    "--note",
    "note_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The editor's note (Markdown), instead of notes/YYYY-MM-DD.md in the seeds folder; "
    "it goes into the issue when its first copy is sent.",
)
@click.pass_obj
def send(
    app: App,
    date_: dt.datetime | None,
    seeds_dir: Path | None,
    test_addresses: tuple[str, ...],
    dry_run: bool,
    worker: bool,
    note_file: Path | None,
) -> None:
    """Send the day's digest to every active subscriber who has not had it yet.

    The issue is frozen at the first send; each delivery is recorded as it completes, so
    running it again sends nothing twice. Messages go to the SMTP relay smtp.host (or the
    relays smtp.hosts), or,
    with none set, into the local outbox (outbox_dir, a Maildir). Exit status: 0 when
    everything was delivered, 2 when some deliveries failed or are left to retry, 1 on an
    error that stopped the run.
    """
    settings = app.settings(seeds_dir=seeds_dir, note_file=note_file)
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
        transports.check_ready_for_relay(settings)
    if dry_run:
        with Store.open(settings.database_url, create=False) as store:
            plan = sending.plan_send(settings, store, day)
        if plan.nothing_new:
            click.echo(f"Nothing new to send for {day.isoformat()}.")
        else:
            click.echo(
                f"Dry run for the issue of {day.isoformat()}: {plan.would_send} to send, "
                f"{plan.already_sent} sent before; nothing was sent or stored."
            )
        return
    addresses = [address_argument(address) for address in test_addresses]
    if transports.uses_preview_key(settings):
        click.echo(
            "note: DIGEST_SECRET_KEY is not set; the outbox copies carry preview-key links.",
            err=True,
        )
    where = transports.destination(settings)

    async def run() -> sending.SendReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGINT and SIGTERM: start nothing new, let what is under way finish and be recorded.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            if addresses:
                transport, secret_key = transports.transport_for(settings)
                try:
                    return await sending.send_test_copies(
                        settings, store, day, transport, addresses, secret_key=secret_key, stop=stop
                    )
                finally:
                    await transport.close()
            if not worker and (held := await asyncio.to_thread(store.issues.release, day)):
                # A person ran it: the hold is for them to lift (see bounces.max_rate).
                click.echo(
                    f"The send of {day.isoformat()} was held ({held}); sending the rest.", err=True
                )
            with progress(store, day) as advance:
                return await sending.send_day(
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
    for line in error_lines(report.errors):
        click.echo(line)
    if report.failed or report.still_pending:
        raise SystemExit(2)


@cli.command()
@DATE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_obj
def status(app: App, date_: dt.datetime | None, as_json: bool) -> None:
    """How the issue's sending stands: pending, claimed, sent, failed, per worker, the rate."""
    settings = app.settings()
    day = date_.date() if date_ else pipeline.today(settings)
    with Store.open(settings.database_url, create=False) as store:
        issue_id = store.issues.id_of(day)
        if issue_id is None:
            raise NotFound(f"no issue for {day.isoformat()} yet")
        ledger = Ledger(store, issue_id)
        # Claims and sending times were written by the database's clock: read by it too.
        now = ledger.clock()
        counts = ledger.counts(now=now)
        workers = ledger.by_worker(now=now)
        errors = ledger.errors()
        rate = ledger.sent_since(now - RATE_WINDOW) / RATE_WINDOW.total_seconds()
        returned = store.returns.stats(date=day)
    came_back = returned[0].by_kind if returned else {}
    if as_json:
        document = {
            "date": day.isoformat(),
            "pending": counts.pending,
            "claimed": counts.claimed,
            "sent": counts.sent,
            "failed": counts.failed,
            "msgs_per_s": round(rate, 1),
            "errors": [
                {"status": error.status, "error": error.error, "count": error.count}
                for error in errors
            ],
            # What came back after the send (digest bounces process): addresses by kind.
            "returned": came_back,
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
    for line in error_lines(errors):
        click.echo(line)
    if came_back:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(came_back.items()))
        click.echo(f"came back: {kinds} (digest bounces stats --date {day.isoformat()})")
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
