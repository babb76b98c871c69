"""One-off mails to one reader (a signup's confirmation, a welcome) as MIME messages.

They are not issues: no per-copy template, a message built whole. A confirmation goes to
someone not yet on the list, so it has no List-Unsubscribe; a welcome goes to a
subscriber and has the one-click unsubscribe of every issue (RFC 8058).
"""

from __future__ import annotations

import datetime as dt
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from digest.email.dkim import DkimKey
from digest.email.headers import CRLF, header_line, mailbox, one_line, unstructured
from digest.email.message import MessageOptions
from digest.email.render import Notice

__all__ = ["build_notice"]


def build_notice(
    notice: Notice,
    options: MessageOptions,
    *,
    to_address: str,
    to_name: str | None,
    now: dt.datetime,
    unsubscribe: tuple[str | None, str] | None = None,
    dkim: DkimKey | None = None,
) -> bytes:
    """The complete message, CRLF line ends; ``unsubscribe`` (https, mailto) adds
    List-Unsubscribe, for a mail to a subscriber."""
    sender = options.from_name or options.newsletter_name
    body = EmailMessage(policy=policy.SMTP)
    body.set_content(notice.text, cte="quoted-printable")
    body.add_alternative(notice.html, subtype="html", cte="quoted-printable")
    fields = [
        header_line("From", mailbox(sender, options.from_address, "from_address")),
        header_line("To", mailbox(to_name, to_address, "the reader's address")),
        header_line("Subject", unstructured(one_line(notice.subject, "the subject"))),
        f"Date: {format_datetime(now)}{CRLF}",
        f"Message-ID: {make_msgid(domain=options.sending_domain)}{CRLF}",
    ]
    if unsubscribe is not None:
        https, mailto = unsubscribe
        links = f"<{https}>,{CRLF} <{mailto}>" if https else f"<{mailto}>"
        fields.append(f"List-Unsubscribe: {links}{CRLF}")
        if https:
            fields.append(f"List-Unsubscribe-Post: List-Unsubscribe=One-Click{CRLF}")
    # The MIME part's own head (MIME-Version, Content-Type) follows the fields above.
    data = "".join(fields).encode("ascii") + body.as_bytes(policy=policy.SMTP)
    return dkim.sign(data) if dkim is not None else data
