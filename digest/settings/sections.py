"""The settings' sections: the SMTP relay, DKIM, the schedule and the check (``[smtp]``, …)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    field_validator,
)

from digest.crontab import cron_trigger

__all__ = [
    "DEFAULT_CONSENT_TEXT",
    "AdminSettings",
    "AlertSettings",
    "BounceSettings",
    "CheckSettings",
    "DkimSettings",
    "MetricsSettings",
    "PrivacySettings",
    "ScheduleSettings",
    "SignupSettings",
    "SmtpSettings",
    "WebhookSettings",
]


class SmtpSettings(BaseModel):
    """Where and how to hand messages to an SMTP relay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    validate_certs: bool = True
    concurrency: int = Field(default=8, ge=1, le=100)
    max_rate: float | None = Field(default=None, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    retry_attempts: int = Field(default=4, ge=1)
    retry_delay: float = Field(default=2.0, ge=0)
    retry_max_delay: float = Field(default=60.0, ge=0)
    failure_threshold: int = Field(default=50, ge=1)
    # Send MAIL, RCPT and DATA together when the relay offers PIPELINING (RFC 2920); off
    # only for a relay whose PIPELINING is broken.
    pipelining: bool = True
    # Several relays, "host[:port]" separated by commas; instead of `host`. Each gets its
    # own `concurrency` connections and `max_rate`; copies are spread across them.
    hosts: str | None = None
    # A relay that fails is left out of the rotation this long; its copies go elsewhere.
    relay_cooldown_seconds: float = Field(default=60.0, gt=0)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        if value is not None:
            _check_host(value)
        return value

    @field_validator("hosts")
    @classmethod
    def _valid_hosts(cls, value: str | None) -> str | None:
        if value is not None:
            _relay_list(value, 587)
        return value

    @property
    def relays(self) -> tuple[tuple[str, int], ...]:
        """Every relay to send through, (host, port): `hosts`, else `host`, else none."""
        if self.hosts:
            return _relay_list(self.hosts, self.port)
        return ((self.host, self.port),) if self.host else ()


def _check_host(host: str) -> None:
    # A URL or "user:password@host" here would be printed wherever the relay is named:
    # credentials go in smtp.username and smtp.password, which are never shown.
    if not host or any(char in host for char in "@/ ") or not host.isascii():
        raise ValueError(
            "expected a host name or IP address only, such as 'relay.example.org' "
            "(no scheme, no user or password: use smtp.username and smtp.password)"
        )


def _relay_list(value: str, default_port: int) -> tuple[tuple[str, int], ...]:
    relays = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, colon, port = item.rpartition(":") if ":" in item else (item, "", "")
        if (colon and not (port.isdigit() and 1 <= int(port) <= 65535)) or "@" in item:
            raise ValueError(
                "expected host or host:port, with a port from 1 to 65535 "
                "(no user or password: use smtp.username and smtp.password)"
            )
        _check_host(host)
        relays.append((host, int(port) if colon else default_port))
    if not relays:
        raise ValueError("expected relays as host[:port], separated by commas")
    return tuple(relays)


class DkimSettings(BaseModel):
    """Signing every message with DKIM, when a key is configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    private_key_file: Path | None = None
    selector: str | None = None
    domain: str | None = None


class ScheduleSettings(BaseModel):
    """When the daily digest goes out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    # Five-field crontab, read in `timezone`: minute hour day-of-month month day-of-week.
    cron: str = "0 7 * * *"
    # A send missed (digest was down) is still made if digest is back within this long;
    # later than that the day is skipped.
    misfire_grace_seconds: PositiveInt = 3600
    # On SIGINT or SIGTERM, how long a send under way may take to finish and be recorded.
    stop_timeout_seconds: PositiveInt = 60
    # At start and before each run, issues of this many recent days that still have
    # pending deliveries (a send killed or halted) are finished first.
    catch_up_days: int = Field(default=2, ge=0, le=30)
    # A send that halted (relay down) is tried again after this many minutes, the same day.
    retry_minutes: float = Field(default=15, gt=0)
    # At most this many such retries of one day's send.
    retry_limit: int = Field(default=8, ge=0)
    # Before each scheduled send, the checks of `digest check`: a FAIL skips the send (and
    # says why in the log) rather than sending what would bounce or land in spam.
    check_before_send: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            cron_trigger(value, ZoneInfo("UTC"))
        except ValueError as exc:
            raise ValueError(f"not a crontab expression such as '0 7 * * *': {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone name such as 'Europe/London'") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)


class CheckSettings(BaseModel):
    """How ``digest check`` looks things up: the DNS servers it asks, and its time limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # DNS servers for the checks of the From domain, "address" or "address:port" ("[::1]:53"
    # for IPv6) separated by commas. Unset: the system's resolver (/etc/resolv.conf).
    nameservers: str | None = None
    # Each DNS look-up gives up after this many seconds; no answer is a warning, not a FAIL.
    dns_timeout: float = Field(default=3.0, gt=0, le=60)
    # SpamAssassin, where installed, may take this long to score the message.
    spam_timeout: float = Field(default=60.0, gt=0)

    @field_validator("nameservers")
    @classmethod
    def _valid_nameservers(cls, value: str | None) -> str | None:
        if value is not None:
            _nameserver_list(value)
        return value

    @property
    def nameserver_list(self) -> tuple[tuple[str, int], ...]:
        """The DNS servers to ask, (address, port); empty for the system's resolver."""
        return _nameserver_list(self.nameservers) if self.nameservers else ()


