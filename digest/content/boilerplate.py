"""Site boilerplate: the promotion lines a scrape picks up between paragraphs.

The rules are data (``digest/data/boilerplate.toml``, or the ``boilerplate_file`` setting):
exact lines and regular expressions. Both
are compared with a normalised line, so a change of case, spacing, quote marks or
trailing punctuation does not let a known promotion through.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from digest.content.text import TRAILING_PUNCTUATION, clean_lines, comparison_form, fold
from digest.errors import ConfigError

_ESCAPE = re.compile(r"\\.")
_GROUP_NAME = re.compile(r"\(\?P(<\w+>|=\w+\))")
# A pattern that refers to its own groups (a back-reference, a conditional) or names them
# is searched alone: joined with others, its group numbers would shift and its group names
# could clash with theirs (re.error: redefinition of group name).
_SELF_REFERENCE = re.compile(r"\\[1-9]|\(\?P[<=]|\(\?\(")
DEFAULT_MAX_LENGTH = 300
# The rules digest ships with, as package data: used when boilerplate_file is not set.
BUILTIN_RULES: Traversable = files("digest") / "data" / "boilerplate.toml"

__all__ = ["BUILTIN_RULES", "DEFAULT_MAX_LENGTH", "Boilerplate", "load_boilerplate"]


@dataclass(frozen=True, slots=True)
class Boilerplate:
    """Compiled boilerplate rules."""

    lines: frozenset[str]
    # A promotion is one short line: longer lines are content and are not compared at all,
    # which spares most paragraphs every step below.
    max_length: int
    # Patterns anchored with ^ are joined into one alternation tried at the start of the
    # line only; the others are searched one by one, because Python's re finds a pattern
    # that begins with plain words quickly on its own but not inside an alternation.
    anchored: re.Pattern[str] | None
    unanchored: tuple[re.Pattern[str], ...]

    @classmethod
    def from_rules(
        cls,
        lines: list[str],
        patterns: list[str],
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        origin: str = "rules",
    ) -> Boilerplate:
        """Compile rules; a bad pattern is a :class:`ConfigError` naming it."""
        anchored, unanchored = [], []
        for index, pattern in enumerate(patterns):
            where = f"{origin}: patterns[{index}] {pattern!r}"
            # Lines are compared case-folded; upper case in a pattern could never match.
            if any(char.isupper() for char in _ESCAPE.sub("", _GROUP_NAME.sub("", pattern))):
                raise ConfigError(f"{where} has upper-case letters: write patterns in lower case")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where} is not a valid regular expression: {exc}") from exc
            if pattern.startswith("^") and not _SELF_REFERENCE.search(pattern):
                anchored.append(pattern)
            else:
                unanchored.append(compiled)
        forms = [comparison_form(line) for line in lines]
        for index, form in enumerate(forms):
            if len(form) > max_length:
                raise ConfigError(
                    f"{origin}: lines[{index}] is {len(form)} characters long, "
                    f"more than max_length ({max_length}): raise max_length"
                )
        return cls(
            lines=frozenset(form for form in forms if form),
            max_length=max_length,
            anchored=re.compile("|".join(f"(?:{p})" for p in anchored)) if anchored else None,
            unanchored=tuple(unanchored),
        )

    @classmethod
    def none(cls) -> Boilerplate:
        """Rules that match nothing."""
        return cls(lines=frozenset(), max_length=0, anchored=None, unanchored=())

    def matches(self, line: str) -> bool:
        """True when ``line`` is site boilerplate."""
        return self.flags(clean_lines(line))[0]

    def flags(self, lines: list[str], *, exact_only: Collection[int] = ()) -> list[bool]:
        """For each line, as :func:`~digest.content.text.clean_lines` gives them: is it boilerplate?

        Lines whose index is in ``exact_only`` (a headline, a story's title) are compared
        with the exact lines only: a pattern is never trusted to drop a title.
        """
        flags = [False] * len(lines)
        short = [index for index, line in enumerate(lines) if 0 < len(line) <= self.max_length]
        if not short:
            return flags
        forms = fold("\n".join([lines[index] for index in short])).split("\n")
        known = self.lines
        at_start = self.anchored.match if self.anchored is not None else _never
        unanchored = self.unanchored
        for index, form in zip(short, forms, strict=True):
            form = form.rstrip(TRAILING_PUNCTUATION)
            if not form:
                continue
            if form in known:
                flags[index] = True
            elif index not in exact_only:
                flags[index] = at_start(form) is not None or any(
                    pattern.search(form) for pattern in unanchored
                )
        return flags


def _never(_form: str) -> None:
    return None


def load_boilerplate(path: Path | Traversable | None) -> Boilerplate:
    """Read the rules file: exact ``lines``, regular-expression ``patterns``, ``max_length``.

    ``None`` (the ``boilerplate_file`` setting unset) reads the shipped rules.
    """
    if path is None:
        path = BUILTIN_RULES
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
    unknown = sorted(set(data) - {"lines", "patterns", "max_length"})
    if unknown:
        expected = "'lines', 'patterns' and 'max_length'"
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected {expected}")
    max_length = data.get("max_length", DEFAULT_MAX_LENGTH)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ConfigError(f"{path}: 'max_length' must be a whole number of characters, 1 or more")
    lines = data.get("lines", [])
    patterns = data.get("patterns", [])
    for key, value in (("lines", lines), ("patterns", patterns)):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{path}: {key!r} must be a list of strings")
    return Boilerplate.from_rules(lines, patterns, max_length=max_length, origin=str(path))
