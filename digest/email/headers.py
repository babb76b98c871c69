"""Header fields from data, written and folded so that they read back exactly.

The email package's own folding of a long display name can drop its quotes, or start the
value on a line of its own ("To: To: ..."); values that come from data (a subscriber's
name, the newsletter's) are therefore written here, as RFC 5322 phrases and RFC 2047
encoded words, and folded only before white space.
"""

from __future__ import annotations

import base64
import re
import string
import unicodedata
from collections.abc import Iterable

from digest.content.text import LINE_BREAKS
from digest.errors import MessageError

__all__ = ["CRLF", "header_line", "mailbox", "one_line", "phrase", "unstructured"]

CRLF = "\r\n"
# RFC 5322: header lines of 78 characters at most where a fold can do it, never over 998.
_FOLD_AT = 78
# Words of a display name that need no quotes (RFC 5322 atext).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# What a "Q" encoded word in a display name may carry as itself (RFC 2047, section 5).
_Q_LITERAL = frozenset(string.ascii_letters + string.digits + "!*+-/")
_ENCODED_WORD = "=?utf-8?{}?{}?="
# An encoded word of a Subject: within RFC 2047's 75, and on a line with "Subject: ".
_SHORT_WORD = _FOLD_AT - len("Subject: ") - 1
# An encoded word of a display name holds a whole run of words and may pass 75 (see
# phrase); this keeps the line it is on under 998.
_LONG_WORD = 900


def mailbox(name: str | None, address: str, what: str) -> list[str]:
    """A From or To value as tokens for :func:`header_line`: the display name, then the address."""
    one_line(address, what)
    local, _, domain = address.rpartition("@")
    if not local or not domain or not address.isascii() or " " in address or len(address) > 254:
        raise MessageError(f"{what} {address!r} is not an email address")
    words = phrase(one_line(name, f"the name for {address}")) if name else []
    return [*words, f" <{address}>"] if words else [f" {address}"]


def header_line(field: str, tokens: Iterable[str]) -> str:
    """``field: value`` and CRLF, folded before a token where the line would pass 78.

    Every token starts with the white space that parts it from the one before, so a
    fold, a CRLF put before that space, unfolds to the same value.
    """
    start = f"{field}:"
    lines = [start]
    for token in tokens:
        # Never right after the colon: the value would start on a line of its own.
        if len(lines[-1]) + len(token) > _FOLD_AT and lines[-1] != start:
            lines.append(token)
        else:
            lines[-1] += token
    return CRLF.join(lines) + CRLF


def phrase(text: str) -> list[str]:
    """A display name as words (RFC 5322 phrase), white space collapsed, each led by a space.

    An ASCII name is atoms, or one quoted string when it holds specials. Otherwise ASCII
    words stay as they are and each run of the other words becomes one encoded word
    (RFC 2047), longer than 75 if it must: readers disagree about the space between two
    encoded words (RFC 2047 drops it, Python's parser keeps it), so a name is never split
    into two of them where either reading would change it.
    """
    words = text.split()
    name = " ".join(words)
    if name.isascii() and "=?" not in name:
        if all(_ATOM.fullmatch(word) for word in words):
            return [f" {word}" for word in words]
        return [f" {piece}" for piece in _quoted(name).split(" ")]
    tokens: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if word and (not word.isascii() or "=?" in word):
            run.append(word)
            continue
        if run:
            tokens += [f" {encoded}" for encoded in _encoded_words(" ".join(run), _LONG_WORD)]
            run = []
        if word:
            tokens.append(f" {word}" if _ATOM.fullmatch(word) else f" {_quoted(word)}")
    return tokens


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unstructured(text: str) -> list[str]:
    """A Subject as tokens for :func:`header_line`: plain ASCII as it is, else encoded words.

    A parser strips the space after the colon and reads "=?...?=" as an encoded word,
    so a value that starts with a space or holds "=?" is encoded, and so is one with a
    word too long to fold.
    """
    words = re.findall(r" *[^ ]+", text)
    if words:
        words[-1] += text[len(text.rstrip(" ")) :]
    plain = text.isascii() and "=?" not in text and not text.startswith(" ")
    if plain and all(len(word) <= _SHORT_WORD for word in words):
        return [f" {words[0]}", *words[1:]] if words else []
    # Here a space between two encoded words is dropped (RFC 2047, section 6.2), by
    # Python's parser too: they may be cut anywhere.
    return [f" {encoded}" for encoded in _encoded_words(text, _SHORT_WORD)]


def _encoded_words(text: str, longest: int) -> list[str]:
    """``text`` as RFC 2047 encoded words of at most ``longest`` characters each.

    Each word is "Q" or "B", whichever is shorter, and is cut between code points only.
    """
    words: list[str] = []
    start = q_size = byte_size = 0
    overhead = len(_ENCODED_WORD.format("q", ""))
    for index, char in enumerate(text):
        data = char.encode("utf-8")
        q_char = sum(1 if chr(byte) in _Q_LITERAL or byte == 0x20 else 3 for byte in data)
        q_size, byte_size = q_size + q_char, byte_size + len(data)
        if index > start and overhead + min(q_size, -(-byte_size // 3) * 4) > longest:
            words.append(_encoded_word(text[start:index]))
            start, q_size, byte_size = index, q_char, len(data)
    words.append(_encoded_word(text[start:]))
    return words


def _encoded_word(text: str) -> str:
    data = text.encode("utf-8")
    q = "".join(
        "_" if byte == 0x20 else chr(byte) if chr(byte) in _Q_LITERAL else f"={byte:02X}"
        for byte in data
    )
    b = base64.b64encode(data).decode("ascii")
    return _ENCODED_WORD.format("q", q) if len(q) <= len(b) else _ENCODED_WORD.format("b", b)


def one_line(value: str, what: str) -> str:
    # A line break in a header value would end the header and start one of the data's;
    # other controls (NUL, tab, escape) and lone surrogates are not text. Format
    # characters (the joiner in an emoji sequence, a soft hyphen) are: they are encoded.
    # isprintable() is False for every line break, control and surrogate: when it holds,
    # the per-character look (a copy's To is checked for every copy) is not needed.
    if not value.isprintable() and any(
        char in LINE_BREAKS or unicodedata.category(char) in ("Cc", "Cs") for char in value
    ):
        raise MessageError(
            f"{what} {value!r} contains a line break or control character; it cannot go in a header"
        )
    return value
