"""Writing delivery results in groups: whatever finished while one group was being written
goes into the next transaction, so the database sees a transaction per group, not per copy,
and no connection waits for the others' slow copies."""

from __future__ import annotations

import asyncio
import logging

from digest.delivery.ledger import DeliveryResult, Ledger
from digest.errors import StoreError

log = logging.getLogger(__name__)

__all__ = ["Recorder"]


class Recorder:
    """Writes delivery results in groups; each caller waits until its own is written."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._in_process = ledger.store.engine.dialect.name == "sqlite"
        self._waiting: list[tuple[DeliveryResult, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._closed = False

    async def record(self, result: DeliveryResult) -> bool:
        """Once ``result`` is written: True, or False if its claim was lost (not written).

        Raises the store's error if it cannot be written.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((result, future))
        self._wake.set()
        return await future

    def close(self) -> None:
        """Let :meth:`run` return once everything waiting is written."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._waiting:
                if self._closed:
                    return
                continue
            group, self._waiting = self._waiting, []
            error: BaseException | None = None
            recorded: set[int] = set()
            results = [result for result, _ in group]
            try:
                if self._in_process:
                    # SQLite does its work in this process, holding the GIL all along: a
                    # thread would only add hand-offs (a send ran a fifth faster without).
                    recorded = self._ledger.record(results)
                else:
                    # A database server: the event loop goes on sending while it commits.
                    recorded = await asyncio.to_thread(self._ledger.record, results)
            except StoreError as exc:
                error = exc
            except Exception as exc:
                log.exception("recording deliveries failed unexpectedly")
                error = StoreError(f"recording deliveries failed: {type(exc).__name__}: {exc}")
            for result, future in group:
                # A waiting worker may have been cancelled; its result is written anyway.
                if future.done():
                    continue
                if error is None:
                    future.set_result(result.delivery_id in recorded)
                else:
                    future.set_exception(error)
