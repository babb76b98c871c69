"""The ``digest`` group: its global options, the error boundary, and the entry point."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest import __version__
from digest.errors import DigestError

if TYPE_CHECKING:
    from digest.settings import Settings

__all__ = [
    "COMMANDS",
    "DATE_OPTION",
    "SEEDS_OPTION",
    "App",
    "DigestGroup",
    "cli",
    "command_modules",
    "every_command",
    "issue_date",
    "main",
]

# Each command's modules (the first defines it; the others add subcommands to its group)
# and its one-line help. A module is imported only when one of its commands runs or shows
# its own help, so `digest --help` and `digest --version` import none (and none of
# SQLAlchemy, pydantic, premailer, starlette), and `digest send` not the bounce readers or
# the web server. The help here is the command's own first line (tests/test_cli.py checks
# that they agree, and that each command has all its subcommands in a fresh process).
COMMANDS: dict[str, tuple[str | tuple[str, ...], str]] = {
    "admin": ("digest.cli.admin", "The operator's pages at /admin: their password."),
    "bounces": (
        "digest.cli.bounces",
        "Read bounces, complaints and unsubscribe mails, and see what they did.",
    ),
    "check": (
        "digest.cli.check",
        "Check, without sending anything, what would make the day's send fail or land in spam.",
    ),
    "form": (
        "digest.cli.readers",
        "Print an HTML signup form to paste into any site; it posts to public_url/subscribe.",
    ),
    "load": (
        "digest.cli.content",
        "Parse seed files (or directories of *.txt files; default: the seeds directory).",
    ),
    "pick": (
        "digest.cli.content",
        "Pick the articles for a day's issue and freeze them, or show the issue already frozen.",
    ),
    "preview": (
        "digest.cli.content",
        "Render the day's digest exactly as a send would, for a sample subscriber, and write it.",
    ),
    "schedule": (
        "digest.cli.service",
        "Send the digest every day at schedule.cron in schedule.timezone, in the foreground.",
    ),
    "send": (
        "digest.cli.send",
        "Send the day's digest to every active subscriber who has not had it yet.",
    ),
    "serve": (
        "digest.cli.service",
        "Serve one-click unsubscribe, the web archive and /healthz (behind your proxy).",
    ),
    "status": (
        "digest.cli.send",
        "How the issue's sending stands: pending, claimed, sent, failed, per worker, the rate.",
    ),
    "subscribers": (
        ("digest.cli.subscribers", "digest.cli.readers"),
        "Manage the subscriber list: add, import, list, unsubscribe, resubscribe, remove.",
    ),
}


@dataclass(frozen=True, slots=True)
class App:
    """What the top-level options decide for every command."""

    config_file: Path | None
    verbose: bool

    def settings(self, **overrides: Any) -> Settings:
        """Settings from every source, with the command's own options on top."""
        from digest.settings import load_settings

        return load_settings(self.config_file, **overrides)


class DigestGroup(click.Group):
    """Turns a :class:`DigestError` into ``Error: ...`` and exit status 1; loads each
    command's module when the command is asked for (:data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            # Importing a module registers its commands on this group (once: imported
            # modules are not run again).
            for module in command_modules(cmd_name):
                importlib.import_module(module)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing from COMMANDS, as click would write it, without loading a module.
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


def command_modules(name: str) -> tuple[str, ...]:
    """The modules that define the top-level command ``name`` and its subcommands."""
    modules = COMMANDS[name][0]
    return (modules,) if isinstance(modules, str) else modules


def every_command() -> dict[str, click.Command]:
    """Every top-level command, each module loaded (for the documentation's checks)."""
    context = click.Context(cli)
    found = {name: cli.get_command(context, name) for name in cli.list_commands(context)}
    return {name: command for name, command in found.items() if command is not None}


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="digest")
