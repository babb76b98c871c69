"""What a failure report means for the address: hard, soft, or refused for other reasons.

The enhanced status code (RFC 3463) decides where it is specific; where it is not
(``5.0.0``, or none, as in many plain-text bounces), the server's words do. A permanent
failure that is not known to be about the address (policy, content, reputation, size) is
``refused``: the address stays on the list, and the fix is on the sender's side.
"""

from __future__ import annotations

import re

from digest.models import BounceKind

__all__ = ["classify", "status_codes"]

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# The address does not exist or takes no mail: never mail it again.
_HARD_STATUSES = {
    "5.1.1",  # bad destination mailbox
    "5.1.2",  # bad destination system (no such domain)
    "5.1.3",  # bad destination address syntax
    "5.1.6",  # mailbox has moved
    "5.1.10",  # null MX: the domain takes no mail
    "5.2.1",  # mailbox disabled
    "5.7.13",  # user account disabled
}
# Temporary, whatever the class says: a full mailbox, a system full or misconfigured, and
# network and routing trouble (5.4.x, which includes "delivery time expired", 5.4.7).
_SOFT_STATUSES = {"5.2.2", "5.3.1", "5.3.2", "5.3.5"}
_SOFT_SUBJECTS = {"4"}
# About the sender, the message or the policy, not the address: security and policy
# (5.7.x), media (5.6.x), protocol (5.5.x), size (5.2.3, 5.3.4), the sender's own address.
_REFUSED_SUBJECTS = {"5", "6", "7"}
_REFUSED_STATUSES = {"5.1.7", "5.1.8", "5.2.3", "5.2.4", "5.3.4"}

# Said of the sender, not the recipient: the fix is the sender's, the address stays.
_SENDER_WORDS = (
    "sender address",
    "sender domain",
    "sender rejected",
    "sender verify",
    "sender verification",
    "your domain",
    "mail from",
    "envelope from",
    "return path",
)
# A temporary refusal in the server's own words: retried later by the server.
_TEMPORARY_WORDS = ("greylist", "graylist", "try again", "too many connections")
# An SMTP reply of class 4 at the start of the words, or after the server's name.
_TEMPORARY_REPLY = re.compile(r"(?:^|[\s:;(])4[0-9]{2}[ -]")

_WORDS = {
    BounceKind.SOFT: (
        "mailbox full",
        "mailbox is full",
        "quota",
        "insufficient storage",
        "over the allowed",
        "exceeded storage",
        "try again later",
        "service currently unavailable",
        "service unavailable",
        "temporarily",
        "temporary failure",
        "timed out",
        "time-out",
        "too long in the queue",
        "has been in the queue too long",
        "retry time",
        "retry timeout",
        "delivery time expired",
        "could not be delivered within",
    ),
    BounceKind.HARD: (
        "user unknown",
        "unknown user",
        "no such user",
        "no such mailbox",
        "no such recipient",
        "no mailbox",
        "unknown recipient",
        "recipient unknown",
        "invalid recipient",
        "invalid mailbox",
        "mailbox not found",
        "user not found",
        "recipient not found",
        "address not found",
        "does not exist",
        "doesn't exist",
        "not a valid mailbox",
        "unknown or illegal alias",
        "no such domain",
        "domain not found",
        "host not found",
        "host unknown",
        "unrouteable address",
        "name or service not known",
        "account disabled",
        "account has been disabled",
        "account is disabled",
        "mailbox disabled",
        "account expired",
        "account is locked",
        "user does not have",
        "recipient name is not recognized",
        "not listed in domino directory",
        "not listed in the domino directory",
        "not listed in public name & address book",
        # Lotus Notes and Domino in Japanese: "not in the directory's list", "not found
        # in the Domino directory".
        "ディレクトリのリストにありません",
        "ディレクトリには見つかりません",
        "not our customer",
        "address rejected",
    ),
    BounceKind.REFUSED: (
        "spam",
        "blocked",
        "blacklist",
        "blocklist",
        "block list",
        "denylist",
        "policy",
        "dmarc",
        "spf",
        "dkim",
        "reputation",
        "content",
        "virus",
        "too large",
        "too big",
        "size limit",
        "exceeds",
        "exceeded",
        "relay access denied",
        "relaying denied",
        "not permitted",
        "access denied",
        "rate limit",
        "too many",
    ),
}


def status_codes(text: str) -> list[str]:
    """The enhanced status codes in ``text`` ("5.1.1"), in order."""
    return [".".join(found.groups()) for found in _STATUS.finditer(text)]


def classify(status: str | None, text: str) -> tuple[BounceKind | None, str | None]:
    """The kind of a failure from its status (the report's) and the server's words, and
    the most telling status code found; no kind when neither tells (the caller knows
    whether the report called the failure permanent)."""
    codes = ([status] if status else []) + status_codes(text)
    # "5.0.0", "5.1.0": the class, no detail. A specific code in the words tells more.
    specific = [code for code in codes if not code.endswith(".0")]
    code = (specific or codes)[0] if codes else None
    words = " ".join(text.lower().split())
    if code is not None and code.startswith("2."):
        return BounceKind.IGNORED, code
    if code in _HARD_STATUSES:
        return BounceKind.HARD, code
    if any(word in words for word in _WORDS[BounceKind.SOFT][:5]):
        return BounceKind.SOFT, code  # a full mailbox is temporary, even said with a 5
    subject = code.split(".")[1] if code else None
    if code is not None and (
        code.startswith("4.") or code in _SOFT_STATUSES or subject in _SOFT_SUBJECTS
    ):
        return BounceKind.SOFT, code
    if code is not None and (code in _REFUSED_STATUSES or subject in _REFUSED_SUBJECTS):
        return BounceKind.REFUSED, code
    if any(word in words for word in _SENDER_WORDS):
        return BounceKind.REFUSED, code
    if _TEMPORARY_REPLY.search(words) or any(word in words for word in _TEMPORARY_WORDS):
        return BounceKind.SOFT, code
    for kind in (BounceKind.HARD, BounceKind.SOFT, BounceKind.REFUSED):
        if any(word in words for word in _WORDS[kind]):
            return kind, code
    if code is not None and code.startswith("5."):
        # Permanent, for a reason the report does not say: not known to be the address's.
        return BounceKind.REFUSED, code
    return None, code
