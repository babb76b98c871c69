"""A message that came back, read: which addresses it is about, and what happened to them.

In order: an ARF feedback report (RFC 5965: a complaint, or not), a delivery status
notification (RFC 3464: per recipient, Action, Status, Diagnostic-Code), an unsubscribe
request sent to the List-Unsubscribe mailto, an automatic reply (RFC 3834: not a bounce),
and last the bounces that older servers write as plain text (qmail, Exim, Exchange,
Domino, …), found by flufl.bounce's detectors. Pure: bytes in, a ``Returned`` out; a
message that cannot be read says so and changes nothing.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from typing import Literal

from flufl.bounce import all_failures

from digest.bounces.classify import classify
from digest.models import BounceKind

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Finding",
    "Form",
    "Returned",
    "plausible_address",
    "read_returned",
]

# A returned message is a report and a copy of (part of) ours: far below this. A bigger
# one is not read at all.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_REASON_CHARS = 300
# ARF feedback types that are a reader's complaint; auth-failure and not-spam are not.
_COMPLAINTS = {"abuse", "fraud", "virus", "other", "opt-out"}
# Where the address a message was delivered to is kept by the servers that delivered it.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
# Subjects of automatic replies from servers that do not say so in a header.
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|"
    r"abwesenheitsnotiz|r[ée]ponse automatique|away from|on vacation|vacation reply)",
    re.IGNORECASE,
)
# Bounded and possessive, and never starting inside a longer run: linear on any input (a
# hostile body of one long "word" would otherwise take quadratic time).
_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}+"
    r"@[A-Za-z0-9-]{1,63}+(?:\.[A-Za-z0-9-]{1,63}+){1,8}+(?![A-Za-z0-9-])"
)
# Where a report's own words end and the copy of the original message begins.
_ORIGINAL_FOLLOWS = re.compile(
    r"^[ \t-]*+(?:below this line is a copy|this is a copy of|original message|unsent message"
    r"|returned message|message headers follow|headers of the original)",
    re.IGNORECASE | re.MULTILINE,
)
# A report's own words come first: only this much of a message's text is searched.
_TEXT_CHARS = 256 * 1024
# RFC 5321's longest path, less its angle brackets: anything longer names no mailbox.
_LONGEST_ADDRESS = 254
_NOT_RECIPIENT_LINES = re.compile(
    r"^(?:from|return-path|reply-to|sender|message-id|in-reply-to|references):.*$",
    re.IGNORECASE | re.MULTILINE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|failure notice|returned mail"
    r"|mail delivery failed|delivery failure|could not be delivered|non-?delivery"
    r"|delivery has failed|mail system error",
    re.IGNORECASE,
)
_MESSAGE_ID = re.compile(r"^Message-Id:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_RETURN_PATH = re.compile(r"^Return-Path:\s*<([^>\s]*)>", re.IGNORECASE | re.MULTILINE)

Form = Literal[
    "arf", "dsn", "unsubscribe", "auto-reply", "bounce", "unrecognised", "unreadable", "webhook"
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """What a returned message says of one address."""

    kind: BounceKind
    # As the message gives it; matched against the list case-insensitively.
    address: str | None
    status: str | None = None
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Returned:
    """One returned message, read."""

    form: Form
    message_id: str | None = None
    # The addresses it was delivered to (ours: a return path with a VERP token, or the
    # List-Unsubscribe mailto), as its headers give them.
    delivered_to: tuple[str, ...] = ()
    # Of the copy it is about, when it quotes it: its Message-ID and its envelope sender.
    original_message_id: str | None = None
    original_return_path: str | None = None
    findings: tuple[Finding, ...] = field(default=())
    # Why it could not be read, for a message that could not.
    problem: str | None = None
    # Signed by whoever reported it (a relay's webhook): its word is enough to act on.
    signed: bool = False


def read_returned(raw: bytes, *, unsubscribe_addresses: Collection[str] = ()) -> Returned:
    """What ``raw`` says; ``unsubscribe_addresses`` are where List-Unsubscribe mails go."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return Returned(
            form="unreadable",
            problem=f"{len(raw) / 1024 / 1024:.1f} MB: over {MAX_MESSAGE_BYTES // 1024 // 1024} "
            "MB, not read",
        )
    try:
        message = email.message_from_bytes(raw)
        return _read(message, {address.lower() for address in unsubscribe_addresses})
    except Exception as exc:
        return Returned(form="unreadable", problem=f"cannot be parsed: {type(exc).__name__}: {exc}")


