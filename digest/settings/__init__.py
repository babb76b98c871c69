"""The one settings model, and how it is read.

Precedence, highest first: values passed by the CLI, ``DIGEST_*`` environment variables
(nested with ``__``), a ``.env`` file, the TOML config file, the defaults below.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from digest.audience.tokens import MIN_SECRET_KEY_LENGTH
from digest.errors import ConfigError
from digest.models import PickLimits
from digest.settings.brand import BrandSettings
from digest.settings.describe import ENV_PREFIX
from digest.settings.describe import describe as _describe
from digest.settings.describe import keys_in as _keys_in
from digest.settings.sections import (
    AdminSettings,
    AlertSettings,
    BounceSettings,
    CheckSettings,
    DkimSettings,
    MetricsSettings,
    PrivacySettings,
    ScheduleSettings,
    SignupSettings,
    SmtpSettings,
    WebhookSettings,
)

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_KICKERS",
    "DEFAULT_PUBLISHERS",
    "ENV_PREFIX",
    "AdminSettings",
    "AlertSettings",
    "BounceSettings",
    "BrandSettings",
    "CheckSettings",
    "DkimSettings",
    "MetricsSettings",
    "PrivacySettings",
    "ScheduleSettings",
    "Settings",
    "SignupSettings",
    "SmtpSettings",
    "WebhookSettings",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("config/digest.toml")
# Names the config file to read instead of the default; not a setting itself.
CONFIG_FILE_ENV = "DIGEST_CONFIG"

DEFAULT_KICKERS = (
    "Under The Radar",
    "Talking Point",
    "The Explainer",
    "Speed Read",
    "In Depth",
    "Instant Opinion",
    "Today's Big Question",
    "In the Spotlight",
    "The Week Recommends",
    "Feature",
    "Briefing",
    "Opinion",
    "Review",
)
DEFAULT_PUBLISHERS = ("The Week", "The Week UK", "The Week US")

# settings_customise_sources gets no arguments of ours, so load_settings hands it the file here.
_toml_file: ContextVar[Path] = ContextVar("digest_toml_file", default=DEFAULT_CONFIG_FILE)


class Settings(BaseSettings):
    """Every setting digest reads; ``config/digest.toml`` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    seeds_dir: Path = Path("seeds")
    # The editor's notes, one Markdown file a day (YYYY-MM-DD.md); unset: seeds_dir/notes.
    notes_dir: Path | None = None
    # The note of one run, instead of the day's file (digest send/preview --note FILE).
    note_file: Path | None = None
    database_url: str = "sqlite:///var/digest.db"
    # Unset: the rules shipped in the package (digest/data/boilerplate.toml).
    boilerplate_file: Path | None = None
    # NoDecode: in DIGEST_* a list is JSON or simply comma-separated (see _list_of_names).
    kickers: Annotated[tuple[str, ...], NoDecode] = DEFAULT_KICKERS
    publishers: Annotated[tuple[str, ...], NoDecode] = DEFAULT_PUBLISHERS
    max_articles: int = Field(default=5, ge=1)
    max_related: int = Field(default=6, ge=0)
    secret_key: SecretStr | None = None
    # The RFC 2919 list identifier ("the-digest.news.example.org"). Unset, it is derived
    # from newsletter_name and from_address, then kept in the database at the first send,
    # so renaming either later does not break the links already in inboxes.
    list_id: str | None = None
    newsletter_name: str = Field(default="The Digest", min_length=1)
    from_address: str = "digest@localhost"
    # The envelope sender of every copy, made per copy (VERP): bounces+TOKEN@domain, so a
    # bounce names the copy it is about. Unset: from_address, and bounces are traced by
    # address only.
    bounce_address: str | None = None
    from_name: str | None = None
    public_url: str | None = None
    postal_address: str = ""
    # Words of each lead article in the email before "Continue reading" (0: the whole
    # article); the rest is on its page in the web archive.
    excerpt_words: int = Field(default=120, ge=0)
    excerpt_paragraphs: int | None = Field(default=None, ge=1)
    templates_dir: Path | None = None
    article_url_template: str | None = None
    preview_dir: Path = Path("var/preview")
    outbox_dir: Path = Path("var/outbox")
    # How long a sending worker's claim on a batch of deliveries holds: after that, if it
    # has not sent them (it died), another worker takes them over.
    claim_lease_seconds: PositiveInt = 300
    schedule: ScheduleSettings = ScheduleSettings()
    smtp: SmtpSettings = SmtpSettings()
    dkim: DkimSettings = DkimSettings()
    check: CheckSettings = CheckSettings()
    bounces: BounceSettings = BounceSettings()
    webhooks: WebhookSettings = WebhookSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertSettings = AlertSettings()
    admin: AdminSettings = AdminSettings()
    signup: SignupSettings = SignupSettings()
    privacy: PrivacySettings = PrivacySettings()
    brand: BrandSettings = BrandSettings()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                "expected a database URL such as 'sqlite:///var/digest.db' or "
                "'postgresql+psycopg://user@host/dbname'"
            ) from None
        return value

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "+" in value.rpartition("@")[0]:
            raise ValueError("expected an address without '+': digest adds +TOKEN to it")
        return cls._address(value)

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        local, _, domain = value.rpartition("@")
        # "localhost" is special-use, so email-validator refuses it; it is the outbox
        # default, and a real send is refused it elsewhere. Its local part is still checked.
        checked = f"{local}@localhost.test" if domain.casefold() == "localhost" else value
        try:
            validate_email(
                checked,
                check_deliverability=False,
                allow_smtputf8=False,
                test_environment=True,
            )
        except EmailNotValidError as exc:
            raise ValueError(
                f"expected an email address such as 'digest@news.example.org': {exc}"
            ) from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # A short or empty key can be guessed, and every unsubscribe link with it.
        if len(value.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_KEY_LENGTH} characters; make one with: "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        return value

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        # RFC 2919: a dot-atom, at most 255 characters, with at least one dot.
        if len(value) > 255 or not re.fullmatch(
            r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+", value
        ):
            raise ValueError("expected a list identifier such as 'the-digest.news.example.org'")
        return value

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError("no such folder")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        # It goes into List-Unsubscribe as it is: https (RFC 8058), ASCII, nothing to quote.
        if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?", value):
            raise ValueError(
                "expected the site's https base URL in ASCII (a non-ASCII host in its "
                "xn-- form), such as 'https://news.example.org'"
            )
        return value.rstrip("/")

    @field_validator("article_url_template")
    @classmethod
    def _url_template(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            value.format(id="", slug="")
        except (KeyError, IndexError, ValueError):
            raise ValueError("expected a URL with only {id} and {slug} in braces") from None
        return value

    @field_validator("newsletter_name", "from_name", "postal_address")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # These end up in headers: a line break there would start a header of its own.
        if value is not None and (len(value.splitlines()) > 1 or not value.isprintable()):
            raise ValueError("expected one line of text, without line breaks or control characters")
        return value

    @field_validator("kickers", "publishers", mode="before")
    @classmethod
    def _list_of_names(cls, value: Any) -> Any:
        # From the environment a list arrives as text: a JSON list, or names with commas.
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list ({exc.msg}); or give names with commas") from exc
        return [entry for entry in value.split(",") if entry.strip()] if value.strip() else []

    @field_validator("kickers", "publishers")
    @classmethod
    def _no_blank_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(entry.strip() for entry in value)
        if any(not entry for entry in cleaned):
            raise ValueError("expected a list of non-empty names")
        return cleaned

    @property
    def sending_domain(self) -> str:
        """The domain of the From address: Message-IDs, the List-Id and DKIM live under it."""
        return self.from_address.rpartition("@")[2]

    @property
    def pick_limits(self) -> PickLimits:
        """The picker's limits, from ``max_articles`` and ``max_related``."""
        return PickLimits(max_articles=self.max_articles, max_related=self.max_related)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML source goes below env and .env: the documented example that returns
        # only the TOML source would silently drop the environment.
        toml_settings = TomlConfigSettingsSource(settings_cls, toml_file=_toml_file.get())
        dotenv_ours = _OwnVariablesOnly(settings_cls, dotenv_settings)
        return (init_settings, env_settings, dotenv_ours, toml_settings)


class _OwnVariablesOnly(PydanticBaseSettingsSource):
    """The .env file without other programs' variables; misspelt DIGEST_ ones still fail."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work

    def __call__(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in self.inner().items()
            if name in self.settings_cls.model_fields or name.upper().startswith(ENV_PREFIX)
        }


def load_settings(
    config_file: Path | None = None,
    *,
    env_file: Path | None = Path(".env"),
    **overrides: Any,
) -> Settings:
    """Read the settings; ``overrides`` (from the CLI) win over every other source.

    ``config_file`` defaults to ``$DIGEST_CONFIG``, then ``config/digest.toml``. A file
    named explicitly must exist; the default one may be absent.
    """
    named = config_file or (
        Path(os.environ[CONFIG_FILE_ENV]) if os.environ.get(CONFIG_FILE_ENV) else None
    )
    path = named or DEFAULT_CONFIG_FILE
    if named is not None and not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    values = {name: value for name, value in overrides.items() if value is not None}
    token = _toml_file.set(path)
    try:
        return Settings(_env_file=env_file, **values)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} or .env: not UTF-8 text ({exc.reason})") from exc
    except SettingsError as exc:
        # pydantic-settings' words for a value it could not even parse, e.g. a list
        # variable that is not JSON; its message names the setting.
        raise ConfigError(
            f"invalid setting: {exc} (lists and tables are JSON in DIGEST_*)"
        ) from exc
    except ValidationError as exc:
        in_file = _keys_in(path)
        raise ConfigError(
            "\n".join(_describe(error, path, in_file, Settings) for error in exc.errors())
        ) from exc
    finally:
        _toml_file.reset(token)
