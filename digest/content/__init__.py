"""What goes into an issue: seed files read as articles, boilerplate dropped, the day's pick."""

from __future__ import annotations

__all__: list[str] = []