def _read(message: email.message.Message, unsubscribe: set[str]) -> Returned:
    base = Returned(
        form="unrecognised",
        message_id=_header(message, "Message-ID"),
        delivered_to=tuple(_addresses(message, _ENVELOPE_HEADERS)),
    )
    if (report := _part(message, "message/feedback-report")) is not None:
        return _with_original(
            replace(base, form="arf", findings=tuple(_feedback(report, message))), message
        )
    if (status := _part(message, "message/delivery-status")) is not None:
        findings = tuple(_statuses(status, _report_text(message)))
        return _with_original(replace(base, form="dsn", findings=findings), message)
    sender = email.utils.parseaddr(str(message.get("From", "")))[1] or None
    if unsubscribe & {address.lower() for address in base.delivered_to} and (
        _asks_to_unsubscribe(message)
    ):
        finding = Finding(kind=BounceKind.UNSUBSCRIBE, address=sender, reason="mailto")
        return replace(base, form="unsubscribe", findings=(finding,))
    # Before the automatic replies: many servers mark their bounces "auto-replied" too.
    findings = tuple(_plain_text_bounce(message))
    if findings:
        text = _text(message)
        return replace(
            base,
            form="bounce",
            original_message_id=_last(_MESSAGE_ID.findall(text)),
            original_return_path=_last(_RETURN_PATH.findall(text)) or None,
            findings=findings,
        )
    if _is_auto_reply(message):
        subject = _one_line(str(message.get("Subject", "")))
        finding = Finding(
            kind=BounceKind.IGNORED, address=sender, reason=f"automatic reply: {subject}"
        )
        return replace(base, form="auto-reply", findings=(finding,))
    return base


def _with_original(returned: Returned, message: email.message.Message) -> Returned:
    """``returned`` with the Message-ID and envelope sender of the copy it quotes."""
    original = _original_headers(message)
    if original is None:
        return returned
    return_path = email.utils.parseaddr(str(original.get("Return-Path", "")))[1]
    return replace(
        returned,
        original_message_id=_header(original, "Message-ID"),
        original_return_path=return_path or None,
    )


def _feedback(part: email.message.Message, message: email.message.Message) -> Iterator[Finding]:
    """The ARF report's verdict on its reader (RFC 5965, 3.1 and 3.2)."""
    report = _fields(part)
    feedback_type = _one_line(str(report.get("Feedback-Type", ""))).lower()
    kind = BounceKind.COMPLAINT if feedback_type in _COMPLAINTS else BounceKind.IGNORED
    recipients = _addresses(report, ("Original-Rcpt-To", "Removal-Recipient"))
    if not recipients and (original := _original_headers(message)) is not None:
        recipients = _addresses(original, ("To",))
    reason = f"feedback report: {feedback_type or 'no type given'}"
    if not recipients:
        yield Finding(kind=kind, address=None, reason=reason)
    for address in recipients:
        yield Finding(kind=kind, address=address, reason=reason)


