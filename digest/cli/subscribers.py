"""The subscriber list: ``digest subscribers add/import/list/unsubscribe/resubscribe/remove``."""

from __future__ import annotations

import getpass
import json
import logging
import os
from pathlib import Path

import click

from digest.audience.subscribers import (
    CsvRow,
    decode_csv,
    normalise_name,
    read_csv,
)
from digest.audience.tokens import required_key
from digest.cli.output import address_argument, plural
from digest.cli.root import App, cli
from digest.clock import utc_now
from digest.errors import InputError, InvalidName
from digest.models import JoinedVia, SubscriberStatus
from digest.readers import operator
from digest.readers.erasure import address_hash
from digest.settings import Settings
from digest.store import Store
from digest.store.consent import Evidence
from digest.store.subscribers import ListEntry

log = logging.getLogger(__name__)

__all__ = [
    "subscribers_add",
    "subscribers_group",
    "subscribers_import",
    "subscribers_list",
    "subscribers_remove",
    "subscribers_resubscribe",
    "subscribers_unsubscribe",
]


@cli.group("subscribers")
def subscribers_group() -> None:
    """Manage the subscriber list: add, import, list, unsubscribe, resubscribe, remove."""


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", help="The subscriber's name, used in the To header.")
@click.option(
    "--force",
    is_flag=True,
    help="Also an address erased at its reader's request (when they asked to come back).",
)
@click.pass_obj
def subscribers_add(app: App, email: str, name: str | None, force: bool) -> None:
    """Add one address to the list (syntax checked; no DNS look-up)."""
    address = address_argument(email)
    try:
        checked_name = normalise_name(name)
    except InvalidName as exc:
        raise InvalidName(f"--name: {exc}") from exc
    settings = app.settings()
    with Store.open(settings.database_url) as store:
        _unless_erased(settings, store, address, force=force)
        subscriber, added = store.subscribers.add(
            address, checked_name, now=utc_now(), source="cli"
        )
        why = (
            operator.suppression(store, subscriber.email)
            if subscriber.status in operator.SUPPRESSED
            else ""
        )
    if why:
        # Removed and added again, a bounced or complained address comes back suppressed.
        done = "added back, still suppressed" if added else "left as it is"
        click.echo(
            f"{subscriber.email} is suppressed ({why}); {done}. Only `digest "
            f"subscribers resubscribe {subscriber.email} --force` sends to it again."
        )
    elif added:
        click.echo(f"Added {subscriber.email}.")
    elif subscriber.status is SubscriberStatus.ACTIVE:
        click.echo(f"{subscriber.email} is already on the list; left as it is.")
    elif subscriber.status is SubscriberStatus.PENDING:
        click.echo(
            f"{subscriber.email} signed up and has not confirmed yet; left as it is: it is "
            "sent nothing but the confirmation until its reader confirms."
        )
    else:
        # Never silently undone: they left, or their mailbox bounced. An operator may
        # bring them back on purpose, and the command says how.
        click.echo(
            f"{subscriber.email} is already on the list ({subscriber.status}); left as it "
            f"is. To send to it again: digest subscribers resubscribe {subscriber.email}"
        )


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source",
    default="import",
    show_default=True,
    help="A label kept with the new addresses; remove --source takes them all off again.",
)
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="The file's encoding, e.g. latin-1 for a CSV saved by Excel on Windows.",
)
@click.option(
    "--note",
    help="Kept with each new address as its consent: where the list came from, and how "
    "its readers agreed.",
)
@click.pass_obj
def subscribers_import(
    app: App, csv_file: Path, source: str, encoding: str, note: str | None
) -> None:
    """Import a CSV file with the columns email,name and optionally status,subscribed_at;
    importing it again changes nothing.

    Statuses are kept: an active address the file says has left (unsubscribed, bounced,
    complained) takes that status, and no address is ever made active again. Rows that
    cannot be imported are listed with their line numbers, the others are imported; the
    exit status is then 1.
    """
    try:
        data = csv_file.read_bytes()
    except OSError as exc:
        raise InputError(f"{csv_file}: cannot read it: {exc.strerror}") from exc
    rows = read_csv(decode_csv(data, str(csv_file), encoding))
    settings = app.settings()
    with Store.open(settings.database_url) as store:
        rows = _without_erased(settings, store, rows)
        errors = [row for row in rows if row.error is not None]
        repeats = [row for row in rows if row.repeat_of is not None]
        valid = [
            ListEntry(
                email=row.email,
                name=row.name,
                status=row.status or SubscriberStatus.ACTIVE,
                subscribed_at=row.subscribed_at,
            )
            for row in rows
            if row.email is not None
        ]
        evidence = Evidence(method=JoinedVia.IMPORT, file_name=csv_file.name, note=note)
        counts = store.subscribers.import_entries(
            valid, now=utc_now(), source=source, evidence=evidence
        )
        # The file wanted these active, and they are suppressed: said, with why. (One the
        # file itself says bounced is simply imported so.)
        suppressed = store.subscribers.suppressed(
            entry.email for entry in valid if entry.status is SubscriberStatus.ACTIVE
        )
        reasons = {key: operator.suppression(store, key) for key in suppressed}
    for row in errors:
        click.echo(f"error: {csv_file}:{row.line}: {row.error}", err=True)
    for row in rows:
        if row.email is not None and row.email.casefold() in reasons:
            click.echo(
                f"note: {csv_file}:{row.line}: {row.email} is suppressed "
                f"({reasons[row.email.casefold()]}): not reactivated",
                err=True,
            )
    for row in repeats:
        click.echo(f"note: {csv_file}:{row.line}: same address as line {row.repeat_of}", err=True)
    repeated = f"{len(repeats)} repeated in the file, " if repeats else ""
    held = f" ({len(suppressed)} of them suppressed)" if suppressed else ""
    known = counts.updated + counts.unchanged
    changed = f" ({counts.updated} given the file's status)" if counts.updated else ""
    click.echo(
        f"{plural(counts.added, 'subscriber')} added, {known} already on the list{held}{changed}, "
        f"{repeated}{plural(len(errors), 'row')} refused."
    )
    if errors:
        raise SystemExit(1)


