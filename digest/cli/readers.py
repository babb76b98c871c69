"""What digest holds about a reader, and readers' own ways in: ``digest subscribers show``,
``export``, ``erase``, ``export-list`` and ``expire``, and ``digest form``."""

from __future__ import annotations

import csv
import html
import json
import sys
from pathlib import Path
from typing import Any

import click

from digest.audience.signup import HONEYPOT_FIELD
from digest.audience.tokens import required_key
from digest.cli.output import address_argument, plural
from digest.cli.root import App, cli
from digest.cli.subscribers import subscribers_group
from digest.clock import utc_now
from digest.errors import ConfigError, OutboxError
from digest.models import SubscriberStatus
from digest.readers.erasure import erase
from digest.readers.record import held_about
from digest.readers.signup import consent_text, remove_unconfirmed
from digest.store import Store

__all__ = [
    "form",
    "subscribers_erase",
    "subscribers_expire",
    "subscribers_export",
    "subscribers_export_list",
    "subscribers_show",
]


@subscribers_group.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="The same as JSON (what export writes).")
@click.pass_obj
def subscribers_show(app: App, email: str, as_json: bool) -> None:
    """Everything held about an address: consent, history, deliveries, what came back."""
    address = address_argument(email)
    with Store.open(app.settings().database_url, create=False) as store:
        data = held_about(store, address, now=utc_now())
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in _described(data):
        click.echo(line)


def _described(data: dict[str, Any]) -> list[str]:
    who = data["subscriber"]
    lines = [
        f"{who['email']}" + (f" ({who['name']})" if who["name"] else ""),
        f"  status:      {who['status']}"
        + (f", paused until {who['paused_until']}" if who["paused_until"] else ""),
        f"  joined:      {who['joined_at']} via {who['joined_via'] or 'unknown'}"
        + (f" (source {who['source']})" if who["source"] else ""),
        f"  confirmed:   {who['confirmed_at'] or 'no'}",
        "consent:",
    ]
    for consent in data["consents"]:
        lines.append(f"  {consent['at']} {consent['method']}")
        for label, key in (
            ("confirmed", "confirmed_at"),
            ("ip", "ip"),
            ("ip hash", "ip_hash"),
            ("user agent", "user_agent"),
            ("file", "file"),
            ("note", "note"),
            ("text", "consent_text"),
        ):
            if consent[key]:
                lines.append(f"    {label}: {consent[key]}")
    if not data["consents"]:
        lines.append("  none recorded (added before consent was kept)")
    lines.append("history:")
    lines += [
        f"  {event['at']} {event['kind']}"
        + (f" -> {event['status']}" if event["status"] else "")
        + f": {event['cause']}"
        for event in data["history"]
    ] or ["  nothing recorded"]
    lines.append("deliveries:")
    lines += [
        f"  {delivery['issue']} {delivery['status']}"
        + (f" {delivery['sent_at']}" if delivery["sent_at"] else "")
        + (f" via {delivery['sent_via']}" if delivery["sent_via"] else "")
        + (f": {delivery['last_error']}" if delivery["last_error"] else "")
        for delivery in data["deliveries"]
    ] or ["  none"]
    lines.append("came back:")
    lines += [
        f"  {event['at']} {event['kind']}"
        + (f" (issue {event['issue']})" if event["issue"] else "")
        + f": {' '.join(p for p in (event['status'], event['reason']) if p)}"
        for event in data["came_back"]
    ] or ["  nothing"]
    if data["operator_actions"]:
        lines.append("at /admin:")
        lines += [
            f"  {action['at']} {action['action']}: {action['detail']}"
            for action in data["operator_actions"]
        ]
    return lines


@subscribers_group.command("export")
@click.argument("email")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the JSON to this file (default: standard output).",
)
@click.pass_obj
def subscribers_export(app: App, email: str, output: Path | None) -> None:
    """Write everything held about an address as JSON (a reader's access request)."""
    address = address_argument(email)
    with Store.open(app.settings().database_url, create=False) as store:
        data = held_about(store, address, now=utc_now())
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutboxError(f"{output}: cannot write it: {exc.strerror}") from exc
    click.echo(f"Wrote everything held about {address} to {output}.", err=True)


