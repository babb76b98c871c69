"""The subscriber list's input: checking addresses and names, reading CSV imports (no I/O)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from digest.content.text import LINE_BREAKS
from digest.errors import InputError, InvalidAddress, InvalidName
from digest.models import SubscriberStatus

__all__ = [
    "IMPORT_STATUSES",
    "NAME_LIMIT",
    "CsvRow",
    "decode_csv",
    "normalise_address",
    "normalise_name",
    "read_csv",
]

# Characters, after normalisation. A longer "name" is a pasted paragraph, and 150
# characters of any script still fit one encoded word on one header line (see
# digest.email.headers), which keeps every reader's idea of the name the same.
NAME_LIMIT = 150
# Format characters a name keeps: the joiners of emoji sequences and of several
# scripts (Persian, Indic), and the tags of subdivision flags. The others (soft
# hyphen, zero-width space, byte order mark, bidi overrides) are invisible or can make
# a name display as something else: they are dropped.
_KEPT_FORMAT = frozenset(["\u200c", "\u200d", *map(chr, range(0xE0020, 0xE0080))])


# What the status column may say: digest's own statuses, and listmonk's (its export's
# "status" column): a list moves in with who left. "pending" is refused: nobody would
# ever confirm it.
IMPORT_STATUSES = {
    "active": SubscriberStatus.ACTIVE,
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "bounced": SubscriberStatus.BOUNCED,
    "complained": SubscriberStatus.COMPLAINED,
    "enabled": SubscriberStatus.ACTIVE,
    "disabled": SubscriberStatus.UNSUBSCRIBED,
    "blocklisted": SubscriberStatus.UNSUBSCRIBED,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class CsvRow:
    """One row of an import: a checked address and name, or why the line was refused."""

    line: int
    email: str | None = None
    name: str | None = None
    # From the optional status and subscribed_at (or listmonk's created_at) columns.
    status: SubscriberStatus | None = None
    subscribed_at: dt.datetime | None = None
    error: str | None = None
    # The line an earlier row with the same address is on: this one is not imported.
    repeat_of: int | None = None


def normalise_address(address: str) -> str:
    """The address as it is stored and compared: syntax checked, domain in ASCII lower case.

    No DNS look-up is made. Addresses that need SMTPUTF8 are refused: digest's messages
    are plain ASCII on the wire.
    """
    candidate = address.strip()
    if any(char in candidate for char in "\r\n"):
        raise InvalidAddress(f"{address!r} contains a line break")
    try:
        checked = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{candidate!r} is not a valid address: {exc}") from None
    return str(checked.ascii_email)


def normalise_name(raw: str | None) -> str | None:
    """A subscriber's name as it is stored and sent, or None when there is none.

    The one rule for a name, wherever one comes in (the command line, a CSV import):
    one line of text, at most :data:`NAME_LIMIT` characters, without "@". White space is
    collapsed to single spaces, the text is NFC-normalised, and invisible format
    characters are dropped except the joiners that emoji sequences and some scripts
    need. Line breaks, control characters (NUL among them) and lone surrogates are
    refused, not cleaned: a name with them is most likely a broken file or a paste gone
    wrong. Every name this returns can go in a message's To header.
    """
    if raw is None:
        return None
    for char in raw:
        if char in LINE_BREAKS:
            raise InvalidName(f"the name {_shown(raw)} contains a line break")
        category = unicodedata.category(char)
        if category == "Cc" and char != "\t":
            raise InvalidName(
                f"the name {_shown(raw)} contains a control character (U+{ord(char):04X})"
            )
        if category == "Cs":
            raise InvalidName(f"the name {_shown(raw)} is not valid text (a lone surrogate)")
    visible = "".join(
        char
        for char in unicodedata.normalize("NFC", raw)
        if char in _KEPT_FORMAT or unicodedata.category(char) != "Cf"
    )
    name = " ".join(visible.split())
    if not name:
        return None
    # Fullwidth and small forms count too: a name must not pass for an address.
    if "@" in unicodedata.normalize("NFKC", name):
        raise InvalidName(
            f"the name {_shown(name)} contains @: a name must not look like an address"
        )
    if len(name) > NAME_LIMIT:
        raise InvalidName(
            f"the name {_shown(name)} is too long: {len(name)} characters, {NAME_LIMIT} at most"
        )
    return name


def _shown(value: str) -> str:
    # A refused value may be a whole file swallowed by a quote: show its start.
    return repr(value if len(value) <= 60 else value[:60] + "...")


def read_csv(text: str) -> list[CsvRow]:
    """Rows of a CSV with an ``email`` column and optionally ``name``, ``status`` and
    ``subscribed_at`` (or listmonk's ``created_at``), by file line number.

    A row whose address an earlier row has (in any case) is returned with ``repeat_of``.

    The CSV is read strictly. A row that is not valid CSV (a quote left open, a field
    over the csv module's limit) ends the reading: it is returned as refused, with the
    reason, after the rows before it; nothing after it is read.
    """
    reader = csv.reader(io.StringIO(text), strict=True)
    rows: list[CsvRow] = []
    columns: list[str] | None = None
    first_line: dict[str, int] = {}
    while True:
        # A record may span lines (a quoted line break): it is reported by its first.
        line = reader.line_num + 1
        try:
            record = next(reader, None)
        except csv.Error as exc:
            rows.append(CsvRow(line=line, error=_not_csv(exc)))
            break
        if record is None:
            break
        if columns is None:
            columns = [column.strip().casefold() for column in record]
            if "email" not in columns:
                return [
                    CsvRow(
                        line=1,
                        error="the first line must name the columns: email,name "
                        "(and optionally status,subscribed_at)",
                    )
                ]
            continue
        row = _row(line, dict(zip(columns, record, strict=False)))
        if row is not None and row.email is not None:
            # Said, not silently merged: the counts then add up to the file's rows.
            first = first_line.setdefault(row.email.casefold(), line)
            if first != line:
                row = CsvRow(line=line, repeat_of=first)
        if row is not None:
            rows.append(row)
    return rows


def _row(line: int, record: dict[str, str]) -> CsvRow | None:
    """One record checked, or None for a line with nothing in it."""
    raw_email = record.get("email", "").strip()
    if not raw_email:
        if any(value.strip() for value in record.values()):
            return CsvRow(line=line, error="no address in the email column")
        return None
    try:
        email = normalise_address(raw_email)
        name = normalise_name(record.get("name"))
        status = _status(record.get("status", ""))
        joined = _joined(record.get("subscribed_at") or record.get("created_at") or "")
    except (InvalidAddress, InvalidName, ValueError) as exc:
        return CsvRow(line=line, error=str(exc))
    return CsvRow(line=line, email=email, name=name, status=status, subscribed_at=joined)


def _status(raw: str) -> SubscriberStatus | None:
    value = raw.strip().casefold()
    if not value:
        return None
    if value not in IMPORT_STATUSES:
        raise ValueError(
            f"status {raw.strip()!r}: expected one of active, unsubscribed, bounced, complained "
            "(or listmonk's enabled, disabled, blocklisted)"
        )
    return IMPORT_STATUSES[value]


def _joined(raw: str) -> dt.datetime | None:
    value = raw.strip()
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"subscribed_at {value!r}: expected a date or time such as 2026-03-01 or "
            "2026-03-01T08:30:00+00:00"
        ) from None
    # A time without a zone is taken as UTC, the zone digest keeps times in.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _not_csv(exc: csv.Error) -> str:
    reason = str(exc)
    if reason == "unexpected end of data":
        reason = "a quote is opened and never closed"
    return (
        f"not valid CSV: {reason}; the file was not read past it, "
        "so this row and any after it were not imported"
    )


def decode_csv(data: bytes, source: str, encoding: str = "utf-8-sig") -> str:
    """The text of an import file; an undecodable byte is one line naming its line."""
    try:
        return data.decode(encoding)
    except LookupError:
        raise InputError(f"--encoding {encoding}: not an encoding Python knows") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        hint = (
            "; if the file is Latin-1 (Excel on Windows often writes it), import it with "
            "--encoding latin-1"
            if encoding.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig")
            else ""
        )
        raise InputError(f"{source}:{line}: not {encoding} text (byte 0x{byte}){hint}") from None
