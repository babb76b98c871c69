"""The subscriber list's input: checking addresses and reading CSV imports (no I/O here)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

__all__ = ["CsvRow", "InvalidAddress", "normalise_address", "read_csv"]


class InvalidAddress(ValueError):
    """An address that cannot be subscribed; the message says why."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CsvRow:
    """One row of an import: a checked address and name, or why the line was refused."""

    line: int
    email: str | None = None
    name: str | None = None
    error: str | None = None


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


def _name(raw: str | None) -> str | None:
    name = " ".join((raw or "").split())
    return name or None


def read_csv(text: str) -> list[CsvRow]:
    """Rows of a CSV with an ``email`` column and optionally ``name``, by file line number."""
    reader = csv.DictReader(io.StringIO(text))
    header = [column.strip().casefold() for column in reader.fieldnames or []]
    if "email" not in header:
        return [CsvRow(line=1, error="the first line must name the columns: email,name")]
    reader.fieldnames = header
    rows = []
    for record in reader:
        line = reader.line_num
        raw_email = (record.get("email") or "").strip()
        if not raw_email:
            if any((value or "").strip() for value in record.values() if isinstance(value, str)):
                rows.append(CsvRow(line=line, error="no address in the email column"))
            continue
        try:
            email = normalise_address(raw_email)
        except InvalidAddress as exc:
            rows.append(CsvRow(line=line, error=str(exc)))
            continue
        raw_name = record.get("name")
        rows.append(
            CsvRow(
                line=line, email=email, name=_name(raw_name if isinstance(raw_name, str) else None)
            )
        )
    return rows
