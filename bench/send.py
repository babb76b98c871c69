"""Benchmark: `digest send` end to end against Postfix's smtp-sink, next to smtp-source.

In one run, on 127.0.0.1:
- `digest send` (a subprocess, so its own peak memory can be read) sends the seed issue
  to N subscribers in a fresh SQLite database through smtp-sink: personalising, sending
  and recording each delivery;
- `smtp-source` sends N messages of the same size, over 20 sessions, to the same sink.

It prints both rates, their ratio and digest's peak RSS; the last line is one JSON
object with digest_msgs_per_s, smtp_source_msgs_per_s, ratio and peak_rss_mb. Targets: a
ratio of at least 0.5 (0.8 the aim beyond it), and peak memory under 300 MB that does not
grow with N (try --subscribers 200000). With --dkim every copy is DKIM-signed too (a
2048-bit RSA key made for the run): the ratio is reported, the target is for unsigned.

With `--greylist` it measures instead what a relay that answers 451 to every first
attempt (greylisting, a throttling relay) costs: `digest send` of N copies (300 unless
--subscribers says) to an aiosmtpd sink in a process of its own (tests/smtp_sink.py),
once answering every attempt and once greylisting, each into a fresh database. A copy
refused for now waits in the delay queue, not on its connection, so the target is the
no-fault time plus twice `smtp.retry_delay` plus one second.

It installs nothing: smtp-sink and smtp-source come with Debian's postfix package
(`apt-get install postfix`, then `postfix stop` if it started). Run it with
`.venv/bin/python bench/send.py [--subscribers N]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digest.store import Store

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
TARGET_RSS_MB = 300.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"smtp-sink did not start on port {port}")


def digest_env(
    database: str,
    port: int,
    concurrency: int,
    bounce_address: str | None = None,
    dkim_key: Path | None = None,
) -> dict[str, str]:
    """The environment of a `digest send` through the local sink, and nothing of ours."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")}
    if bounce_address:
        env["DIGEST_BOUNCE_ADDRESS"] = bounce_address
    if dkim_key is not None:
        env["DIGEST_DKIM__PRIVATE_KEY_FILE"] = str(dkim_key)
        env["DIGEST_DKIM__SELECTOR"] = "bench"
    return env | {
        "DIGEST_DATABASE_URL": database,
        "DIGEST_SECRET_KEY": "bench-secret-key-of-at-least-32-characters",
        "DIGEST_PUBLIC_URL": "https://news.example.org",
        "DIGEST_FROM_ADDRESS": "digest@news.example.org",
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__CONCURRENCY": str(concurrency),
    }


def watch_peak_rss(process: subprocess.Popen[str]) -> float:
    """The process's peak resident memory in MB (VmHWM), read until it exits.

    Not getrusage(RUSAGE_CHILDREN): its peak includes the forked copy of this process
    before exec, which after importing the subscribers is as big as digest itself.
    """
    peak_kb = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return peak_kb / 1024


def prepare(work: Path, subscribers: int) -> str:
    """A project in ``work`` with the seed and ``subscribers`` readers; its database URL."""
    shutil.copytree(REPO / "config", work / "config")
    shutil.copytree(REPO / "seeds", work / "seeds")
    database = f"sqlite:///{work / 'digest.db'}"
    with Store.open(database) as store:
        store.subscribers.import_rows(
            (
                (f"reader{n}@example.org", f"Reader {n}" if n % 2 else None)
                for n in range(subscribers)
            ),
            now=dt.datetime.now(dt.UTC),
        )
    return database


