"""The one settings model, and how it is read.

Precedence, highest first: values passed by the CLI, ``DIGEST_*`` environment variables
(nested with ``__``), a ``.env`` file, the TOML config file, the defaults below.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
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
from digest.settings.sections import DkimSettings, ScheduleSettings, SmtpSettings

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_KICKERS",
    "DEFAULT_PUBLISHERS",
    "ENV_PREFIX",
    "DkimSettings",
    "ScheduleSettings",
    "Settings",
    "SmtpSettings",
    "load_settings",
]

ENV_PREFIX = "DIGEST_"
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
    database_url: str = "sqlite:///var/digest.db"
    # Unset: the rules shipped in the package (digest/data/boilerplate.toml).
    boilerplate_file: Path | None = None
    kickers: tuple[str, ...] = DEFAULT_KICKERS
    publishers: tuple[str, ...] = DEFAULT_PUBLISHERS
    max_articles: int = Field(default=5, ge=1)
    max_related: int = Field(default=6, ge=0)
    secret_key: SecretStr | None = None
    # The RFC 2919 list identifier ("the-digest.news.example.org"). Unset, it is derived
    # from newsletter_name and from_address, then kept in the database at the first send,
    # so renaming either later does not break the links already in inboxes.
    list_id: str | None = None
    newsletter_name: str = Field(default="The Digest", min_length=1)
    from_address: str = "digest@localhost"
    from_name: str | None = None
    public_url: str | None = None
    postal_address: str = ""
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
        raise ConfigError("\n".join(_describe(error, path) for error in exc.errors())) from exc
    finally:
        _toml_file.reset(token)


def _describe(error: ErrorDetails, config_file: Path) -> str:
    """One line naming the setting, where it came from, the bad value and what is expected."""
    path = [str(part) for part in error["loc"] if isinstance(part, str)]
    name = ".".join(path)
    env_name = ENV_PREFIX + "__".join(part.upper() for part in path)
    if error["type"] == "extra_forbidden":
        if name.upper().startswith(ENV_PREFIX):
            return f"unknown setting {name.upper()} in .env (misspelt?)"
        # Nested environment variables arrive as keys like the file's: say which it was.
        in_environment = {key.upper() for key in os.environ}
        if env_name in in_environment:
            return f"unknown setting {env_name} in the environment (misspelt?)"
        return f"unknown setting {name!r} in {config_file} (misspelt?)"
    value = error.get("input")
    if _is_secret(path):
        shown = "'**********'"
    elif isinstance(value, str):
        # A URL or "user:password@host" in any setting (the database, a relay) shows no password.
        shown = repr(_hide_password(value) if path == ["database_url"] else _hide_userinfo(value))
    else:
        shown = repr(value)
    return f"invalid setting {name} ({env_name}) = {shown}: {error['msg']}"


def _hide_userinfo(value: str) -> str:
    """``value`` with everything between the first ":" of its user part and the last "@" starred.

    A password may hold any character, "@", ":" and "/" included, so nothing in it can
    mark where it ends but the last "@"; hiding a port with it is the lesser harm.
    """
    scheme, separator, rest = value.partition("://")
    if not separator:
        scheme, rest = "", value
    userinfo, at, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return value
    return f"{scheme}{separator}{user}:***@{host}"


def _hide_password(url: str) -> str:
    """``url`` with the password of its user part replaced by stars, however malformed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not a URL SQLAlchemy reads.
        return _hide_userinfo(url)


def _is_secret(path: list[str]) -> bool:
    model: type[BaseModel] = Settings
    for part in path:
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            return True
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return False
    return False
