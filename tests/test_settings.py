"""Settings: every source in its place, and one clear line for every bad value."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from digest.errors import ConfigError
from digest.settings import DEFAULT_KICKERS, ScheduleSettings, Settings, SmtpSettings, load_settings

from .conftest import REPO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(workdir: Path) -> None:
    settings = load_settings()

    assert settings.seeds_dir == Path("seeds")
    assert settings.database_url == "sqlite:///var/digest.db"
    assert settings.kickers == DEFAULT_KICKERS
    assert settings.max_articles == 5
    assert settings.max_related == 6
    assert settings.schedule.timezone == "UTC"
    assert settings.smtp.host is None
    assert settings.secret_key is None


def test_precedence_cli_over_env_over_dotenv_over_toml_over_default(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        workdir / "config" / "digest.toml",
        'seeds_dir = "from-toml"\nmax_articles = 2\nmax_related = 2\n'
        '[smtp]\nhost = "toml.example.org"\nport = 2525\n',
    )
    write(
        workdir / ".env",
        "DIGEST_SEEDS_DIR=from-dotenv\nDIGEST_MAX_ARTICLES=3\nDIGEST_SMTP__PORT=2526\n",
    )
    monkeypatch.setenv("DIGEST_SEEDS_DIR", "from-env")
    monkeypatch.setenv("DIGEST_SMTP__HOST", "env.example.org")

    settings = load_settings(seeds_dir=Path("from-cli"), max_related=None)

    assert settings.seeds_dir == Path("from-cli")  # CLI over env
    assert settings.smtp.host == "env.example.org"  # env over TOML, nested with __
    assert settings.max_articles == 3  # .env over TOML
    assert settings.smtp.port == 2526  # .env over TOML, nested
    assert settings.max_related == 2  # TOML over default; an option not given (None) is ignored
    assert settings.max_articles != Settings.model_fields["max_articles"].default


def test_env_wins_over_toml_for_every_kind_of_value(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        workdir / "config" / "digest.toml",
        'kickers = ["Toml"]\n[schedule]\ntimezone = "Asia/Tokyo"\n',
    )
    monkeypatch.setenv("DIGEST_KICKERS", '["Env One", "Env Two"]')
    monkeypatch.setenv("DIGEST_SCHEDULE__TIMEZONE", "Europe/London")

    settings = load_settings()

    assert settings.kickers == ("Env One", "Env Two")
    assert settings.schedule.timezone == "Europe/London"
    assert str(settings.schedule.zone) == "Europe/London"


def test_config_file_named_by_option_or_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "other.toml", "max_articles = 7\n")
    write(workdir / "third.toml", "max_articles = 8\n")

    assert load_settings(workdir / "other.toml").max_articles == 7
    monkeypatch.setenv("DIGEST_CONFIG", str(workdir / "third.toml"))
    assert load_settings().max_articles == 8
    assert load_settings(workdir / "other.toml").max_articles == 7


def test_a_named_config_file_must_exist_the_default_need_not(workdir: Path) -> None:
    (workdir / "config" / "digest.toml").unlink()
    assert load_settings().max_articles == 5

    with pytest.raises(ConfigError, match=r"^missing\.toml: config file not found$"):
        load_settings(Path("missing.toml"))


def test_secrets_are_never_shown(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", "hunter2-key-of-at-least-32-characters")
    monkeypatch.setenv("DIGEST_SMTP__PASSWORD", "hunter2-password")

    settings = load_settings()

    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "hunter2-key-of-at-least-32-characters"
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "hunter2-password"
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2" not in shown


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        (
            "DIGEST_MAX_ARTICLES",
            "many",
            "invalid setting max_articles (DIGEST_MAX_ARTICLES) = 'many': "
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "DIGEST_MAX_ARTICLES",
            "0",
            "invalid setting max_articles (DIGEST_MAX_ARTICLES) = '0': "
            "Input should be greater than or equal to 1",
        ),
        (
            "DIGEST_SMTP__PORT",
            "70000",
            "invalid setting smtp.port (DIGEST_SMTP__PORT) = '70000': "
            "Input should be less than or equal to 65535",
        ),
        (
            "DIGEST_SCHEDULE__TIMEZONE",
            "Mars/Olympus",
            "invalid setting schedule.timezone (DIGEST_SCHEDULE__TIMEZONE) = 'Mars/Olympus': "
            "Value error, expected an IANA time zone name such as 'Europe/London'",
        ),
        (
            "DIGEST_DATABASE_URL",
            "not a url",
            "invalid setting database_url (DIGEST_DATABASE_URL) = 'not a url': Value error, expected a "
            "database URL such as 'sqlite:///var/digest.db' or 'postgresql+psycopg://user@host/dbname'",
        ),
        (
            "DIGEST_KICKERS",
            '["Briefing", " "]',
            'invalid setting kickers (DIGEST_KICKERS) = \'["Briefing", " "]\': '
            "Value error, expected a list of non-empty names",
        ),
    ],
)
def test_an_invalid_value_is_one_line_naming_setting_value_and_expectation(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert str(caught.value) == message


def test_every_bad_value_gets_its_own_line(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_MAX_ARTICLES", "x")
    monkeypatch.setenv("DIGEST_MAX_RELATED", "-1")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    lines = str(caught.value).splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "invalid setting max_articles",
        "invalid setting max_related",
    ]


def test_an_invalid_secret_is_named_but_not_shown(workdir: Path) -> None:
    write(workdir / "config" / "digest.toml", "[smtp]\npassword = 12345678\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    # The value came from the file: the file and the key are named, not the variable.
    assert str(caught.value).startswith(
        "config/digest.toml: invalid setting smtp.password = '**********'"
    )
    assert "12345678" not in str(caught.value)


def test_unknown_and_misspelt_settings_are_refused(workdir: Path) -> None:
    write(workdir / "config" / "digest.toml", 'seed_dir = "seeds"\n')

    with pytest.raises(
        ConfigError,
        match=r"^unknown setting 'seed_dir' in config[/\\]digest\.toml \(did you mean seeds_dir\?\)$",
    ):
        load_settings()

    (workdir / "config" / "digest.toml").unlink()
    write(workdir / ".env", "DIGEST_SEED_DIR=seeds\n")
    with pytest.raises(
        ConfigError,
        match=r"^unknown setting DIGEST_SEED_DIR in \.env \(did you mean DIGEST_SEEDS_DIR\?\)$",
    ):
        load_settings()


def test_other_programs_variables_in_dotenv_are_ignored(workdir: Path) -> None:
    write(workdir / ".env", "DATABASE_URL=postgres://elsewhere\nDIGEST_MAX_ARTICLES=4\n")

    settings = load_settings()

    assert settings.max_articles == 4
    assert settings.database_url == "sqlite:///var/digest.db"


def test_invalid_toml_names_the_file_and_the_line(workdir: Path) -> None:
    write(workdir / "config" / "digest.toml", "max_articles = 5\nseeds_dir = \n")

    with pytest.raises(ConfigError, match=r"^config/digest\.toml: not valid TOML: .*line 2"):
        load_settings()


def test_the_shipped_config_documents_every_setting() -> None:
    text = (REPO / "config" / "digest.toml").read_text(encoding="utf-8")
    # "#name = default" lines and their list continuations are settings; the rest is prose.
    documented = tomllib.loads(re.sub(r'(?m)^#(?=[a-z_]+ = |\]$|\s+")', "", text))

    assert set(documented) == set(Settings.model_fields)
    assert set(documented["schedule"]) == set(ScheduleSettings.model_fields)
    assert set(documented["smtp"]) == set(SmtpSettings.model_fields)
    for name, field in Settings.model_fields.items():
        assert f"DIGEST_{name.upper()}" in text or isinstance(
            field.default, ScheduleSettings | SmtpSettings
        )
    # The defaults it shows are the real ones.
    assert documented["kickers"] == list(DEFAULT_KICKERS)
    for name in ("seeds_dir", "database_url", "max_articles", "max_related"):
        assert str(documented[name]) == str(Settings.model_fields[name].default)
    # TOML has no null: unset settings show an example value and say "No default".
    assert Settings.model_fields["boilerplate_file"].default is None


def test_the_package_ships_the_example_config_as_it_is_in_the_repository() -> None:
    # An installed digest has no config/ folder: the copy in the package must not drift.
    shipped = files("digest").joinpath("data", "digest.example.toml").read_bytes()

    assert shipped == (REPO / "config" / "digest.toml").read_bytes()


def test_the_shipped_config_loads_as_it_is(workdir: Path) -> None:
    assert load_settings() == Settings(_env_file=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Briefing, Opinion", ("Briefing", "Opinion")),
        ("Briefing", ("Briefing",)),
        ('["Briefing", "Talking Point"]', ("Briefing", "Talking Point")),
    ],
)
def test_a_list_in_a_variable_is_json_or_comma_separated(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("DIGEST_KICKERS", value)

    assert load_settings().kickers == expected


def test_a_list_that_is_broken_json_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_KICKERS", '["Briefing", ')

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert str(caught.value).startswith(
        """invalid setting kickers (DIGEST_KICKERS) = '["Briefing", ': Value error, not a JSON list"""
    )
    assert len(str(caught.value).splitlines()) == 1


def test_a_bad_value_in_a_config_file_names_the_file_and_key(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "other.toml", 'max_articles = "many"\n[smtp]\nport = "smtp"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(workdir / "other.toml")

    assert str(caught.value).splitlines() == [
        f"{workdir / 'other.toml'}: invalid setting max_articles = 'many': "
        "Input should be a valid integer, unable to parse string as an integer",
        f"{workdir / 'other.toml'}: invalid setting smtp.port = 'smtp': "
        "Input should be a valid integer, unable to parse string as an integer",
    ]
    # A variable that overrides the file is what is named when it is the bad one.
    monkeypatch.setenv("DIGEST_MAX_ARTICLES", "lots")
    with pytest.raises(
        ConfigError, match=r"invalid setting max_articles \(DIGEST_MAX_ARTICLES\) = 'lots'"
    ):
        load_settings(workdir / "other.toml")


def test_a_config_file_that_is_not_utf8(workdir: Path) -> None:
    (workdir / "config" / "digest.toml").write_bytes(b"newsletter_name = 'caf\xe9'\n")

    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings()


@pytest.mark.parametrize(
    "url", ["http://news.example.org", "https://bücher.example.org", "https://x.example.org/a>b,c"]
)
def test_the_public_url_must_be_plain_https(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DIGEST_PUBLIC_URL", url)

    with pytest.raises(ConfigError, match=r"public_url \(DIGEST_PUBLIC_URL\).*https base URL"):
        load_settings()


@pytest.mark.parametrize("name", ["News\u2028Daily", "News\x85Daily", "News\x0bDaily"])
def test_header_settings_refuse_line_breaks_and_controls(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("DIGEST_NEWSLETTER_NAME", name)

    with pytest.raises(ConfigError, match="without line breaks or control characters"):
        load_settings()


def test_a_misspelt_nested_variable_is_named_as_a_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SMTP__HOTS", "relay.example.org")

    with pytest.raises(
        ConfigError,
        match=r"^unknown setting DIGEST_SMTP__HOTS in the environment \(did you mean DIGEST_SMTP__HOSTS\?\)$",
    ):
        load_settings()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:hunter2@db.example.org:notaport/digest",
        "ann:hunter2@db.example.org/digest",
    ],
)
def test_a_bad_database_url_never_shows_its_password(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DIGEST_DATABASE_URL", url)

    with pytest.raises(ConfigError, match="DIGEST_DATABASE_URL") as caught:
        load_settings()

    assert "hunter2" not in str(caught.value)
    assert "ann:***@" in str(caught.value)


@pytest.mark.parametrize("key", ["", "short", "x" * 31])
def test_a_short_secret_key_is_refused_with_how_to_make_one(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", key)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert message.startswith("invalid setting secret_key (DIGEST_SECRET_KEY) = '**********'")
    assert "at least 32 characters" in message
    assert "secrets.token_urlsafe(32)" in message


@pytest.mark.parametrize(
    "address", ["a@b@example.org", "x@news..example.org", "digest@", "Digest <d@example.org>"]
)
def test_a_malformed_from_address_is_a_setting_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("DIGEST_FROM_ADDRESS", address)

    with pytest.raises(ConfigError, match=r"^invalid setting from_address \(DIGEST_FROM_ADDRESS\)"):
        load_settings()


def test_a_templates_dir_that_does_not_exist_is_a_setting_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", "my-templates")

    with pytest.raises(
        ConfigError,
        match=r"^invalid setting templates_dir \(DIGEST_TEMPLATES_DIR\) = .*: Value error, no such folder$",
    ):
        load_settings()


def test_a_relay_send_refuses_a_short_key_however_the_settings_were_made(workdir: Path) -> None:
    from pydantic import SecretStr

    from digest.delivery.transport import check_ready_for_relay

    # model_copy does not validate: the pipeline must not trust that a key was checked.
    settings = load_settings(public_url="https://news.example.org").model_copy(
        update={"secret_key": SecretStr("")}
    )

    with pytest.raises(ConfigError, match=r"^DIGEST_SECRET_KEY is shorter than 32 characters"):
        check_ready_for_relay(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DIGEST_SMTP__HOST", "ann:hunter2@relay.example.org"),
        ("DIGEST_SMTP__HOST", "smtp://relay.example.org"),
        ("DIGEST_SMTP__HOSTS", "relay.example.org, ann:hunter2@relay2.example.org:587"),
    ],
)
def test_a_relay_with_credentials_in_its_name_is_refused_without_showing_them(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError, match=f"^invalid setting .*\\({variable}\\)") as caught:
        load_settings()

    assert "hunter2" not in str(caught.value)
    assert "smtp.username and smtp.password" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        "ann:hun@ter2@relay.example.org",
        "ann:hun:ter2@relay.example.org",
        "smtp://ann:hun/ter2@relay.example.org",
        "ann:hun ter2@relay.example.org",
        "relay.example.org:25, ann:hunter2@relay2.example.org",
    ],
)
def test_no_part_of_a_password_in_a_relay_setting_is_shown(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DIGEST_SMTP__HOSTS", value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "hun" not in str(caught.value)
    assert "ter2" not in str(caught.value)
