"""``digest admin``: the operator's login to /admin."""

from __future__ import annotations

import sys

import click

from digest.cli.root import cli

__all__ = ["MIN_PASSWORD_LENGTH", "admin_group", "set_password"]

# Shorter is guessable however it is hashed.
MIN_PASSWORD_LENGTH = 12


@cli.group("admin")
def admin_group() -> None:
    """The operator's pages at /admin: their password."""


@admin_group.command("set-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from stdin.")
def set_password(from_stdin: bool) -> None:
    """Make the argon2 hash of a new /admin password, to put in admin.password_hash.

    Asks for the password twice (or reads one line from stdin); prints the setting to add.
    A new password ends every session made with the old one.
    """
    from digest.web.adminauth import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(
            f"the password must be at least {MIN_PASSWORD_LENGTH} characters",
            param_hint="password",
        )
    hashed = hash_password(password)
    click.echo("Add this to config/digest.toml, in the [admin] table:")
    click.echo(f'password_hash = "{hashed}"')
    click.echo(f"or set DIGEST_ADMIN__PASSWORD_HASH='{hashed}' for digest serve.")