def _statuses(part: email.message.Message, explanation: str) -> Iterator[Finding]:
    """One finding per recipient block of a delivery-status part (RFC 3464, 2.3);
    ``explanation`` is the report's human-readable text."""
    for block in _status_blocks(part):
        action = _one_line(str(block.get("Action", ""))).lower()
        address = _typed_address(block.get("Final-Recipient")) or _typed_address(
            block.get("Original-Recipient")
        )
        if not action or address is None:
            continue  # the per-message block, or a block that names no one
        status_field = _one_line(str(block.get("Status", "")))
        status = (re.findall(r"[245]\.\d{1,3}\.\d{1,3}", status_field) or [None])[0]
        diagnostic = _one_line(str(block.get("Diagnostic-Code", "")))
        diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic else diagnostic
        if action in ("delivered", "relayed", "expanded"):
            yield Finding(kind=BounceKind.IGNORED, address=address, status=status, reason=action)
            continue
        # The human-readable part often says more than a bare "5.0.0".
        near = _words_near(explanation, address)
        found, code = classify(status, f"{_readable(diagnostic)} {near}")
        # Delayed: still being tried, and it may yet arrive. Recorded, but not a soft
        # bounce: three delay warnings are not three failed issues.
        kind = BounceKind.IGNORED if action == "delayed" else found or BounceKind.REFUSED
        reason = _readable(diagnostic) or near or status_field or action
        if action == "delayed":
            reason = f"delayed: {reason}"
        yield Finding(kind=kind, address=address, status=code, reason=_clip(reason))


def _status_blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, email.message.Message)]
        if len(blocks) == len(payload):
            return blocks
    # Served as text (a server that got the type wrong): read the header blocks ourselves.
    text = part.get_payload(decode=True)
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    return [HeaderParser().parsestr(block) for block in re.split(r"\r?\n\s*\r?\n", raw)]


def _plain_text_bounce(message: email.message.Message) -> Iterator[Finding]:
    """A bounce written as text: the failed addresses as flufl.bounce's detectors find them
    (or, in a message that looks like a bounce, as its report names them), each classified
    by the server's words about it."""
    # Some detectors assume a From header (a bounce always has one).
    permanent, temporary = all_failures(message) if message.get("From") else (set(), set())
    report = _report_text(message)
    ours = _not_recipients(message)
    candidates: dict[str, bool] = {}  # address -> called temporary by the detector
    for failed, transient in [(a, False) for a in sorted(permanent)] + [
        (a, True) for a in sorted(temporary - permanent)
    ]:
        address = failed.decode("utf-8", "replace") if isinstance(failed, bytes) else str(failed)
        # A detector may take an address from the quoted copy's headers: one the report
        # itself does not name is not the failed one.
        named = not report.strip() or address.lower() in report.lower()
        if (
            _ADDRESS.fullmatch(address)
            and plausible_address(address)
            and address.lower() not in ours
            and named
        ):
            candidates.setdefault(address, transient)
    if not candidates and _looks_like_bounce(message):
        for address in _ADDRESS.findall(report):
            if address.lower() not in ours:
                candidates.setdefault(address, False)
    for address, transient in candidates.items():
        # A report about one address is all about it; otherwise, the lines next to each.
        near = _words_near(report, address)
        found, code = classify(None, report if len(candidates) == 1 else near)
        kind = found or (BounceKind.SOFT if transient else BounceKind.REFUSED)
        yield Finding(kind=kind, address=address, status=code, reason=_clip(near or report))


def _report_text(message: email.message.Message) -> str:
    """The text a report was written in, without the copy of the original it quotes."""
    texts = []
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            break
        if part.get_content_maintype() == "text":
            texts.append(_decoded(part))
    text = "\n".join(texts)[:_TEXT_CHARS]
    cut = _ORIGINAL_FOLLOWS.search(text)
    return text[: cut.start()] if cut else text


def _not_recipients(message: email.message.Message) -> set[str]:
    """Addresses a report names that are not the failed recipient's: its own sender and
    recipient, the original's sender, and Message-IDs that look like addresses."""
    headers = ("From", "Reply-To", "Sender", "To", "Delivered-To")
    found = {address.lower() for address in _addresses(message, headers)}
    text = _text(message)
    for line in _NOT_RECIPIENT_LINES.findall(text):
        found.update(address.lower() for address in _ADDRESS.findall(line))
    return found


