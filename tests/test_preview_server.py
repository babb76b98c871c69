"""`digest preview --serve`: a real server on a free port, and a seed edited under it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest import pipeline
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.web.preview import PreviewServer

from .conftest import SEED


def build() -> tuple[Settings, str, str, bytes]:
    settings = load_settings()
    with Store.open(settings.database_url) as store:
        result = pipeline.preview(
            settings, store, pipeline.today(settings), out_dir=settings.preview_dir
        )
    return (
        settings,
        result.html_path.read_text(encoding="utf-8"),
        result.text_path.read_text(encoding="utf-8"),
        result.eml_path.read_bytes(),
    )


@pytest.fixture
def server(project: Path) -> Iterator[PreviewServer]:
    running = PreviewServer(build, None, port=0)
    running.current()  # rendered before the test edits anything
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    thread.join(timeout=5)


def get(server: PreviewServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_serves_the_three_parts(server: PreviewServer) -> None:
    status, kind, page = get(server, "/")
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert "Bashar al-Assad" in page
    assert 'fetch("/version")' in page

    status, kind, text = get(server, "/text")
    assert (status, kind) == (200, "text/plain; charset=utf-8")
    assert text.startswith("THE DIGEST\n")

    status, _, eml = get(server, "/eml")
    assert status == 200
    assert "List-Unsubscribe:" in eml
    assert get(server, "/nope")[0] == 404
    # The file written for the editor is the email itself, without the reload script.
    assert "fetch(" not in Path("var/preview/digest.html").read_text(encoding="utf-8")


def test_an_edited_seed_is_rendered_again(server: PreviewServer, project: Path) -> None:
    before = json.loads(get(server, "/version")[2])["version"]
    seed = project / "seeds" / SEED.name
    seed.write_text(
        seed.read_text(encoding="utf-8").replace(
            "Bashar al-Assad 'informed'", "Assad 'kept informed'", 1
        ),
        encoding="utf-8",
    )
    os.utime(seed, ns=(seed.stat().st_mtime_ns + 10**9, seed.stat().st_mtime_ns + 10**9))

    after = json.loads(get(server, "/version")[2])["version"]

    assert after != before
    assert "Assad ‘kept informed’ on US-led airstrikes" in get(server, "/text")[2]


def test_an_error_is_shown_and_the_server_keeps_going(server: PreviewServer, project: Path) -> None:
    seed = project / "seeds" / SEED.name
    original = seed.read_bytes()
    seed.unlink()

    status, _, page = get(server, "/")
    assert status == 500
    assert "nothing to preview" in page

    seed.write_bytes(original)
    assert get(server, "/")[0] == 200


def test_the_command_serves_until_interrupted(project: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DIGEST_TEST_POSTGRES_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "preview", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        with urllib.request.urlopen(url[0], timeout=30) as response:
            assert "Bashar al-Assad" in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert out.strip() == "Stopped."
