"""`digest preview --serve`: the preview on a local web server that follows every edit.

Before answering, the server checks the seeds, templates and configuration files; if any
changed, it renders the preview again. The page it serves (not the email: that never
carries a script) asks /version every second and reloads itself when it changes.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from digest.content.boilerplate import BUILTIN_RULES
from digest.email.render import BUILTIN_TEMPLATES
from digest.errors import DigestError
from digest.settings import DEFAULT_CONFIG_FILE, Settings

__all__ = ["PreviewServer", "Rendered", "watched_files"]

log = logging.getLogger(__name__)

_RELOAD = """
<script>
(() => {
  let seen = null;
  setInterval(async () => {
    try {
      const version = (await (await fetch("/version")).json()).version;
      if (seen !== null && version !== seen) location.reload();
      seen = version;
    } catch (error) {}
  }, 1000);
})();
</script>
"""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendering of the preview: the three files' contents, or the error instead."""

    version: str
    html: str
    text: str
    eml: bytes
    error: str | None = None


def watched_files(settings: Settings, config_file: Path | None) -> Iterator[Path]:
    """Every file whose change changes the preview."""
    # The shipped templates and rules are files on disk unless digest runs from a zip, whose
    # contents cannot change under the server.
    builtin_templates = BUILTIN_TEMPLATES if isinstance(BUILTIN_TEMPLATES, Path) else None
    for folder, pattern in (
        (settings.seeds_dir, "*.txt"),
        (builtin_templates, "*.j2"),
        (settings.templates_dir, "*.j2"),
    ):
        if folder is not None and folder.is_dir():
            yield from sorted(folder.rglob(pattern))
    yield config_file or DEFAULT_CONFIG_FILE
    rules = settings.boilerplate_file or BUILTIN_RULES
    if isinstance(rules, Path):
        yield rules
    yield Path(".env")


def _fingerprint(paths: Iterator[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            digest.update(f"{path}:-\n".encode())
            continue
        digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}\n".encode())
    return digest.hexdigest()[:16]


class PreviewServer:
    """Serves /, /text, /eml and /version, rendering again when a watched file changes."""

    def __init__(
        self,
        build: Callable[[], tuple[Settings, str, str, bytes]],
        config_file: Path | None,
        *,
        host: str = "127.0.0.1",
        port: int = 8025,
    ) -> None:
        # build() reads the settings afresh and renders; it returns them with the parts.
        self._build = build
        self._config_file = config_file
        self._lock = threading.Lock()
        self._current: Rendered | None = None
        self._settings: Settings | None = None
        self.httpd = ThreadingHTTPServer((host, port), self._handler())

    @property
    def url(self) -> str:
        """Where the preview is served."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def serve_forever(self) -> None:
        """Serve until interrupted."""
        self.current()
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving (from another thread) and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def current(self) -> Rendered:
        """The latest rendering, made again first if a watched file changed."""
        with self._lock:
            settings = self._settings
            version = _fingerprint(watched_files(settings, self._config_file)) if settings else ""
            # Without settings read once yet there is nothing to watch: try again each time.
            if self._current is None or not version or version != self._current.version:
                self._current = self._render()
            return self._current

    def _render(self) -> Rendered:
        try:
            settings, html, text, eml = self._build()
        except DigestError as exc:
            # Whatever an edit broke (a setting, a seed, a template) is shown on the page,
            # and the server goes on: the next edit may fix it.
            log.warning("preview failed: %s", exc)
            version = (
                _fingerprint(watched_files(self._settings, self._config_file))
                if self._settings
                else ""
            )
            return Rendered(version=version, html="", text="", eml=b"", error=str(exc))
        self._settings = settings
        version = _fingerprint(watched_files(settings, self._config_file))
        return Rendered(version=version, html=html, text=text, eml=eml)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rendered = server.current()
                path = self.path.split("?", 1)[0]
                if path == "/version":
                    body = json.dumps({"version": rendered.version}).encode()
                    self._send(body, "application/json")
                elif rendered.error is not None and path in ("/", "/text", "/eml"):
                    error = html.escape(rendered.error)
                    page = (
                        f"<!DOCTYPE html><title>Preview failed</title><pre>{error}</pre>{_RELOAD}"
                    )
                    status = HTTPStatus.INTERNAL_SERVER_ERROR
                    self._send(page.encode(), "text/html; charset=utf-8", status)
                elif path == "/":
                    page = rendered.html.replace("</body>", _RELOAD + "</body>", 1)
                    self._send(page.encode(), "text/html; charset=utf-8")
                elif path == "/text":
                    self._send(rendered.text.encode(), "text/plain; charset=utf-8")
                elif path == "/eml":
                    self._send(rendered.eml, "text/plain; charset=utf-8")
                else:
                    self._send(b"not found\n", "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)

            def _send(
                self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("preview server: " + format, *args)

        return Handler
