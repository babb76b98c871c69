"""``digest bounces process``: every unread message of a mailbox read, traced, recorded and
applied to the list, one message at a time; one that cannot be read is counted, and the
others go on."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

from digest.bounces.mailbox import MailSource
from digest.bounces.parse import Returned, read_returned
from digest.bounces.trace import Tracing, trace
from digest.clock import utc_now
from digest.models import BounceKind
from digest.settings import Settings
from digest.store import Store
from digest.store.suppression import SoftRule, StatusChange

log = logging.getLogger(__name__)

__all__ = ["ProcessReport", "apply_returned", "process_mailbox"]


@dataclass(kw_only=True, slots=True)
class ProcessReport:
    """What one run read and did."""

    source: str
    messages: int = 0
    already_read: int = 0
    # By form (dsn, arf, bounce, unsubscribe, auto-reply, unrecognised, unreadable).
    forms: Counter[str] = field(default_factory=Counter)
    # Events by kind; and those about no one on the list, or with a forged return path.
    kinds: Counter[str] = field(default_factory=Counter)
    not_on_list: int = 0
    forged: int = 0
    # About a subscriber, but traced by the address alone while bounce_address is set:
    # recorded, not applied (a real bounce would carry its copy's token).
    unverified: int = 0
    changes: list[StatusChange] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {
            "source": self.source,
            "messages": self.messages,
            "already_read": self.already_read,
            "forms": dict(sorted(self.forms.items())),
            "kinds": dict(sorted(self.kinds.items())),
            "not_on_list": self.not_on_list,
            "forged": self.forged,
            "unverified": self.unverified,
            "changes": [
                {
                    "email": change.email,
                    "before": change.before.value,
                    "after": change.after.value,
                    "reason": change.reason,
                }
                for change in self.changes
            ],
        }


def process_mailbox(
    settings: Settings, store: Store, source: MailSource, *, now: dt.datetime | None = None
) -> ProcessReport:
    """Read every unread message of ``source`` once, and apply what it says to the list."""
    report = ProcessReport(source=source.label)
    for message_key, raw in source.unread():
        report.messages += 1
        digest = hashlib.sha256(raw).hexdigest()
        form = store.returns.known(digest)
        if form is not None:
            report.already_read += 1
            if form != "unrecognised":
                source.mark_read(message_key)
            continue
        returned = read_returned(raw, unsubscribe_addresses=(settings.from_address,))
        applied = apply_returned(
            settings, store, returned, digest=digest, source=source.label, now=now, into=report
        )
        # A message that is none of ours to read (a reader's reply, say) stays as it was,
        # unread, where a person will look for it.
        if returned.form != "unrecognised":
            source.mark_read(message_key)
        if applied and returned.problem:
            log.warning("%s: %s: %s", source.label, message_key, returned.problem)
    return report


def apply_returned(
    settings: Settings,
    store: Store,
    returned: Returned,
    *,
    digest: str,
    source: str,
    now: dt.datetime | None = None,
    into: ProcessReport,
) -> bool:
    """Trace, record and apply one returned message (or webhook event) known by ``digest``,
    counted ``into`` the report; False when it was recorded before."""
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    tracing = Tracing(bounce_address=settings.bounce_address, secret_key=key)
    soft = SoftRule(limit=settings.bounces.soft_limit, days=settings.bounces.soft_days)
    events = trace(store, returned, tracing)
    changes = store.returns.record(
        digest=digest,
        message_id=returned.message_id,
        form=returned.form,
        source=source,
        problem=returned.problem,
        events=events,
        now=now or utc_now(),
        soft=soft,
    )
    if changes is None:
        into.already_read += 1
        return False
    into.forms[returned.form] += 1
    for event in events:
        into.kinds[event.kind.value] += 1
        if event.matched_by == "forged":
            into.forged += 1
        elif event.subscriber_id is not None and not event.applies:
            into.unverified += 1
        elif event.subscriber_id is None and event.kind is not BounceKind.IGNORED:
            into.not_on_list += 1
    into.changes.extend(changes)
    for change in changes:
        log.info("%s is now %s (%s)", change.email, change.after.value, change.reason)
    return True
