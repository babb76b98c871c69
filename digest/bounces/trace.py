"""Which delivery, issue and subscriber each finding of a returned message is about.

First the VERP token of the return path the message came back to (or that the quoted
copy carries); then the quoted copy's Message-ID; then the address the report names,
matched against the list case-insensitively. A return path of ours whose token does
not verify is forged: its findings are recorded against no one.

Anyone can send a message naming an address. With ``bounce_address`` set, a real bounce
carries its copy's token, and a feedback report its copy's Message-ID: a finding traced
by the address alone is then recorded, not applied. Without it, the address is all there
is, and it is applied. An unsubscribe mail is about its sender, and always applies; so
does a relay's webhook event, whose signature was checked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from digest.audience.verp import delivery_of, is_return_path
from digest.bounces.parse import Returned, plausible_address
from digest.models import BounceKind
from digest.store import Store
from digest.store.returns import DeliveryRef
from digest.store.suppression import TracedEvent

__all__ = ["Tracing", "trace"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Tracing:
    """What tracing needs of the settings."""

    bounce_address: str | None
    secret_key: str | None


def trace(store: Store, returned: Returned, tracing: Tracing) -> list[TracedEvent]:
    """Each finding of ``returned``, traced."""
    delivery, how = _by_return_path(store, returned, tracing)
    if delivery is None and how is None and returned.original_message_id:
        delivery = store.returns.delivery_by_message_id(returned.original_message_id)
        how = "message-id" if delivery is not None else None
    events = []
    for finding in returned.findings:
        key = (
            finding.address.casefold()
            if finding.address and plausible_address(finding.address)
            else None
        )
        event = TracedEvent(
            kind=finding.kind, email_key=key, status=finding.status, reason=finding.reason
        )
        if how == "forged":
            events.append(replace(event, matched_by="forged"))
            continue
        # An unsubscribe mail is about its sender, whatever copy it answers.
        if delivery is not None and finding.kind is not BounceKind.UNSUBSCRIBE:
            # The copy went to the delivery's address, whatever a forwarding server says.
            events.append(
                replace(
                    event,
                    email_key=delivery.email_key,
                    subscriber_id=delivery.subscriber_id,
                    delivery_id=delivery.id,
                    issue_id=delivery.issue_id,
                    matched_by=how,
                )
            )
            continue
        subscriber_id = store.returns.subscriber_id(key) if key is not None else None
        if key is not None and subscriber_id is not None:
            latest = store.returns.latest_delivery_to(key)
            event = replace(
                event,
                subscriber_id=subscriber_id,
                delivery_id=latest.id if latest else None,
                issue_id=latest.issue_id if latest else None,
                matched_by="address",
                applies=(
                    finding.kind is BounceKind.UNSUBSCRIBE
                    or returned.signed
                    or not tracing.bounce_address
                ),
            )
        events.append(event)
    return events


def _by_return_path(
    store: Store, returned: Returned, tracing: Tracing
) -> tuple[DeliveryRef | None, str | None]:
    """The delivery the message's return path names; ``forged`` when one of ours does not
    verify; (None, None) when it came back to no return path of ours."""
    if not tracing.bounce_address or not tracing.secret_key:
        return None, None
    candidates = [*returned.delivered_to]
    if returned.original_return_path:
        candidates.append(returned.original_return_path)
    forged = False
    for address in candidates:
        if not is_return_path(address, tracing.bounce_address):
            continue
        delivery_id = delivery_of(
            address, bounce_address=tracing.bounce_address, secret_key=tracing.secret_key
        )
        delivery = store.returns.delivery(delivery_id) if delivery_id is not None else None
        if delivery is not None:
            return delivery, "token"
        forged = True
    return None, "forged" if forged else None
