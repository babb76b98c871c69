"""The one reading of the wall clock, in UTC, for the edges that need "now"."""

from __future__ import annotations

import datetime as dt

__all__ = ["utc_now"]


def utc_now() -> dt.datetime:
    """Now, as an aware UTC datetime (what the database stores and messages are dated by)."""
    return dt.datetime.now(dt.UTC)
