"""The last issue's bounce and complaint rates, against the limits mailbox providers keep."""

from __future__ import annotations

from digest.checks.outcome import Check
from digest.models import BounceKind
from digest.store import Store

__all__ = ["COMPLAINT_LIMIT", "HARD_BOUNCE_LIMIT", "check_reputation"]

# Gmail and Yahoo ask bulk senders to stay under 0.1% complaints (and act at 0.3%); a
# list that bounces more than about 2% is a list that is not cleaned.
COMPLAINT_LIMIT = 0.001
HARD_BOUNCE_LIMIT = 0.02


def check_reputation(store: Store) -> list[Check]:
    """A warn when the last issue sent drew too many complaints or hard bounces."""
    stats = store.returns.stats(last=1)
    if not stats or not stats[0].sent:
        return []
    last = stats[0]
    complaints, hard = last.rate(BounceKind.COMPLAINT), last.rate(BounceKind.HARD)
    problems = []
    if complaints > COMPLAINT_LIMIT:
        problems.append(
            f"complaints {complaints:.2%} (over {COMPLAINT_LIMIT:.1%}, Gmail's and Yahoo's "
            "limit: make leaving easier, send only to those who asked)"
        )
    if hard > HARD_BOUNCE_LIMIT:
        problems.append(
            f"hard bounces {hard:.2%} (over {HARD_BOUNCE_LIMIT:.0%}: read the bounces with "
            "`digest bounces process`, and import only confirmed addresses)"
        )
    detail = f"the issue of {last.date.isoformat()}, {last.sent} sent: " + (
        "; ".join(problems) if problems else f"hard bounces {hard:.2%}, complaints {complaints:.2%}"
    )
    return [Check(name="list.reputation", status="warn" if problems else "ok", detail=detail)]
