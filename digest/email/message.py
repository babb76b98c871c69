"""Subscribers' copies of an issue as MIME messages, built as EMAIL.md asks.

An issue's message is serialised once, as a :class:`MessageTemplate`: the common headers,
the MIME framing and both parts already quoted-printable encoded, split where the
per-recipient values go. Each copy then costs a few small encodings and a join, not an
``EmailMessage`` (whose pure-Python encoding of long inlined HTML lines takes
milliseconds a message).
"""

from __future__ import annotations

import binascii
import datetime as dt
import secrets
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from digest.audience.tokens import Purpose, personal_tokens, subscriber_token, unsubscribe_token
from digest.email.dkim import DkimKey
from digest.email.headers import CRLF, header_line, mailbox, one_line, phrase, unstructured
from digest.email.markers import MARKERS
from digest.email.render import Personal, html_values, text_values
from digest.models import RenderedIssue, Subscriber

__all__ = [
    "MessageOptions",
    "MessageTemplate",
    "WireMessage",
    "build_message",
    "personal_links",
    "preferences_link",
    "recipient",
    "unsubscribe_links",
]

_SOFT_BREAK = "=\r\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageOptions:
    """What building the messages of an issue needs of the settings, and nothing else."""

    newsletter_name: str
    from_address: str
    # The domain of Message-IDs (and of the derived list id): the From address's.
    sending_domain: str
    # RFC 2919's list id, in List-Id and in every unsubscribe token (digest.audience.listid).
    list_id: str
    from_name: str | None = None
    public_url: str | None = None


def unsubscribe_links(
    options: MessageOptions, subscriber: Subscriber, *, secret_key: str
) -> tuple[str | None, str]:
    """The one-click https URL (only with a public URL) and the mailto URL for a subscriber."""
    https = None
    if options.public_url:
        token = unsubscribe_token(
            secret_key,
            subscriber_id=subscriber.id,
            list_id=options.list_id,
            email=subscriber.email,
        )
        https = f"{options.public_url}/unsubscribe/{token}"
    # The reply's own From says who is leaving; the address is not put in the URL.
    mailto = f"mailto:{options.from_address}?subject=unsubscribe"
    return https, mailto


def preferences_link(
    options: MessageOptions, subscriber: Subscriber, *, secret_key: str
) -> str | None:
    """The subscriber's own preferences page, signed like the unsubscribe link (only with a
    public URL)."""
    if not options.public_url:
        return None
    token = subscriber_token(
        secret_key,
        Purpose.PREFERENCES,
        subscriber_id=subscriber.id,
        list_id=options.list_id,
        email=subscriber.email,
    )
    return f"{options.public_url}/preferences/{token}"


def personal_links(
    options: MessageOptions, subscriber: Subscriber, *, secret_key: str
) -> tuple[str | None, str, str | None]:
    """A copy's one-click unsubscribe URL, mailto URL and preferences page (the two https
    ones only with a public URL): what :func:`unsubscribe_links` and
    :func:`preferences_link` give, the address's tag made once, for every copy."""
    mailto = f"mailto:{options.from_address}?subject=unsubscribe"
    if not options.public_url:
        return None, mailto, None
    unsubscribe, preferences = personal_tokens(
        secret_key, subscriber_id=subscriber.id, list_id=options.list_id, email=subscriber.email
    )
    return (
        f"{options.public_url}/unsubscribe/{unsubscribe}",
        mailto,
        f"{options.public_url}/preferences/{preferences}",
    )


def build_message(
    rendered: RenderedIssue,
    subscriber: Subscriber,
    options: MessageOptions,
    *,
    secret_key: str,
    now: dt.datetime,
    test: bool = False,
) -> bytes:
    """One subscriber's complete message, CRLF line ends, ready for SMTP or a Maildir."""
    template = MessageTemplate.build(rendered, options, secret_key=secret_key, now=now, test=test)
    return template.render(subscriber)


