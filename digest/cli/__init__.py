"""The ``digest`` command line: thin commands over pipeline and sending, a module a group.

Each command's module is imported when the command is used (``digest.cli.root.COMMANDS``);
importing it registers its commands on :data:`cli`.
"""

from digest.cli.root import cli, main

__all__ = ["cli", "main"]
