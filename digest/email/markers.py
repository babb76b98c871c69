"""Markers for the values that differ per recipient: plain ASCII that survives Jinja,
premailer and wrapping untouched, and that no seed text will contain. An issue is
rendered once with them, and each copy fills them in (digest.email.render.personalise)."""

from __future__ import annotations

import re

__all__ = ["MARKERS", "PREFERENCES_MARK", "RECIPIENT_MARK", "UNSUBSCRIBE_MARK"]

UNSUBSCRIBE_MARK = "__digest_unsubscribe_url__"
RECIPIENT_MARK = "__digest_recipient__"
PREFERENCES_MARK = "__digest_preferences_url__"
# Captures, so that re.split keeps the markers it splits at.
MARKERS = re.compile(f"({UNSUBSCRIBE_MARK}|{RECIPIENT_MARK}|{PREFERENCES_MARK})")
