"""How an issue becomes bytes: rendering, the message and its headers, DKIM."""

from __future__ import annotations

__all__: list[str] = []
