"""``digest check``: the pre-send check, a line per check, nothing sent."""

from __future__ import annotations

import datetime as dt
import json

import click

from digest import checks, eventloop, pipeline
from digest.cli.root import DATE_OPTION, App, cli
from digest.store import Store

__all__ = ["check"]


@cli.command()
@DATE_OPTION
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {name, status, detail}.")
@click.pass_obj
def check(app: App, date_: dt.datetime | None, as_json: bool) -> None:
    """Check, without sending anything, what would make the day's send fail or land in spam.

    The settings a real send needs, each relay (connect, EHLO, TLS, AUTH, QUIT), and the
    message as a send would build it. One line per check: ok, warn or FAIL, with what to
    do. Exit status 0 when nothing failed, 1 otherwise.
    """
    settings = app.settings()
    day = date_.date() if date_ else pipeline.today(settings)
    found = checks.check_settings(settings)
    if settings.smtp.relays:
        found += eventloop.run(checks.check_relay(settings.smtp))
    with Store.open(settings.database_url) as store:
        found += checks.check_message(settings, store, day)
    if as_json:
        click.echo(
            json.dumps(
                [{"name": c.name, "status": c.status, "detail": c.detail} for c in found],
                ensure_ascii=False,
            )
        )
    else:
        for result in found:
            click.echo(result.line())
    if checks.failed(found):
        raise SystemExit(1)
