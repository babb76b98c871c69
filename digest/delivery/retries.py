"""When a copy that failed for now is tried again: exponential backoff with jitter
(tenacity's), both for a copy that waits in the send loop's delay queue and for a single
message sent with :func:`with_retries`."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from digest.errors import TransientFailure
from digest.settings import SmtpSettings

__all__ = ["DelayQueue", "backoff", "retry_delay", "with_retries"]

T = TypeVar("T")


def backoff(smtp: SmtpSettings) -> wait_exponential_jitter:
    """The wait before each retry: ``retry_delay`` doubling per attempt, up to
    ``retry_max_delay``, plus up to ``retry_delay`` of jitter so copies spread out."""
    return wait_exponential_jitter(
        multiplier=smtp.retry_delay, max=smtp.retry_max_delay, jitter=smtp.retry_delay
    )


def retry_delay(smtp: SmtpSettings, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1 for the first)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempts
    return backoff(smtp)(state)


async def with_retries(
    smtp: SmtpSettings,
    attempt: Callable[[], Awaitable[None]],
    *,
    first_failure: TransientFailure | None = None,
) -> None:
    """Run ``attempt``, again after a growing, jittered wait while it fails transiently.

    With ``first_failure``, the first attempt was already made and failed so: the next
    one waits as a second attempt would. For one message (a notice, a test copy); the
    send loop does not wait here but puts the copy in its :class:`DelayQueue`.
    """
    earlier = [first_failure] if first_failure is not None else []

    async def attempt_once() -> None:
        if earlier:
            raise earlier.pop()
        await attempt()

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, TransientFailure)),
        stop=stop_after_attempt(smtp.retry_attempts),
        wait=backoff(smtp),
        reraise=True,
    )
    async for try_once in retrying:
        with try_once:
            await attempt_once()


@dataclass(slots=True)
class DelayQueue(Generic[T]):
    """Items that may not go before their time (monotonic seconds), earliest first."""

    _heap: list[tuple[float, int, T]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, due: float) -> None:
        """Keep ``item`` until ``due``; items due together leave in the order they came."""
        heapq.heappush(self._heap, (due, next(self._order), item))

    def next_due(self) -> float | None:
        """When the earliest item is due, or None when there is none."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[T]:
        """Every item due at ``now``, earliest first."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def pop_all(self) -> list[T]:
        """Every item, due or not, earliest first."""
        items = [item for _, _, item in sorted(self._heap)]
        self._heap.clear()
        return items