@subscribers_group.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def subscribers_erase(app: App, email: str, yes: bool) -> None:
    """Delete everything about an address and keep only a keyed hash of it, so that it is
    never imported again (a reader's erasure request)."""
    address = address_argument(email)
    settings = app.settings()
    key = required_key(settings.secret_key, needed_by="erasing an address (its keyed hash)")
    if not yes and not click.confirm(
        f"Erase {address}: its subscription, consent, history and deliveries? "
        "This cannot be undone",
        err=True,
    ):
        raise SystemExit(1)
    with Store.open(settings.database_url) as store:
        found = erase(store, address, secret_key=key, now=utc_now(), by="the operator")
    if found:
        click.echo(f"Erased {address}; only a keyed hash of it is kept.")
    else:
        click.echo(f"Nothing named {address}; its keyed hash is kept all the same.")


@subscribers_group.command("export-list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="CSV with the columns import reads, or a JSON array.",
)
@click.pass_obj
def subscribers_export_list(app: App, status: str | None, form: str) -> None:
    """Write the list with the columns email,name,status,subscribed_at, which import reads.

    Signups not yet confirmed are left out unless asked for with --status pending.
    """
    wanted = SubscriberStatus(status) if status else None
    columns = ["email", "name", "status", "subscribed_at"]
    with Store.open(app.settings().database_url, create=False) as store:
        rows = (
            {
                "email": subscriber.email,
                "name": subscriber.name or "",
                "status": subscriber.status.value,
                "subscribed_at": (
                    subscriber.created_at.isoformat() if subscriber.created_at else ""
                ),
            }
            for subscriber in store.subscribers.iterate(status=wanted)
            # Signups not confirmed are not on the list yet (and import refuses them).
            if wanted is not None or subscriber.status is not SubscriberStatus.PENDING
        )
        if form == "csv":
            writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            return
        # Written as it is read, so a long list is never held in memory whole.
        sys.stdout.write("[")
        for index, row in enumerate(rows):
            sys.stdout.write(("," if index else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        sys.stdout.write("\n]\n")


@subscribers_group.command("expire")
@click.pass_obj
def subscribers_expire(app: App) -> None:
    """Remove signups never confirmed within signup.pending_days (digest schedule does it
    every day)."""
    settings = app.settings()
    with Store.open(settings.database_url) as store:
        removed = remove_unconfirmed(settings, store, now=utc_now())
    click.echo(
        f"Removed {plural(removed, 'signup')} never confirmed within "
        f"{settings.signup.pending_days} days."
    )


@cli.command("form")
@click.pass_obj
def form(app: App) -> None:
    """Print an HTML signup form to paste into any site; it posts to public_url/subscribe."""
    settings = app.settings()
    if settings.public_url is None:
        raise ConfigError(
            "DIGEST_PUBLIC_URL is not set: the form posts to public_url/subscribe, "
            "which digest serve answers"
        )
    name = html.escape(settings.newsletter_name)
    click.echo(
        f"""<!-- {name}: signup form. It posts to digest serve, which asks the reader to
     press Subscribe once more on its own page (a form pasted here cannot carry the
     signed token that keeps bots out), then sends a confirmation mail. -->
<form method="post" action="{html.escape(settings.public_url)}/subscribe">
  <label for="digest-email">Email address</label>
  <input id="digest-email" name="email" type="email" required autocomplete="email">
  <label for="digest-name">Name (optional)</label>
  <input id="digest-name" name="name" type="text" autocomplete="name">
  <div style="position:absolute;left:-10000px" aria-hidden="true">
    <input name="{HONEYPOT_FIELD}" type="text" tabindex="-1" autocomplete="off">
  </div>
  <p>{html.escape(consent_text(settings))}</p>
  <button type="submit">Subscribe to {name}</button>
</form>"""
    )
