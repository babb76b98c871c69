"""Site boilerplate: the promotion lines a scrape picks up between paragraphs.

The rules are data (``config/boilerplate.toml``): exact lines and regular expressions. Both
are compared with a normalised line, so a change of case, spacing, quote marks or
trailing punctuation does not let a known promotion through.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from digest.errors import ConfigError
from digest.text import TRAILING_PUNCTUATION, clean_lines, comparison_form, fold

_ESCAPE = re.compile(r"\\.")

__all__ = ["Boilerplate", "load_boilerplate"]


@dataclass(frozen=True, slots=True)
class Boilerplate:
    """Compiled boilerplate rules."""

    lines: frozenset[str]
    # Patterns anchored with ^ are joined into one alternation tried at the start of the
    # line only; the others are searched one by one, because Python's re finds a pattern
    # that begins with plain words quickly on its own but not inside an alternation.
    anchored: re.Pattern[str] | None
    unanchored: tuple[re.Pattern[str], ...]

    @classmethod
    def from_rules(
        cls, lines: list[str], patterns: list[str], *, origin: str = "rules"
    ) -> Boilerplate:
        """Compile rules; a bad pattern is a :class:`ConfigError` naming it."""
        anchored, unanchored = [], []
        for index, pattern in enumerate(patterns):
            where = f"{origin}: patterns[{index}] {pattern!r}"
            # Lines are compared case-folded; upper case in a pattern could never match.
            if any(char.isupper() for char in _ESCAPE.sub("", pattern)):
                raise ConfigError(f"{where} has upper-case letters: write patterns in lower case")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where} is not a valid regular expression: {exc}") from exc
            if pattern.startswith("^") and not compiled.flags & re.MULTILINE:
                anchored.append(pattern)
            else:
                unanchored.append(compiled)
        return cls(
            lines=frozenset(form for form in map(comparison_form, lines) if form),
            anchored=re.compile("|".join(f"(?:{p})" for p in anchored)) if anchored else None,
            unanchored=tuple(unanchored),
        )

    @classmethod
    def none(cls) -> Boilerplate:
        """Rules that match nothing."""
        return cls(lines=frozenset(), anchored=None, unanchored=())

    def matches(self, line: str) -> bool:
        """True when ``line`` is site boilerplate."""
        return self.flags(clean_lines(line))[0]

    def flags(self, lines: list[str]) -> list[bool]:
        """For each line, as :func:`~digest.text.clean_lines` gives them: is it boilerplate?"""
        known = self.lines
        at_start = self.anchored.match if self.anchored is not None else _never
        unanchored = self.unanchored
        flags = []
        for form in fold("\n".join(lines)).split("\n"):
            form = form.rstrip(TRAILING_PUNCTUATION)
            flags.append(
                bool(form)
                and (
                    form in known
                    or at_start(form) is not None
                    or any(pattern.search(form) for pattern in unanchored)
                )
            )
        return flags


def _never(_form: str) -> None:
    return None


def load_boilerplate(path: Path) -> Boilerplate:
    """Read the rules file: ``lines`` (exact) and ``patterns`` (regular expressions)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: boilerplate rules file not found (setting boilerplate_file)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read boilerplate rules: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"lines", "patterns"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected 'lines' and 'patterns'")
    lines = data.get("lines", [])
    patterns = data.get("patterns", [])
    for key, value in (("lines", lines), ("patterns", patterns)):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{path}: {key!r} must be a list of strings")
    return Boilerplate.from_rules(lines, patterns, origin=str(path))
