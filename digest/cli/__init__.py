"""The ``digest`` command line: thin commands over pipeline and sending, a module a group.

Importing the command modules registers their commands on :data:`cli`.
"""

from digest.cli import check, content, send, service, subscribers
from digest.cli.root import cli, main

__all__ = ["check", "cli", "content", "main", "send", "service", "subscribers"]
