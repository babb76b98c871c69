"""Who receives: subscribers, their unsubscribe tokens, the list's identifier."""

from __future__ import annotations

__all__: list[str] = []
