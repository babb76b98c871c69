"""What comes back after a send: ``digest bounces process/list/stats``."""

from __future__ import annotations

import datetime as dt
import json

import click

from digest.bounces.mailbox import configured_source
from digest.bounces.process import ProcessReport, process_mailbox
from digest.cli.output import plural
from digest.cli.root import App, cli, issue_date
from digest.errors import ConfigError
from digest.models import BounceKind
from digest.store import Store
from digest.store.returns import IssueStats

__all__ = ["bounces_group", "bounces_list", "bounces_process", "bounces_stats"]


@cli.group("bounces")
def bounces_group() -> None:
    """Read bounces, complaints and unsubscribe mails, and see what they did."""


@bounces_group.command("process")
@click.argument("source", required=False)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_obj
def bounces_process(app: App, source: str | None, as_json: bool) -> None:
    """Read the messages of SOURCE once (a Maildir folder, an mbox file, or an IMAP folder
    imaps://user@host/INBOX; default the setting bounces.source), and apply them.

    Hard bounces and complaints suppress the address at once; soft bounces after
    bounces.soft_limit issues in a row; an unsubscribe mail unsubscribes its sender. Each
    message read is marked read (Maildir: moved to cur/ with the seen flag) and kept.
    """
    settings = app.settings()
    spec = source or settings.bounces.source
    if not spec:
        raise ConfigError("give a SOURCE, or set bounces.source (DIGEST_BOUNCES__SOURCE)")
    with Store.open(settings.database_url) as store, configured_source(settings, spec) as mailbox:
        report = process_mailbox(settings, store, mailbox)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    for line in _report_lines(report):
        click.echo(line)


def _report_lines(report: ProcessReport) -> list[str]:
    new = report.messages - report.already_read
    lines = [
        f"{report.source}: {plural(new, 'message')} read"
        + (f", {report.already_read} read before" if report.already_read else "")
    ]
    if report.forms:
        lines.append(
            "  " + ", ".join(f"{count} {form}" for form, count in sorted(report.forms.items()))
        )
    if report.kinds:
        lines.append(
            "  events: "
            + ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items()))
        )
    if report.not_on_list:
        lines.append(f"  {report.not_on_list} about addresses not on the list (ignored)")
    if report.forged:
        lines.append(f"  {report.forged} with a forged return path (ignored)")
    if report.unverified:
        lines.append(
            f"  {report.unverified} traced by address only, recorded but not applied (with "
            "bounce_address set, a real bounce carries its copy's token)"
        )
    for change in report.changes:
        lines.append(
            f"  {change.email}: {change.before.value} -> {change.after.value} ({change.reason})"
        )
    return lines


@bounces_group.command("list")
@click.option(
    "--kind",
    type=click.Choice([kind.value for kind in BounceKind]),
    help="Only events of this kind.",
)
@click.option(
    "--since", metavar="YYYY-MM-DD", callback=issue_date, help="Only events from this day on."
)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of the events.")
@click.pass_obj
def bounces_list(app: App, kind: str | None, since: dt.datetime | None, as_json: bool) -> None:
    """The events read so far: when, the address, the issue, the kind, the code and reason."""
    settings = app.settings()
    with Store.open(settings.database_url) as store:
        events = store.returns.events(
            kind=BounceKind(kind) if kind else None,
            since=since.replace(tzinfo=dt.UTC) if since else None,
        )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "at": event.created_at.isoformat(timespec="seconds"),
                        "email": event.email,
                        "issue": event.issue_date.isoformat() if event.issue_date else None,
                        "kind": event.kind.value,
                        "status": event.status,
                        "reason": event.reason,
                        "traced_by": event.matched_by,
                        "message_id": event.message_id,
                    }
                    for event in events
                ],
                ensure_ascii=False,
            )
        )
        return
    for event in events:
        click.echo(
            "\t".join(
                (
                    event.created_at.isoformat(timespec="seconds"),
                    event.email or "-",
                    event.issue_date.isoformat() if event.issue_date else "-",
                    event.kind.value,
                    event.status or "-",
                    event.reason,
                )
            )
        )


@bounces_group.command("stats")
@click.option("--date", "date_", metavar="YYYY-MM-DD", callback=issue_date, help="One issue only.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per issue.")
@click.pass_obj
def bounces_stats(app: App, date_: dt.datetime | None, as_json: bool) -> None:
    """Per issue (the last 10, or --date's): copies sent, events by kind and reason, and
    the hard-bounce and complaint rates."""
    settings = app.settings()
    with Store.open(settings.database_url) as store:
        stats = store.returns.stats(date=date_.date() if date_ else None)
    if as_json:
        click.echo(json.dumps([_stats_dict(issue) for issue in stats], ensure_ascii=False))
        return
    if not stats:
        click.echo("No issue sent yet." if date_ is None else "That issue was not sent.")
    for issue in stats:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(issue.by_kind.items()))
        click.echo(
            f"{issue.date.isoformat()}: {issue.sent} sent"
            + (f"; {kinds}" if kinds else "; nothing came back")
            + f"; hard bounces {issue.rate(BounceKind.HARD):.2%}, complaints "
            f"{issue.rate(BounceKind.COMPLAINT):.2%}"
        )
        for (kind, reason), count in sorted(issue.by_reason.items()):
            if kind in (BounceKind.REFUSED.value, BounceKind.SOFT.value, BounceKind.HARD.value):
                click.echo(f"  {count} {kind}: {reason}")


def _stats_dict(issue: IssueStats) -> dict[str, object]:
    return {
        "date": issue.date.isoformat(),
        "sent": issue.sent,
        "kinds": issue.by_kind,
        "reasons": [
            {"kind": kind, "reason": reason, "count": count}
            for (kind, reason), count in sorted(issue.by_reason.items())
        ],
        "hard_bounce_rate": issue.rate(BounceKind.HARD),
        "complaint_rate": issue.rate(BounceKind.COMPLAINT),
    }
