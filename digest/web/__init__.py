"""The web side: one Starlette app (unsubscribe, the archive) and the preview server."""

from __future__ import annotations

__all__: list[str] = []
