"""The one error tree: every message here is meant for the person running digest."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DigestError",
    "MessageError",
    "SeedError",
    "StoreError",
    "TemplateError",
]


class DigestError(Exception):
    """Base of every error digest reports to its user; the message says what and where."""


class ConfigError(DigestError):
    """A setting, the configuration file or a rules file is missing or invalid."""


class MessageError(DigestError):
    """A message could not be built from the data it was given."""


class SeedError(DigestError):
    """One seed file could not be read as an article; the others still load."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class StoreError(DigestError):
    """The database could not be opened, migrated or written."""


class TemplateError(DigestError):
    """A template could not be loaded or rendered; the message names the file and line."""
