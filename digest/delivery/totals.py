"""What one run of the send loop did, and the breakers that stop it: too many transient
failures in a row (the relay looks down), or too many copies refused for good (the list
needs cleaning before the sender's reputation suffers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.delivery.ledger import DeliveryResult

__all__ = ["REFUSAL_RATE_MIN_COPIES", "SendTotals"]

# The refusal-rate breaker judges a run only after this many copies were decided (sent or
# failed for good): below it, a few dead addresses early on would look like a disaster.
REFUSAL_RATE_MIN_COPIES = 200


@dataclass(kw_only=True, slots=True)
class SendTotals:
    """What one run of the loop did, and why it stopped early if it did."""

    sent: int = 0
    failed: int = 0
    # Set when something that would fail every copy stopped the run.
    halted: str | None = None
    # Set when too many transient failures came in a row (the relay looks down).
    tripped: bool = False
    # Set when the run was asked to stop.
    interrupted: bool = False
    # Set when halted because too many copies were refused for good: a person should look
    # before the rest goes, so it is not tried again by itself.
    halted_by_refusals: bool = False
    _in_a_row: int = field(default=0, repr=False)

    def count_relay_failure(self, *, threshold: int) -> None:
        """A relay's own failure (no connection, 421, a time-out), counted at once."""
        self._in_a_row += 1
        self.tripped = self.tripped or self._in_a_row >= threshold

    def count(
        self, result: DeliveryResult, *, threshold: int, max_refused_rate: float | None
    ) -> None:
        """A copy's recorded result: sent, failed for good, or left to retry."""
        if result.message_id is not None:
            self.sent += 1
            self._in_a_row = 0
            return
        self.failed += result.permanent
        self._in_a_row += 1
        # Once tripped it stays so, whatever copies still under way then do.
        self.tripped = self.tripped or self._in_a_row >= threshold
        decided = self.sent + self.failed
        if (
            result.permanent
            and max_refused_rate is not None
            and self.halted is None
            and decided >= REFUSAL_RATE_MIN_COPIES
            and self.failed / decided > max_refused_rate
        ):
            # Mailbox providers throttle and then block senders whose mail keeps
            # bouncing: stop while the list can still be cleaned.
            self.halted_by_refusals = True
            self.halted = (
                f"{self.failed} of {decided} copies were refused for good "
                f"({self.failed / decided:.1%}), over bounces.max_rate "
                f"({max_refused_rate:.0%}): stopped before the sender's reputation "
                "suffers; `digest status` shows the reasons, and `digest send` sends the "
                "rest"
            )