def _looks_like_bounce(message: email.message.Message) -> bool:
    """From a mail system (MAILER-DAEMON, postmaster), or with a bounce's subject."""
    written = str(message.get("From", "")).lower()
    sender = email.utils.parseaddr(written)[1]
    system = sender.split("@")[0] in ("mailer-daemon", "postmaster") or any(
        name in written for name in ("mailer-daemon", "mail delivery")
    )
    return system or bool(_BOUNCE_SUBJECT.search(str(message.get("Subject", ""))))


def _words_near(text: str, address: str) -> str:
    """The lines that follow the first mention of ``address``: the server's reason."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if address.lower() in line.lower():
            return " ".join(part.strip() for part in lines[index : index + 4] if part.strip())
    return ""


def _asks_to_unsubscribe(message: email.message.Message) -> bool:
    subject = _one_line(str(message.get("Subject", ""))).lower()
    if re.fullmatch(r"((re|aw|fwd?):\s*)*unsubscribe\b.*", subject):
        return True
    first = next((line.strip().lower() for line in _text(message).splitlines() if line.strip()), "")
    return first == "unsubscribe"


def _is_auto_reply(message: email.message.Message) -> bool:
    """An out-of-office or other automatic reply (RFC 3834, and the usual headers)."""
    submitted = str(message.get("Auto-Submitted", "no")).strip().lower()
    return (
        submitted.startswith("auto-replied")
        or message.get("X-Autoreply") is not None
        or message.get("X-Autorespond") is not None
        or str(message.get("Precedence", "")).strip().lower() == "auto_reply"
        or bool(_AUTO_SUBJECT.match(str(message.get("Subject", ""))))
    )


def _original_headers(message: email.message.Message) -> email.message.Message | None:
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                first = payload[0]
                return first if isinstance(first, email.message.Message) else None
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            return HeaderParser().parsestr(text)
    return None


def _part(message: email.message.Message, content_type: str) -> email.message.Message | None:
    return next((part for part in message.walk() if part.get_content_type() == content_type), None)


def _text(message: email.message.Message) -> str:
    """The message's text parts, decoded, one after the other."""
    text = "\n".join(
        _decoded(part) for part in message.walk() if part.get_content_maintype() == "text"
    )
    return text[:_TEXT_CHARS]


def _decoded(part: email.message.Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        return data.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _fields(part: email.message.Message) -> email.message.Message:
    """The fields of a report part (message/feedback-report): parsed as a message, or as
    text when the parser left it so."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return payload[0]
    return HeaderParser().parsestr(_decoded(part) or str(payload))


def _addresses(message: email.message.Message, names: Iterable[str]) -> list[str]:
    found: list[str] = []
    for name in names:
        for value in message.get_all(name, []):
            for _, address in email.utils.getaddresses([str(value)]):
                if plausible_address(address) and address not in found:
                    found.append(address)
    return found


def plausible_address(address: str) -> bool:
    """An address a mailbox could have: one @, no longer than a path may be."""
    return address.count("@") == 1 and len(address) <= _LONGEST_ADDRESS


def _typed_address(value: object) -> str | None:
    """``rfc822; ann@example.org`` -> ``ann@example.org`` (RFC 3464's address-type)."""
    if value is None:
        return None
    text = _one_line(str(value))
    address = (text.split(";", 1)[1] if ";" in text else text).strip().strip("<>").strip()
    return address if plausible_address(address) else None


def _header(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    return _one_line(str(value)) or None if value is not None else None


def _readable(text: str) -> str:
    """A header value as its writer meant it: raw ISO-2022-JP (Japanese servers' usual
    charset, written into headers without encoding) decoded."""
    if "\x1b$B" in text or "\x1b$@" in text:
        try:
            return text.encode("latin-1").decode("iso-2022-jp")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return text
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str) -> str:
    """One printable line of at most _REASON_CHARS: a hostile report's terminal control
    sequences (ESC, BEL, bidi marks) are dropped before it is stored and printed."""
    text = "".join(char for char in _one_line(text) if unicodedata.category(char)[0] != "C")
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _last(found: list[str]) -> str | None:
    return found[-1] if found else None