def greylisted(subscribers: int, concurrency: int, retry_delay: float) -> None:
    """The --greylist run: the same send with and without a 451 to each first attempt."""
    seconds: dict[bool, float] = {}
    for greylist in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            database = prepare(work, subscribers)
            out = work / "received.txt"
            sink = subprocess.Popen(
                [sys.executable, "-m", "tests.smtp_sink", str(out)]
                + (["--greylist"] if greylist else []),
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert sink.stdout is not None
                ready = sink.stdout.readline().split()
                if ready[:1] != ["ready"]:
                    raise SystemExit("the aiosmtpd sink did not start")
                env = digest_env(database, int(ready[1]), concurrency) | {
                    "DIGEST_SMTP__RETRY_DELAY": str(retry_delay)
                }
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "digest", "send"],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                seconds[greylist] = time.perf_counter() - start
                if done.returncode != 0:
                    print(done.stdout + done.stderr)
                    raise SystemExit(f"digest send failed with exit status {done.returncode}")
            finally:
                sink.terminate()
                sink.wait(timeout=30)
            received = out.read_text().split()
            if sorted(received) != sorted(f"reader{n}@example.org" for n in range(subscribers)):
                raise SystemExit(f"the sink received {len(received)} copies, not {subscribers}")
    target = seconds[False] + 2 * retry_delay + 1
    ratio = seconds[True] / seconds[False]
    print(
        f"subscribers: {subscribers:,}; digest concurrency {concurrency}; "
        f"retry_delay {retry_delay:g} s"
    )
    print(f"no fault:   {seconds[False]:.2f} s")
    print(
        f"greylisted: {seconds[True]:.2f} s (target at most {target:.2f} s: the no-fault time, "
        f"plus twice retry_delay, plus 1 s) {'met' if seconds[True] <= target else 'NOT met'}"
    )
    print(f"ratio greylisted / no fault: {ratio:.2f}")
    print(
        json.dumps(
            {
                "subscribers": subscribers,
                "no_fault_s": round(seconds[False], 2),
                "greylisted_s": round(seconds[True], 2),
                "target_s": round(target, 2),
                "ratio": round(ratio, 2),
            }
        )
    )


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, help="20,000; 300 with --greylist")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--bounce-address",
        help="send with a return path per copy (VERP), e.g. bounces@news.example.org",
    )
    parser.add_argument(
        "--greylist",
        action="store_true",
        help="measure a send against a relay that answers 451 to every first attempt",
    )
    parser.add_argument("--retry-delay", type=float, default=2.0, help="with --greylist")
    parser.add_argument("--dkim", action="store_true", help="DKIM-sign every copy")
    args = parser.parse_args()
    if args.greylist:
        greylisted(args.subscribers or 300, args.concurrency, args.retry_delay)
        return
    args.subscribers = args.subscribers or 20_000

    sink, source = shutil.which("smtp-sink"), shutil.which("smtp-source")
    if not sink or not source:
        print("smtp-sink and smtp-source not found: apt-get install postfix (then: postfix stop)")
        raise SystemExit(2)

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        database = prepare(work, args.subscribers)

        port = free_port()
        sink_process = subprocess.Popen(
            [sink, "-u", os.environ.get("USER", "root"), f"127.0.0.1:{port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(port)
            dkim_key = None
            if args.dkim:
                dkim_key = work / "dkim.pem"
                subprocess.run(
                    ["openssl", "genrsa", "-out", str(dkim_key), "2048"],
                    check=True,
                    capture_output=True,
                )
            env = digest_env(database, port, args.concurrency, args.bounce_address, dkim_key)
            # Output to a file, not a pipe: nobody reads a pipe while the memory is watched.
            log_path = work / "send.log"
            with log_path.open("w") as log:
                start = time.perf_counter()
                sending = subprocess.Popen(
                    [sys.executable, "-m", "digest", "send"],
                    cwd=work,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                peak_rss_mb = watch_peak_rss(sending)
                sending.wait()
                digest_seconds = time.perf_counter() - start
            if sending.returncode != 0:
                print(log_path.read_text())
                raise SystemExit(f"digest send failed with exit status {sending.returncode}")
            with Store.open(database) as store, store.reading() as connection:
                size = len(connection.exec_driver_sql("SELECT html FROM issues").scalar_one() or "")
            # The same size on the wire as digest's copies: both parts, quoted-printable.
            message_kb = max(1, round(size * 1.45 / 1024))
            source_command = [
                source,
                "-s",
                "20",
                "-m",
                str(args.subscribers),
                "-l",
                str(message_kb * 1024),
                "-f",
                "digest@news.example.org",
                "-t",
                "reader@example.org",
                f"127.0.0.1:{port}",
            ]
            # smtp-source runs twice and the faster run counts: its speed drifts from run to
            # run, and the faster reference gives the lower, safer ratio.
            source_seconds = min(timed(source_command), timed(source_command))
        finally:
            sink_process.terminate()
            sink_process.wait(timeout=10)

    digest_rate = args.subscribers / digest_seconds
    source_rate = args.subscribers / source_seconds
    ratio = digest_rate / source_rate
    print(
        f"subscribers: {args.subscribers:,}; digest concurrency {args.concurrency}; "
        f"DKIM {'on' if args.dkim else 'off'}"
    )
    print(f"message size: about {message_kb} KB")
    print(
        f"digest send (personalise, send, record): {digest_seconds:.1f} s, {digest_rate:,.0f} msg/s"
    )
    print(
        f"smtp-source, 20 sessions, same size:    {source_seconds:.1f} s, {source_rate:,.0f} msg/s"
        " (the faster of two runs)"
    )
    print(
        f"ratio: {ratio:.3f} (target at least {TARGET_RATIO} without DKIM: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}{'; this run signs' if args.dkim else ''})"
    )
    print(f"digest peak RSS: {peak_rss_mb:.0f} MB (target under {TARGET_RSS_MB:.0f} MB)")
    print(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "dkim": args.dkim,
                "digest_msgs_per_s": round(digest_rate, 1),
                "smtp_source_msgs_per_s": round(source_rate, 1),
                "ratio": round(ratio, 3),
                "peak_rss_mb": round(peak_rss_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
