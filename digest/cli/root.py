"""The ``digest`` group: its global options, the error boundary, and the entry point."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from digest import __version__
from digest.errors import DigestError
from digest.settings import Settings, load_settings

__all__ = ["DATE_OPTION", "SEEDS_OPTION", "App", "DigestGroup", "cli", "issue_date", "main"]


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


def issue_date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """``--date`` as YYYY-MM-DD; anything else is "not a date", whatever is wrong with it."""
    if value is None:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


DATE_OPTION = click.option(
    "--date",
    "date_",
    metavar="YYYY-MM-DD",
    callback=issue_date,
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="digest")
