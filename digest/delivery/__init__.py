"""How the bytes reach servers, once: transports, the send loop, the ledger of deliveries."""

from __future__ import annotations

__all__: list[str] = []
