"""``digest check``: the pre-send check, a line per check, nothing sent."""

from __future__ import annotations

import datetime as dt
import json

import click

from digest import checks, eventloop, pipeline
from digest.cli.root import DATE_OPTION, App, cli

__all__ = ["check"]


@cli.command()
@DATE_OPTION
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {name, status, detail}.")
@click.pass_obj
def check(app: App, date_: dt.datetime | None, as_json: bool) -> None:
    """Check, without sending anything, what would make the day's send fail or land in spam.

    The settings a real send needs, each relay (connect, EHLO, TLS, AUTH, QUIT), the From
    domain's DNS (SPF, DMARC, the DKIM key), and the message as a send would build it,
    scored by SpamAssassin where installed. One line per check: ok, warn, FAIL or skip, with
    what to do. Exit status 0 when nothing failed, 1 otherwise.
    """
    settings = app.settings()
    day = date_.date() if date_ else pipeline.today(settings)
    found = eventloop.run(checks.run_checks(settings, day))
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
