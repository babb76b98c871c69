"""Benchmark: 1, 2 and 4 `digest send --worker` processes sharing one issue on PostgreSQL.

In one run, on 127.0.0.1: N subscribers in a fresh PostgreSQL schema, one Postfix
`smtp-sink`; for each worker count the issue's deliveries are cleared and that many
workers send it together, each with its own connections. It prints msgs/s for each count
and the scaling against one worker; the last line is one JSON object.

It installs nothing: smtp-sink comes with Debian's postfix package (`apt-get install
postfix`, then `postfix stop`), and PostgreSQL is the one in DIGEST_BENCH_POSTGRES_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/test). Run it with
`.venv/bin/python bench/scale.py [--subscribers N]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from digest import pipeline
from digest.settings import load_settings
from digest.store import Store

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from send import digest_env, free_port, wait_for  # noqa: E402  (the sibling benchmark's helpers)

WORKER_COUNTS = (1, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per worker")
    args = parser.parse_args()
    # Stopped with SIGTERM, still drop the schema (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    sink = shutil.which("smtp-sink")
    if not sink:
        print("smtp-sink not found: apt-get install postfix (then: postfix stop)")
        raise SystemExit(2)
    base = os.environ.get(
        "DIGEST_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    schema = f"digest_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    database = url.render_as_string(hide_password=False)
    rates: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            shutil.copytree(REPO / "config", work / "config")
            shutil.copytree(REPO / "seeds", work / "seeds")
            now = dt.datetime.now(dt.UTC)
            day = now.date()
            os.chdir(work)
            settings = load_settings(database_url=database)
            with Store.open(database) as store:
                store.subscribers.import_rows(
                    ((f"reader{n}@example.org", None) for n in range(args.subscribers)), now=now
                )
                pipeline.build_issue(settings, store, day, now=now)

            port = free_port()
            sink_process = subprocess.Popen(
                [sink, "-u", os.environ.get("USER", "root"), f"127.0.0.1:{port}", "1024"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for(port)
                env = digest_env(database, port, args.concurrency)
                for count in WORKER_COUNTS:
                    with admin.begin() as connection:
                        connection.execute(text(f'DELETE FROM "{schema}".deliveries'))
                    start = time.perf_counter()
                    workers = [
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "digest",
                                "send",
                                "--worker",
                                "--date",
                                str(day),
                            ],
                            cwd=work,
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            text=True,
                        )
                        for _ in range(count)
                    ]
                    for process in workers:
                        _, err = process.communicate()
                        if process.returncode != 0:
                            raise SystemExit(f"a worker failed: {err}")
                    seconds = time.perf_counter() - start
                    rates[count] = args.subscribers / seconds
                    print(
                        f"{count} worker{'s' if count > 1 else ' '}: {seconds:6.1f} s, "
                        f"{rates[count]:,.0f} msg/s, x{rates[count] / rates[1]:.2f} of one worker",
                        flush=True,
                    )
            finally:
                sink_process.terminate()
                sink_process.wait(timeout=10)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    print(f"subscribers: {args.subscribers:,}; {args.concurrency} connections per worker")
    print(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "msgs_per_s": {str(count): round(rate, 1) for count, rate in rates.items()},
                "scaling": {str(count): round(rate / rates[1], 2) for count, rate in rates.items()},
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
