"""Benchmark: how long ``POST /subscribe`` takes to answer, by what the address is.

The answer must not say whether an address is on the list, in its time either. In one
run, against ``digest serve``'s app under uvicorn on 127.0.0.1 (SQLite in a temporary
folder, mail to the local outbox), it posts the form for addresses that are new, pending
(signed up a moment ago), active, bounced, and for a bot that fills the hidden field; each
post after the previous signup's work (done after its answer) has finished. It prints
the median and 90th percentile per kind and each median's ratio to the new addresses';
the last line is one JSON object. Target: every ratio between 0.5 and 2.

Run it with `.venv/bin/python bench/signup.py [--posts N]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import socket
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import uvicorn

from digest.audience.signup import HONEYPOT_FIELD, TOKEN_FIELD
from digest.models import SubscriberStatus
from digest.settings import load_settings
from digest.store import Store
from digest.web.app import create_app

KEY = "benchmark-key-of-at-least-32-characters"
# Long enough for the previous post's confirmation mail to be built and written.
SETTLE_SECONDS = 0.15


class Clock:
    """The app's clock, moved past the form's two seconds without waiting them."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100, help="posts of each kind")
    posts = parser.parse_args().posts
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        settings = load_settings(
            env_file=None,
            public_url="https://news.example.org",
            secret_key=KEY,
            outbox_dir=work / "outbox",
            database_url=f"sqlite:///{work}/digest.db",
            signup={"per_ip_per_hour": 1_000_000, "per_address_per_hour": 1_000_000},
        )
        clock = Clock()
        with Store.open(settings.database_url) as store:
            for index in range(posts):
                store.subscribers.add(f"active{index}@example.org", None, now=clock.now)
                store.subscribers.add(f"gone{index}@example.org", None, now=clock.now)
                store.subscribers.set_status(
                    f"gone{index}@example.org", SubscriberStatus.BOUNCED, now=clock.now
                )
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            base = f"http://127.0.0.1:{listener.getsockname()[1]}"
            server = uvicorn.Server(
                uvicorn.Config(create_app(settings, store, clock=clock), log_level="warning")
            )
            thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
            thread.start()
            while not server.started:
                time.sleep(0.01)
            try:
                results = measure(base, clock, posts)
            finally:
                server.should_exit = True
                thread.join()
    report(results)


def measure(base: str, clock: Clock, posts: int) -> dict[str, list[float]]:
    """Milliseconds per answer, by kind of address."""

    def post(email: str, honeypot: str = "") -> float:
        with urllib.request.urlopen(base + "/subscribe") as page:
            found = re.search(rf'name="{TOKEN_FIELD}" value="([^"]+)"', page.read().decode())
        assert found is not None
        clock.now += dt.timedelta(seconds=5)
        body = urllib.parse.urlencode(
            {"email": email, TOKEN_FIELD: found[1], HONEYPOT_FIELD: honeypot}
        ).encode()
        start = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(base + "/subscribe", data=body)) as r:
            r.read()
            assert r.status == 200
        elapsed = (time.perf_counter() - start) * 1000
        time.sleep(SETTLE_SECONDS)
        return elapsed

    kinds: list[tuple[str, Callable[[int], float]]] = [
        ("new", lambda i: post(f"new{i}@example.org")),
        ("pending", lambda i: post(f"new{i}@example.org")),
        ("active", lambda i: post(f"active{i}@example.org")),
        ("bounced", lambda i: post(f"gone{i}@example.org")),
        ("bot", lambda i: post(f"bot{i}@example.org", honeypot="http://spam.example")),
    ]
    return {kind: [make(index) for index in range(posts)] for kind, make in kinds}


def report(results: dict[str, list[float]]) -> None:
    reference = statistics.median(results["new"])
    summary: dict[str, float] = {}
    print(f"{'address':10} {'median ms':>10} {'p90 ms':>8} {'ratio':>6}")
    for kind, times in results.items():
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        summary[f"{kind}_ratio"] = round(median / reference, 2)
        print(f"{kind:10} {median:10.2f} {p90:8.2f} {median / reference:6.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
