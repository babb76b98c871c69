"""Benchmark: build the seed issue once, then personalise and serialise one copy per recipient.

Measures, in one process:
- issue build: load the seeds, pick, render both templates and inline the CSS (best of N);
- per recipient: ``MessageTemplate.render`` for 10,000 recipients (the send path), and,
  as a reference, building an ``EmailMessage`` per recipient for a sample of them.

Targets: issue build under 250 ms; at most 0.1 ms per recipient. The last line printed is
one JSON object. Run it with ``make bench`` or ``.venv/bin/python bench/render.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

from digest.content.picker import pick
from digest.email.message import MessageTemplate, preferences_link, recipient, unsubscribe_links
from digest.email.render import Personal, Renderer, personalise
from digest.models import RenderedIssue, Subscriber
from digest.options import message_options, render_options
from digest.pipeline import load_seeds
from digest.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TARGET_BUILD_MS = 250.0
TARGET_PER_RECIPIENT_MS = 0.1
KEY = "bench-secret-key-of-at-least-32-characters"


def build_issue_once(settings: Settings) -> tuple[float, RenderedIssue]:
    start = time.perf_counter()
    loaded = load_seeds(settings)
    issue = pick(
        loaded.articles,
        today=dt.date(2026, 11, 23),
        already_featured=set(),
        limits=settings.pick_limits,
    )
    rendered = Renderer(settings.templates_dir).render(issue, render_options(settings))
    return (time.perf_counter() - start) * 1000, rendered


def email_message(rendered: RenderedIssue, subscriber: Subscriber, settings: Settings) -> bytes:
    """The straightforward way, for comparison: one EmailMessage per recipient."""
    https, mailto = unsubscribe_links(message_options(settings), subscriber, secret_key=KEY)
    html, text = personalise(
        rendered,
        Personal(
            unsubscribe_url=https or mailto,
            recipient=recipient(subscriber),
            preferences_url=preferences_link(message_options(settings), subscriber, secret_key=KEY)
            or "",
        ),
    )
    message = EmailMessage()
    message["To"] = subscriber.email
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=policy.SMTP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference-sample", type=int, default=200)
    args = parser.parse_args()

    settings = Settings(
        _env_file=None,
        seeds_dir=REPO / "seeds",
        public_url="https://news.example.org",
        from_address="digest@news.example.org",
        postal_address="1 High Street, Exampleton",
    )
    builds = [build_issue_once(settings) for _ in range(args.runs)]
    first_ms = builds[0][0]
    build_ms = min(ms for ms, _ in builds)
    rendered = builds[-1][1]

    subscribers = [
        Subscriber(id=n, email=f"reader{n}@example.org", name=f"Reader {n}" if n % 3 else None)
        for n in range(args.recipients)
    ]
    now = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    template = MessageTemplate.build(rendered, message_options(settings), secret_key=KEY, now=now)
    template_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    total_bytes = sum(len(template.render(subscriber)) for subscriber in subscribers)
    per_recipient_ms = (time.perf_counter() - start) * 1000 / len(subscribers)

    sample = subscribers[: args.reference_sample]
    start = time.perf_counter()
    for subscriber in sample:
        email_message(rendered, subscriber, settings)
    reference_ms = (time.perf_counter() - start) * 1000 / len(sample)

    print(f"issue build (load, pick, render, inline): {build_ms:.1f} ms best of {args.runs}")
    print(f"  the first build in a process: {first_ms:.1f} ms (templates compiled, CSS warmed)")
    print(f"message template (encode both parts once): {template_ms:.2f} ms")
    print(f"per recipient, MessageTemplate.render: {per_recipient_ms:.4f} ms, {len(subscribers):,}")
    print(f"per recipient, EmailMessage reference: {reference_ms:.3f} ms, {len(sample)}")
    print(f"speed-up over the reference: {reference_ms / per_recipient_ms:.0f}x")
    print(f"average message: {total_bytes / len(subscribers) / 1024:.1f} KiB")
    build_met = "met" if build_ms < TARGET_BUILD_MS else "NOT met"
    recipient_met = "met" if per_recipient_ms <= TARGET_PER_RECIPIENT_MS else "NOT met"
    print(f"target: issue build < {TARGET_BUILD_MS:.0f} ms: {build_met}")
    print(f"target: per recipient <= {TARGET_PER_RECIPIENT_MS} ms: {recipient_met}")
    print(
        json.dumps(
            {
                "issue_build_ms": round(build_ms, 2),
                "issue_build_first_ms": round(first_ms, 2),
                "per_recipient_ms": round(per_recipient_ms, 4),
                "reference_per_recipient_ms": round(reference_ms, 3),
                "recipients": len(subscribers),
            }
        )
    )


if __name__ == "__main__":
    main()
