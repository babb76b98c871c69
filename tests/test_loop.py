"""Nothing blocks the event loop: the web side answers while a send sets itself up.

Under ``digest schedule --serve`` one event loop runs the scheduled send and the web app
(one-click unsubscribe, /healthz). Loading thousands of seeds, picking, rendering,
freezing and enqueueing take seconds; done on the loop, every request would wait for
them. This test runs a send with 10,000 seeds and the web server on one loop, as that
command does, in a process of its own, and asks /healthz from another thread all along.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from digest import sending
from digest.cli.service import web_server
from digest.settings import Settings, load_settings
from digest.store import Store
from tests.conftest import REPO

SEEDS = 10_000
# The longest a health check may take while the send is being set up.
LIMIT_SECONDS = 0.2
DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC)


def write_seeds(folder: Path, count: int) -> None:
    """``count`` distinct small seed files: a headline, a standfirst, paragraphs, a related story."""
    folder.mkdir()
    body = "\n".join(
        f"Paragraph {n} of the story, with enough words to be read as one paragraph of text."
        for n in range(1, 7)
    )
    for index in range(count):
        (folder / f"{index:05d}_{index:016x}.txt").write_text(
            f"Report number {index} on the state of the harbour works\n"
            f"What the council said about the harbour works, part {index}\n"
            f"{body}\n-\nHarbour\nA related story number {index}\nIts summary, in one line.\n",
            encoding="utf-8",
        )


def loop_settings(workdir: Path) -> Settings:
    """A send of the day's issue to the local outbox, all of it under ``workdir``."""
    write_seeds(workdir / "seeds", SEEDS)
    return load_settings(
        database_url=f"sqlite:///{workdir / 'digest.db'}",
        seeds_dir=workdir / "seeds",
        outbox_dir=workdir / "var" / "outbox",
        from_address="digest@news.example.org",
        secret_key="loop-test-key-of-at-least-32-characters",
        public_url="https://news.example.org",
    )


class HealthProbe:
    """Asks /healthz over and over from its own thread; keeps how long each answer took."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.timings: list[tuple[float, float]] = []  # (asked at, seconds to answer)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            asked = time.monotonic()
            with urllib.request.urlopen(self.url, timeout=30) as response:
                assert response.status == 200
                response.read()
            self.timings.append((asked, time.monotonic() - asked))
            time.sleep(0.02)


def measure(workdir: Path) -> dict[str, Any]:
    """Serve and send on one loop, asking /healthz all along; what it saw, as data.

    Each answer is given as (ms into the send it was asked, ms it took).
    """
    settings = loop_settings(workdir)
    listening = socket.create_server(("127.0.0.1", 0))  # ours: no race for a port
    port = listening.getsockname()[1]
    phases: dict[str, float] = {}

    async def main(store: Store) -> tuple[sending.SendReport, list[tuple[float, float]]]:
        server = web_server(settings, store, "127.0.0.1", port)
        serving = asyncio.create_task(server.serve(sockets=[listening]))
        while not server.started:
            await asyncio.sleep(0.01)
        probe = HealthProbe(port)
        probe.thread.start()
        while not probe.timings:  # the probe is answered before the send starts
            await asyncio.sleep(0.01)
        try:
            phases["send started"] = time.monotonic()
            report = await sending.send_day(settings, store, DAY)
            phases["send finished"] = time.monotonic()
        finally:
            probe.done.set()
            await asyncio.to_thread(probe.thread.join, 30)
            server.should_exit = True
            await serving
        return report, probe.timings

    with Store.open(settings.database_url) as store:
        for n in range(3):
            store.subscribers.add(f"reader{n}@example.org", None, now=NOW)
        report, timings = asyncio.run(main(store))
    start, end = phases["send started"], phases["send finished"]
    return {
        "sent": report.sent,
        "send_ms": (end - start) * 1000,
        "during": [
            [(asked - start) * 1000, seconds * 1000]
            for asked, seconds in timings
            if start <= asked <= end
        ],
    }


@pytest.mark.timeout(300)
def test_healthz_answers_while_a_send_with_10000_seeds_sets_up(tmp_path: Path) -> None:
    # In a process of its own, as digest schedule --serve runs: what earlier tests left in
    # this one (its heap, the coverage tracer) would be measured too, and is not digest's.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DIGEST_", "COV_CORE_", "COVERAGE_"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from pathlib import Path; from tests.test_loop import measure; "
            "print(json.dumps(measure(Path(sys.argv[1]))))",
            str(tmp_path),
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    during = seen["during"]
    assert seen["sent"] == 3
    # Enough answers to have sampled the whole set-up (one every 20 ms or so).
    assert len(during) >= 5, f"only {len(during)} health checks during the send"
    slowest = max(took for _, took in during)
    print(f"{len(during)} health checks during the send, slowest {slowest:.1f} ms")
    shown = ", ".join(f"{asked:.0f}:{took:.0f}" for asked, took in during)
    assert slowest < LIMIT_SECONDS * 1000, (
        f"/healthz took {slowest:.0f} ms during the send's set-up "
        f"(limit {LIMIT_SECONDS * 1000:.0f} ms): something blocks the event loop; "
        f"asked at ms:took ms {shown}"
    )
    # The set-up was long enough to matter: had it run on the loop, a health check waiting
    # for it would have taken over the limit.
    assert seen["send_ms"] > 2 * LIMIT_SECONDS * 1000