def _nameserver_list(value: str) -> tuple[tuple[str, int], ...]:
    servers = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item.startswith("["):
            address, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") if rest.startswith(":") else ("" if not rest else "x")
        elif item.count(":") == 1:
            address, _, port = item.partition(":")
        else:
            address, port = item, ""
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(
                f"{item!r}: expected an IP address, optionally with :port "
                "('192.0.2.53', '192.0.2.53:5353', '[2001:db8::53]:53')"
            ) from None
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"{item!r}: expected a port from 1 to 65535")
        servers.append((address, int(port) if port else 53))
    if not servers:
        raise ValueError("expected IP addresses separated by commas")
    return tuple(servers)


class BounceSettings(BaseModel):
    """Reading what comes back after a send: where, how often, and when soft bounces count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The mailbox bounces, complaints and unsubscribe mails arrive in: a Maildir folder,
    # an mbox file, or an IMAP folder (imaps://user@host/INBOX, or imap:// for STARTTLS;
    # the password in `password`). `digest schedule` reads it every poll_minutes.
    source: str | None = None
    password: SecretStr | None = None
    poll_minutes: float = Field(default=10, gt=0)
    # Soft bounces (a full mailbox, delivery expired) on this many issues in a row,
    # within soft_days and with no issue arriving between, suppress the address.
    soft_limit: int = Field(default=3, ge=1)
    soft_days: int = Field(default=30, ge=1)
    # During a send, when more than this share of the copies decided so far (200 at
    # least) were refused for good by the relay, the send stops; unset: it never does.
    max_rate: float | None = Field(default=0.05, gt=0, le=1)


class WebhookSettings(BaseModel):
    """Relays that report bounces and complaints by HTTP, to ``digest serve``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Mailgun's webhook signing key: with it, POST /webhooks/mailgun takes Mailgun's
    # events (signature checked); without it, that address answers 404.
    mailgun_signing_key: SecretStr | None = None


class AdminSettings(BaseModel):
    """The operator's pages at /admin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The argon2 hash of the operator's password, from `digest admin set-password`;
    # unset, /admin answers 404.
    password_hash: SecretStr | None = None
    # How long a login lasts.
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Wrong passwords allowed from one address within login_window_minutes.
    login_attempts: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)


class AlertSettings(BaseModel):
    """Telling the operator when a send goes wrong: by mail, by a chat webhook, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where alert mails go; none: no mail.
    email: str | None = None
    # A relay for alert mails, "host[:port]", with smtp's security and login; none: the
    # configured transport (when that relay is what failed, the mail may not get through:
    # the webhook and the log still say it).
    relay: str | None = None
    # A Slack or Mattermost incoming webhook: a JSON {"text": ...} is POSTed to it. It
    # holds a token, so it is kept like a password.
    webhook_url: SecretStr | None = None
    # Nothing new to send this many days in a row is an alert.
    empty_days: int = Field(default=3, ge=1)
    # An issue whose hard bounces, or complaints, pass these shares of its copies.
    bounce_rate: float = Field(default=0.02, gt=0, le=1)
    complaint_rate: float = Field(default=0.001, gt=0, le=1)

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("expected the webhook's http(s) URL")
        return value

    @property
    def relay_address(self) -> tuple[str, int | None] | None:
        """``relay`` as (host, port or None)."""
        if not self.relay:
            return None
        host, _, port = self.relay.strip().rpartition(":")
        if host and port.isdigit():
            return host, int(port)
        return self.relay.strip(), None


class MetricsSettings(BaseModel):
    """``/metrics`` for Prometheus: who may read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # With a token, /metrics answers only requests that bear it (Authorization: Bearer
    # TOKEN); without one, only requests made from this machine, not through a proxy.
    token: SecretStr | None = None


# The wording shown beside the signup form's button, and kept with each consent.
DEFAULT_CONSENT_TEXT = (
    "Send me {newsletter_name} by email. I can unsubscribe at any time with the link in "
    "every issue, and ask for my data or its deletion from the preferences page."
)


class SignupSettings(BaseModel):
    """Readers who sign up themselves: confirmation, welcome, limits, the consent wording."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # How long a confirmation link works.
    confirm_hours: float = Field(default=48, gt=0)
    # Pending addresses never confirmed are removed after this many days.
    pending_days: int = Field(default=7, ge=1)
    # Send a welcome mail when an address is confirmed.
    welcome: bool = False
    # Signups accepted per hour from one IP, and for one address.
    per_ip_per_hour: int = Field(default=5, ge=1)
    per_address_per_hour: int = Field(default=3, ge=1)
    # {newsletter_name} is filled in. Changing it starts a new version of the evidence.
    consent_text: str = Field(default=DEFAULT_CONSENT_TEXT, min_length=1, max_length=1000)

    @field_validator("consent_text")
    @classmethod
    def _consent_placeholders(cls, value: str) -> str:
        try:
            value.format(newsletter_name="")
        except (KeyError, IndexError, ValueError):
            raise ValueError("expected text with only {newsletter_name} in braces") from None
        return value


class PrivacySettings(BaseModel):
    """What is kept of a reader beyond their address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keep the IP a signup came from as evidence of consent; false keeps only a keyed hash.
    store_ip: bool = True