def _unless_erased(settings: Settings, store: Store, address: str, *, force: bool) -> None:
    """Refuse to add an erased address, unless ``force`` (which forgets the erasure)."""
    if not store.erasures.any():
        return
    key = required_key(settings.secret_key, needed_by="adding (to recognise erased addresses)")
    hashed = address_hash(key, address)
    when = store.erasures.erased_at([hashed]).get(hashed)
    if when is None:
        return
    if not force:
        raise InputError(
            f"{address} was erased at its reader's request on {when.date().isoformat()}; "
            "add it again only if they asked to come back, with --force"
        )
    store.erasures.forget(hashed)
    log.warning("an erased address was added back by %s", _operator())


def _without_erased(settings: Settings, store: Store, rows: list[CsvRow]) -> list[CsvRow]:
    """``rows`` with each erased address refused: erased at its reader's request, it is
    never added back silently."""
    if not store.erasures.any():
        return rows
    key = required_key(settings.secret_key, needed_by="an import (to recognise erased addresses)")
    hashes = {row.line: address_hash(key, row.email) for row in rows if row.email is not None}
    erased = store.erasures.erased_at(hashes.values())
    checked = []
    for row in rows:
        when = erased.get(hashes.get(row.line, ""))
        if when is not None:
            row = CsvRow(
                line=row.line,
                error=f"{row.email} was erased at its reader's request on "
                f"{when.date().isoformat()}: not imported",
            )
        checked.append(row)
    return checked


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
        found = store.subscribers.iterate(status=wanted)
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
    address = address_argument(email)
    with Store.open(app.settings().database_url) as store:
        change = operator.unsubscribe(
            store, address, via="digest subscribers unsubscribe", by=_operator(), now=utc_now()
        )
    if change.after is SubscriberStatus.UNSUBSCRIBED:
        click.echo(f"Unsubscribed {change.email}.")
    else:
        click.echo(f"{change.email} is {change.after}; left as it is.")


@subscribers_group.command("resubscribe")
@click.argument("email")
@click.option(
    "--force",
    is_flag=True,
    help="Also for a suppressed address (bounced, or it reported the digest as spam), or "
    "one that signed up and never confirmed.",
)
@click.pass_obj
def subscribers_resubscribe(app: App, email: str, force: bool) -> None:
    """Send to an unsubscribed address again; a suppressed one (bounced, complained) only
    with --force. Logged with who and when."""
    address = address_argument(email)
    with Store.open(app.settings().database_url) as store:
        change = operator.resubscribe(
            store,
            address,
            via="digest subscribers resubscribe",
            by=_operator(),
            now=utc_now(),
            force=force,
        )
    if not change.changed:
        click.echo(f"{change.email} is active already; nothing changed.")
    else:
        click.echo(f"Resubscribed {change.email} (was {change.before}).")


def _operator() -> str:
    """Who runs this command, as the system knows them."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name for this uid (a container, say)
        return f"uid {os.getuid()}"


@subscribers_group.command("remove")
@click.argument("email", required=False)
@click.option("--source", help="Remove every address imported with this --source (e.g. example).")
@click.pass_obj
def subscribers_remove(app: App, email: str | None, source: str | None) -> None:
    """Delete an address from the list altogether, or every address of one --source."""
    if (email is None) == (source is None):
        raise click.UsageError("give an EMAIL or --source LABEL (one of them)")
    with Store.open(app.settings().database_url) as store:
        if source is not None:
            removed = store.subscribers.remove_source(source)
            click.echo(f"Removed {plural(removed, 'subscriber')} of source {source!r}.")
            return
        assert email is not None
        address = address_argument(email)
        operator.remove(store, address)
    click.echo(f"Removed {address}.")
