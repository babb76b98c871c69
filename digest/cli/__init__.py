"""The ``digest`` command line: thin commands over pipeline and sending, a module a group.

Importing the command modules registers their commands on :data:`cli`.
"""

from digest.cli import bounces, check, content, readers, send, service, subscribers
from digest.cli.root import cli, main

__all__ = [
    "bounces",
    "check",
    "cli",
    "content",
    "main",
    "readers",
    "send",
    "service",
    "subscribers",
]
