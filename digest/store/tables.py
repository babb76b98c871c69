"""The tables, as SQLAlchemy Core sees them; the migrations in digest/migrations/ make them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

__all__ = [
    "FAILED",
    "OUTBOX",
    "PENDING",
    "SENT",
    "admin_actions",
    "alerts",
    "bounce_events",
    "consent_texts",
    "consents",
    "deliveries",
    "erasures",
    "issue_articles",
    "issues",
    "list_ids",
    "metadata",
    "returned_messages",
    "seed_files",
    "signup_attempts",
    "skipped_sends",
    "subscriber_events",
    "subscribers",
]

# A delivery's status: still to send, sent, or failed for good. Here, beside the table,
# so the ledger and the records that read deliveries share them without importing each other.
PENDING, SENT, FAILED = "pending", "sent", "failed"
# deliveries.sent_via of a copy that went to the local outbox only (digest.delivery.mailer).
OUTBOX = "outbox"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("date", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The rendering frozen at the first send, so every copy of the issue is the same.
    Column("subject", Text, nullable=True),
    Column("html", Text, nullable=True),
    Column("text", Text, nullable=True),
    # Set when a send of the issue began (before its rendering is frozen), and when its
    # copies were queued (even to nobody): a send started and never queued is unfinished.
    Column("send_started_at", DateTime(timezone=True), nullable=True),
    Column("queued_at", DateTime(timezone=True), nullable=True),
    # Set when a send stopped because too many copies were refused for good: a person
    # looks before the rest goes; no catch-up resumes it, a `digest send` does.
    Column("held_at", DateTime(timezone=True), nullable=True),
    Column("held_reason", Text, nullable=True),
    UniqueConstraint("date"),
)

issue_articles = Table(
    "issue_articles",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("article_id", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("published", Date, nullable=True),
    # The article exactly as it went into the issue, related stories trimmed.
    Column("content", JSON, nullable=False),
    UniqueConstraint("issue_id", "article_id"),
    Index(None, "article_id"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    # The address case-folded: Ann@example.org and ann@example.org are one subscriber.
    Column("email_key", String(320), nullable=False),
    Column("name", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # How the address got onto the list: "cli", or an import's --source ("example").
    Column("source", String(64), nullable=True),
    # How they joined: "form", "import", "cli" or "api" (see the consents table).
    Column("joined_via", String(16), nullable=True),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    # No copies of issues dated before this day; from it on, copies resume by themselves.
    Column("paused_until", Date, nullable=True),
    # The last confirmation mail sent to a pending address: one an hour at most.
    Column("confirm_sent_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("email_key"),
    Index("ix_subscribers_status", "status", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    # Kept when the subscriber is removed (set to null): the row still says the issue went
    # to the address, which is what a re-added subscriber is recognised by.
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True
    ),
    # The address, case-folded as subscribers.email_key: the ledger's key for a reader.
    Column("email_key", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("message_id", Text, nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The worker that claimed it, kept after the send; and until when the claim holds.
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    # The transport a sent copy was handed to: "outbox" copies are sent again by a relay
    # send; null (copies sent before this was kept) counts as really sent.
    Column("sent_via", String(16), nullable=True),
    UniqueConstraint("issue_id", "subscriber_id"),
    UniqueConstraint("issue_id", "email_key"),
    Index("ix_deliveries_pending", "issue_id", "status", "id"),
    # A bounce that quotes the copy's Message-ID is traced back to its delivery by it.
    Index("ix_deliveries_message_id", "message_id"),
)

# Every list identifier copies went out under, oldest first (see digest.audience.listid).
list_ids = Table(
    "list_ids",
    metadata,
    Column("list_id", String(255), primary_key=True),
    Column("first_used_at", DateTime(timezone=True), nullable=False),
)

# Every message read from a bounce mailbox, once: by the SHA-256 of its bytes.
returned_messages = Table(
    "returned_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("message_id", Text, nullable=True),
    # What it was: dsn, arf, bounce (plain text), unsubscribe, auto-reply, unrecognised, …
    Column("form", String(16), nullable=False),
    # The mailbox it was read from (a path, or an IMAP URL without its password).
    Column("source", Text, nullable=False),
    # Why it could not be read, for one that could not.
    Column("problem", Text, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("digest"),
)

# What a returned message said of one address, and what it was traced to.
bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "returned_id",
        Integer,
        ForeignKey("returned_messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="SET NULL"), nullable=True),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True
    ),
    # The address case-folded, as subscribers.email_key; null when the message named none.
    Column("email_key", String(320), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=True),
    Column("reason", Text, nullable=False),
    # How it was traced: token (VERP), message-id, address; forged, or null (to nobody).
    Column("matched_by", String(16), nullable=True),
    # True when it changed the subscriber's status: the evidence an address is suppressed.
    Column("applied", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_bounce_events_subscriber", "subscriber_id", "kind"),
    Index("ix_bounce_events_issue", "issue_id", "kind"),
    Index("ix_bounce_events_email_key", "email_key"),
)

# Each wording of the signup form's consent, stored once and referenced by each consent.
consent_texts = Table(
    "consent_texts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("first_shown_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sha256"),
)

# The evidence of a subscriber's consent: gone with the subscriber (erasure deletes it).
consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # form, import, cli or api.
    Column("method", String(16), nullable=False),
    Column("text_id", Integer, ForeignKey("consent_texts.id"), nullable=True),
    # The IP the form was posted from, or only its keyed hash (privacy.store_ip = false).
    Column("ip", Text, nullable=True),
    Column("ip_hash", String(64), nullable=True),
    Column("user_agent", Text, nullable=True),
    # An import's file name and the operator's note.
    Column("file_name", Text, nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
)

# Every change to a subscriber with its cause (bounces keep theirs in bounce_events).
subscriber_events = Table(
    "subscriber_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # joined, confirmed, status, renamed, paused, resumed, signup-refused, ...
    Column("kind", String(24), nullable=False),
    # The status it left the subscriber in, when it changed it.
    Column("status", String(16), nullable=True),
    Column("cause", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Signups counted per keyed hash of an IP or an address, for the rate limits.
signup_attempts = Table(
    "signup_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    # "ip" or "address".
    Column("scope", String(8), nullable=False),
    Column("key", String(64), nullable=False),
    # accepted, or why not: honeypot, too-fast, rate-limited, suppressed, ...
    Column("outcome", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_signup_attempts_key", "scope", "key", "created_at"),
)

# Erased addresses, as a keyed hash only: an import or signup cannot bring one back.
erasures = Table(
    "erasures",
    metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
)

# One row per seed file parsed (digest.seedcache): how the file was when parsed, with what
# parser, and the article it gave or why it failed.
seed_files = Table(
    "seed_files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("parser_key", String(64), nullable=False),
    Column("article_id", Text, nullable=True),
    Column("published", Date, nullable=True),
    Column("modified", DateTime(timezone=True), nullable=True),
    Column("content", JSON(none_as_null=True), nullable=True),
    Column("failure", Text, nullable=True),
    Column("checked_at", DateTime(timezone=True), nullable=False),
)

# One row per alert sent to the operator (digest.alerts): one per cause per day.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cause", String(32), nullable=False),
    Column("day", Date, nullable=False),
    Column("title", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("cause", "day"),
)

# One row per action the operator took at /admin (digest.web.admin), oldest first.
admin_actions = Table(
    "admin_actions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text, nullable=False),
    # Where the request came from: the operator's address, never shown to a reader.
    Column("origin", Text, nullable=False),
)

# The days whose scheduled send the operator skipped (a resume deletes the row).
skipped_sends = Table(
    "skipped_sends",
    metadata,
    Column("day", Date, primary_key=True),
    Column("skipped_at", DateTime(timezone=True), nullable=False),
)
