"""What the tests' own mail daemons (Postfix, Dovecot) share: a free loopback port to give
them, waiting until they listen, stopping them by their pid file, and their log's end."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

__all__ = ["free_port", "log_tail", "stop_by_pid_file", "wait_for_port"]


def free_port() -> int:
    """A loopback port free now, for a daemon that binds it itself from its configuration.

    Another process taking it before the daemon does is a race the daemon's start would
    show as a clear failure.
    """
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def wait_for_port(port: int, name: str, log: Path, seconds: float = 20) -> None:
    """Return once something listens on ``port``; fail naming ``name`` and its log's end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} does not listen on {port}: {log_tail(log)}")


def stop_by_pid_file(pid_file: Path, seconds: float = 10) -> None:
    """SIGTERM the process the file names, and wait (bounded) until it is gone."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def log_tail(log: Path, lines: int = 20) -> str:
    """The end of a daemon's log, for a failure message."""
    try:
        return "\n".join(log.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"