class WireMessage(bytes):
    """A message already in SMTP's wire form: CRLF line ends only, and no line that starts
    with a dot, so DATA sends it as it is (RFC 5321 4.5.2). What
    :meth:`MessageTemplate.render` makes is one by construction (the quoted-printable here
    writes a leading dot as "=2E"; header lines start with a name or, folded, with white
    space), so no copy needs scanning on its way out."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _EncodedPart:
    """A quoted-printable body split at its markers: text, marker, text, marker, text."""

    pieces: tuple[str, ...]
    markers: tuple[str, ...]

    @classmethod
    def encode(cls, body: str) -> _EncodedPart:
        # Line ends as newlines only, once per issue: b2a_qp would pass a CR through, bare
        # on the wire. (The values filled in per copy, links and an address, hold none.)
        split = MARKERS.split(body.replace("\r\n", "\n").replace("\r", "\n"))
        texts, markers = split[0::2], split[1::2]
        # Every piece ends on a line break, hard or soft, so a value of any length can
        # follow it on a line of its own; decoded, the soft breaks vanish.
        pieces = [_qp(text) if text.endswith("\n") else _qp_open(text) for text in texts[:-1]]
        return cls(pieces=(*pieces, _qp(texts[-1])), markers=tuple(markers))

    def fill(self, values: dict[str, str]) -> str:
        out = [self.pieces[0]]
        for marker, piece in zip(self.markers, self.pieces[1:], strict=True):
            out.append(_qp_open(values[marker]))
            out.append(piece)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """One issue's message with the per-recipient parts left open."""

    options: MessageOptions
    secret_key: str
    head: str
    text_head: str
    text: _EncodedPart
    html_head: str
    html: _EncodedPart
    tail: str
    dkim: DkimKey | None = None

    @classmethod
    def build(
        cls,
        rendered: RenderedIssue,
        options: MessageOptions,
        *,
        secret_key: str,
        now: dt.datetime,
        test: bool = False,
        dkim: DkimKey | None = None,
    ) -> MessageTemplate:
        """Serialise everything the copies share, once; ``dkim`` signs every copy."""
        common = EmailMessage(policy=policy.SMTP)
        sender = options.from_name or options.newsletter_name
        # The values from data are folded here, not by the email package: its folding of
        # a long display name can drop the quotes or start the value with a line break.
        from_ = header_line("From", mailbox(sender, options.from_address, "from_address"))
        subject = one_line(("[TEST] " if test else "") + rendered.subject, "the subject")
        common["Date"] = format_datetime(now)
        name = one_line(options.newsletter_name, "newsletter_name")
        # A phrase, written like a display name (RFC 2919).
        list_id_line = header_line("List-Id", [*phrase(name), f" <{options.list_id}>"])
        if options.public_url is not None:
            # RFC 8058: the https URL takes a POST with this body and unsubscribes at once.
            common["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # Gmail's feedback loop reports complaints counted by these fields, the sender's
        # own id last: per issue, per list.
        common["Feedback-ID"] = f"{rendered.date.isoformat()}:{options.list_id}:digest"
        common["MIME-Version"] = "1.0"
        boundary = f"=_digest_{secrets.token_hex(12)}"
        common["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
        head = "".join(
            (
                from_,
                header_line("Subject", unstructured(subject)),
                list_id_line,
                *(policy.SMTP.fold(field, value) for field, value in common.items()),
            )
        )
        return cls(
            options=options,
            secret_key=secret_key,
            head=head,
            text_head=_part_head(boundary, "plain"),
            text=_EncodedPart.encode(rendered.text),
            html_head=f"{CRLF}{_part_head(boundary, 'html')}",
            html=_EncodedPart.encode(rendered.html),
            tail=f"{CRLF}--{boundary}--{CRLF}",
            dkim=dkim,
        )

    def new_message_id(self) -> str:
        """A fresh Message-ID on the sending domain."""
        return make_msgid(domain=self.options.sending_domain)

    def links(self, subscriber: Subscriber) -> tuple[str | None, str]:
        """The subscriber's one-click https unsubscribe URL (if any) and the mailto URL."""
        return unsubscribe_links(self.options, subscriber, secret_key=self.secret_key)

    def personal(self, subscriber: Subscriber) -> Personal:
        """What the subscriber's copy fills in: their unsubscribe and preferences links, and
        how they are named."""
        return self._personal(subscriber, *self._links(subscriber))

    def _links(self, subscriber: Subscriber) -> tuple[str | None, str, str | None]:
        return personal_links(self.options, subscriber, secret_key=self.secret_key)

    def _personal(
        self, subscriber: Subscriber, https: str | None, mailto: str, preferences: str | None
    ) -> Personal:
        return Personal(
            unsubscribe_url=https or mailto,
            recipient=recipient(subscriber),
            preferences_url=preferences or "",
        )

    def render(self, subscriber: Subscriber, *, message_id: str | None = None) -> WireMessage:
        """This subscriber's copy: their To, Message-ID and unsubscribe link, in both parts."""
        to = header_line(
            "To", mailbox(subscriber.name, subscriber.email, "the subscriber's address")
        )
        https, mailto, preferences = self._links(subscriber)
        personal = self._personal(subscriber, https, mailto, preferences)
        # Folded between the two URLs: RFC 5322 asks for lines of 78 at most where it can
        # be done, and a URL itself is never broken.
        links = f"<{https}>,{CRLF} <{mailto}>" if https else f"<{mailto}>"
        data = "".join(
            (
                self.head,
                to,
                f"Message-ID: {message_id or self.new_message_id()}{CRLF}",
                f"List-Unsubscribe: {links}{CRLF}{CRLF}",
                self.text_head,
                self.text.fill(text_values(personal)),
                self.html_head,
                self.html.fill(html_values(personal)),
                self.tail,
            )
        ).encode("ascii")
        if self.dkim is None:
            return WireMessage(data)
        # The signature is one more header field, folded with white space.
        return WireMessage(self.dkim.sign(data))


def _part_head(boundary: str, subtype: str) -> str:
    return (
        f'--{boundary}{CRLF}Content-Type: text/{subtype}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
    )


def _qp(text: str) -> str:
    """``text`` quoted-printable, every line within RFC 2045's 76 characters and none
    starting with a dot.

    A dot that would start a line is written "=2E" (the same character, decoded): SMTP
    doubles a line's leading dot on the wire (RFC 5321 4.5.2), so a message with none is
    already in its wire form and every copy goes out without being scanned for them.
    """
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")
    if len(encoded) <= 76 and not encoded.startswith(".") and "\n." not in encoded:
        # The common case, a short personal value: no line can be too long.
        return encoded.replace("\n", CRLF)
    # b2a_qp lets a line that ends in white space (written "=20") reach 77 or 78.
    return CRLF.join(_within(line, 76) for line in encoded.split("\n"))


def _qp_open(text: str) -> str:
    """``text`` quoted-printable and ended by a soft line break, for text that more follows.

    The "=" of the soft break goes on the last line, so that line may hold 75 at most.
    """
    encoded = _qp(text)
    if len(encoded) <= 75:
        return encoded + _SOFT_BREAK
    done, crlf, last = encoded.rpartition(CRLF)
    return done + crlf + _within(last, 75) + _SOFT_BREAK


def _within(line: str, width: int) -> str:
    """A quoted-printable ``line`` broken with soft breaks into lines of ``width`` at most,
    none of them starting with a dot.

    Each break leaves room for its "=" and never falls inside an "=XX".
    """
    pieces = []
    while True:
        if line.startswith("."):
            line = "=2E" + line[1:]
        if len(line) <= width:
            break
        cut = width - 1
        cut -= 1 if line[cut - 1] == "=" else 2 if line[cut - 2] == "=" else 0
        pieces.append(line[:cut] + "=")
        line = line[cut:]
    pieces.append(line)
    return CRLF.join(pieces)


def recipient(subscriber: Subscriber) -> str:
    """How the footer names the subscriber: their address, in words (no angle brackets)."""
    return subscriber.email
