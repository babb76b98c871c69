"""The long-running commands: ``digest serve`` and ``digest schedule``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import Any

import click

from digest import eventloop
from digest.cli.root import App, cli
from digest.delivery import transport as transports
from digest.errors import ServiceError
from digest.settings import Settings
from digest.store import Store

__all__ = ["HOST_OPTION", "PORT_OPTION", "listening_socket", "schedule", "serve", "web_server"]

log = logging.getLogger(__name__)


HOST_OPTION = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
PORT_OPTION = click.option(
    "--port", type=click.IntRange(0, 65535), default=8025, show_default=True, help="Port."
)


@cli.command()
@HOST_OPTION
@PORT_OPTION
@click.pass_obj
def serve(app: App, host: str, port: int) -> None:
    """Serve one-click unsubscribe, the web archive and /healthz (behind your proxy).

    POST /unsubscribe/TOKEN unsubscribes at once (RFC 8058); GET shows a page with a
    button. /issues lists the issues sent, /issues/YYYY-MM-DD shows one as sent.
    """
    settings = app.settings()
    _log_for_service(app)
    listening = listening_socket(host, port)
    with listening, Store.open(settings.database_url) as store:
        server = web_server(settings, store, host, port)
        eventloop.run(server.serve(sockets=[listening]))


@cli.command()
@click.option("--serve", "with_server", is_flag=True, help="Also run `digest serve` here.")
@click.option(
    "--worker",
    is_flag=True,
    help="Send as one of several workers sharing each issue (PostgreSQL).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the schedule another running digest schedule keeps, if it differs.",
)
@HOST_OPTION
@PORT_OPTION
@click.pass_obj
def schedule(
    app: App, with_server: bool, worker: bool, host: str, port: int, replace: bool
) -> None:
    """Send the digest every day at schedule.cron in schedule.timezone, in the foreground.

    The schedule's state is kept in the database: a send missed while this was not
    running is made on restart if within schedule.misfire_grace_seconds, else skipped
    (the log says so). At start and before each run, the sends of the last
    schedule.catch_up_days days left unfinished (killed, or stopped) are finished first;
    a send that stops is tried again schedule.retry_minutes later, the same day. SIGINT
    or SIGTERM: no new runs; a send under way finishes and is recorded (up to
    schedule.stop_timeout_seconds), then it exits.
    """
    settings = app.settings()
    if settings.smtp.relays:
        transports.check_ready_for_relay(settings)
    _log_for_service(app)
    # Imported here: the other commands need no scheduler.
    from digest.schedule import Scheduler

    async def run(store: Store) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            server = web_server(settings, store, host, port) if listening else None
            scheduler = Scheduler(settings, store, worker=worker, replace=replace)
            await scheduler.run(
                stop,
                also=server.serve(sockets=[listening]) if server and listening else None,
                stop_also=(lambda: setattr(server, "should_exit", True)) if server else None,
            )
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    # Bound before anything starts: a port in use stops the command, not the scheduler.
    listening = listening_socket(host, port) if with_server else None
    with Store.open(settings.database_url) as store:
        try:
            eventloop.run(run(store))
        finally:
            if listening is not None:
                listening.close()
    log.info("stopped")


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound here: a port in use is one line and exit 1, not a log."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family)
    except OSError as exc:
        # Not exc.strerror: asyncio-style wrappers add the address to it, said here already.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ServiceError(f"cannot serve on {host}:{port} (--host, --port): {reason}") from exc
    # uvicorn says where it listens only for a socket it bound itself: said here (the port
    # is the one the system gave, for --port 0). It listens already: requests wait.
    shown = f"[{host}]" if ":" in host else host
    log.info("serving on http://%s:%d", shown, listening.getsockname()[1])
    return listening


def web_server(settings: Settings, store: Store, host: str, port: int) -> Any:
    import uvicorn

    from digest.web.app import HideTokens, create_app

    config = uvicorn.Config(
        create_app(settings, store),
        host=host,
        port=port,
        lifespan="off",
        log_level="info",
        # The proxy in front is trusted for the client's address, nothing else.
        proxy_headers=True,
        server_header=False,
    )
    # uvicorn's access log writes each request's path, and an unsubscribe link's path is
    # its token: added after the Config, which (re)configures uvicorn's loggers.
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, HideTokens) for existing in logger.filters):
            logger.addFilter(HideTokens())
    return uvicorn.Server(config)


def _log_for_service(app: App) -> None:
    """Long-running commands: their log is their output, with times."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("digest").setLevel(logging.DEBUG if app.verbose else logging.INFO)
