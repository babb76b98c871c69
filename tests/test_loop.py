"""Nothing blocks the event loop: the web side answers while a send sets itself up.

Under ``digest schedule --serve`` one event loop runs the scheduled send and the web app
(one-click unsubscribe, /healthz). Loading thousands of seeds, picking, rendering,
freezing and enqueueing take seconds; done on the loop, every request would wait for
them. This test runs a send with 10,000 seeds and the web server on one loop, as that
command does, and asks /healthz from another thread all along.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from digest import sending
from digest.cli.service import web_server
from digest.settings import Settings, load_settings
from digest.store import Store

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


@pytest.fixture
def settings(workdir: Path) -> Settings:
    write_seeds(workdir / "seeds", SEEDS)
    return load_settings(
        database_url=f"sqlite:///{workdir / 'digest.db'}",
        seeds_dir=workdir / "seeds",
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


@pytest.mark.timeout(300)
def test_healthz_answers_while_a_send_with_10000_seeds_sets_up(
    settings: Settings, request: pytest.FixtureRequest
) -> None:
    listening = socket.create_server(("127.0.0.1", 0))  # ours: no race for a port
    port = listening.getsockname()[1]
    phases: dict[str, float] = {}

    async def main(store: Store) -> sending.SendReport:
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
        phases["probes"] = len(probe.timings)
        during = [
            seconds
            for asked, seconds in probe.timings
            if phases["send started"] <= asked <= phases["send finished"]
        ]
        # Enough answers to have sampled the whole set-up (one every 20 ms or so, fewer on
        # a loaded machine).
        assert len(during) >= 5, f"only {len(during)} health checks during the send"
        slowest = max(during)
        print(f"{len(during)} health checks during the send, slowest {slowest * 1000:.1f} ms")
        # Each answer, by when it was asked (ms into the send): where a slow one falls.
        shown = ", ".join(
            f"{(asked - phases['send started']) * 1000:.0f}:{seconds * 1000:.0f}"
            for asked, seconds in probe.timings
            if phases["send started"] <= asked <= phases["send finished"]
        )
        assert slowest < LIMIT_SECONDS, (
            f"/healthz took {slowest * 1000:.0f} ms during the send's set-up "
            f"(limit {LIMIT_SECONDS * 1000:.0f} ms): something blocks the event loop; "
            f"asked at ms:took ms {shown}"
        )
        return report

    # What the rest of the test session left on the heap is not digest's: frozen out of
    # the collector's reach, so a full collection during the send (which holds the GIL,
    # whichever thread runs it) scans only what this send makes, as in a fresh process.
    gc.collect()
    gc.freeze()
    request.addfinalizer(gc.unfreeze)
    with Store.open(settings.database_url) as store:
        for n in range(3):
            store.subscribers.add(f"reader{n}@example.org", None, now=NOW)
        report = asyncio.run(main(store))
    assert report.sent == 3
    # The set-up was long enough to matter: had it run on the loop, a health check waiting
    # for it would have taken over the limit (on a fast machine it takes about 0.5 s).
    assert phases["send finished"] - phases["send started"] > 2 * LIMIT_SECONDS
