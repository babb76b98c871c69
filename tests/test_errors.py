"""The error tree: one class per failure kind, each a DigestError, with its stdlib base."""

from __future__ import annotations

import ast
import asyncio
import builtins
import mailbox
from pathlib import Path

import pytest

from digest import errors, sending
from digest.delivery.mailer import OutboxTransport, classify
from digest.errors import (
    ConfigError,
    DeliveryFailed,
    DigestError,
    InputError,
    InvalidAddress,
    InvalidName,
    MailboxUnknown,
    MessageError,
    NotFound,
    OutboxError,
    PermanentFailure,
    RelayUnavailable,
    SeedError,
    ServiceError,
    TransientFailure,
)


def test_every_error_is_a_digest_error() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, DigestError) for cls in classes)


def test_the_tree_lists_each_of_its_classes_once_in_order() -> None:
    defined = sorted(
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    )
    assert errors.__all__ == defined


# The send's outcomes carry the send's report, so they live with the send (for now).
_OUTSIDE_THE_TREE = {
    ("sending.py", "SendHalted"),
    ("sending.py", "SendInterrupted"),
    ("sending.py", "SendStopped"),
}


def _exception_bases() -> set[str]:
    stdlib = {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    return stdlib | set(errors.__all__)


def test_no_module_but_errors_defines_an_error_class() -> None:
    package = Path(errors.__file__).parent
    bases = _exception_bases()
    elsewhere: set[tuple[str, str]] = set()
    for path in package.rglob("*.py"):
        if path.name == "errors.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            names = {
                base.id if isinstance(base, ast.Name) else base.attr
                for base in node.bases
                if isinstance(base, ast.Name | ast.Attribute)
            }
            if names & bases:
                elsewhere.add((path.relative_to(package).as_posix(), node.name))
    assert elsewhere == _OUTSIDE_THE_TREE


@pytest.mark.parametrize(
    "outcome", [sending.SendHalted, sending.SendInterrupted, sending.SendStopped]
)
def test_the_sends_outcomes_are_digest_errors(outcome: type[Exception]) -> None:
    assert issubclass(outcome, DigestError)


@pytest.mark.parametrize(
    ("error", "stdlib"),
    [
        (ConfigError, ValueError),
        (InputError, ValueError),
        (InvalidAddress, ValueError),
        (InvalidName, ValueError),
        (NotFound, LookupError),
        (MessageError, ValueError),
        (ServiceError, OSError),
        (OutboxError, OSError),
        (RelayUnavailable, ConnectionError),
    ],
)
def test_the_stdlib_base_catches_it_too(error: type[DigestError], stdlib: type[Exception]) -> None:
    with pytest.raises(stdlib, match=r"^what went wrong$"):
        raise error("what went wrong")


def test_a_seed_error_names_the_file() -> None:
    error = SeedError("seeds/001.txt", "no headline")
    assert (str(error), error.source, error.reason) == (
        "seeds/001.txt: no headline",
        "seeds/001.txt",
        "no headline",
    )
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("code", "reply", "at_rcpt", "relay_failed", "kind"),
    [
        (550, "5.1.1 no such user", True, False, MailboxUnknown),
        (
            550,
            "5.1.1 <ann@example.org>: Recipient address rejected: User unknown",
            True,
            False,
            MailboxUnknown,
        ),
        # The same words after DATA are the message's refusal, not the mailbox's.
        (550, "5.1.1 no such user", False, False, PermanentFailure),
        (554, "5.7.1 rejected as spam", True, False, PermanentFailure),
        (552, "5.3.4 message too big", True, False, PermanentFailure),
        (450, "4.2.1 mailbox busy", True, False, TransientFailure),
        (451, "4.7.1 greylisted, try again later", True, False, TransientFailure),
        (421, "4.3.2 closing connection", False, True, RelayUnavailable),
    ],
)
def test_classify_says_what_happened(
    code: int, reply: str, at_rcpt: bool, relay_failed: bool, kind: type[DeliveryFailed]
) -> None:
    failure = classify(code, reply, "ann@example.org", at_rcpt=at_rcpt, relay_failed=relay_failed)
    assert type(failure) is kind
    assert failure.code == code
    assert str(failure) == f"ann@example.org: {code} {reply}"


def test_permanent_and_transient_failures_are_apart() -> None:
    unknown = classify(550, "5.1.1 no such user", "ann@example.org", at_rcpt=True)
    assert isinstance(unknown, PermanentFailure)
    assert not isinstance(unknown, TransientFailure)
    down = classify(421, "closing", "ann@example.org", relay_failed=True)
    assert isinstance(down, TransientFailure)
    assert not isinstance(down, PermanentFailure)


def test_an_outbox_that_cannot_be_made_is_an_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutboxError, match=r"cannot use it as the outbox") as caught:
        OutboxTransport(blocker / "outbox")
    assert isinstance(caught.value, OSError)


@pytest.mark.timeout(10)
def test_an_outbox_that_cannot_be_written_fails_the_copy_transiently(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path / "outbox")
    (tmp_path / "outbox" / "tmp").rmdir()  # Maildir writes into tmp/ first
    with pytest.raises(TransientFailure, match="cannot write to"):
        asyncio.run(
            transport.send(b"Subject: x\r\n\r\nx\r\n", sender="a@b.org", recipient="c@d.org")
        )
    assert mailbox.Maildir(tmp_path / "outbox", create=False).keys() == []
