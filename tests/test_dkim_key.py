"""A DKIM key that cannot sign is refused when it is loaded, before anything is frozen."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import ConfigError
from digest.options import dkim_key
from digest.settings import load_settings
from digest.store import Store

DAY = dt.date(2026, 11, 23)
GARBAGE_PEM = "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def garbage_key(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose DKIM key file holds a PEM frame around nothing that parses."""
    path = project / "config" / "dkim.pem"
    path.write_text(GARBAGE_PEM, encoding="utf-8")
    monkeypatch.setenv("DIGEST_DKIM__SELECTOR", "digest")
    monkeypatch.setenv("DIGEST_DKIM__PRIVATE_KEY_FILE", str(path))
    runner = CliRunner()
    result = runner.invoke(cli, ["subscribers", "import", "config/subscribers.example.csv"])
    assert result.exit_code == 0, result.stderr
    return path


def issue_frozen() -> bool:
    with Store.open(load_settings().database_url, create=False) as store:
        return store.issues.id_of(DAY) is not None


def test_a_garbage_key_fails_the_dry_run_in_one_line(garbage_key: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--date", DAY.isoformat(), "--dry-run"])

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {garbage_key}: the DKIM key cannot sign (setting dkim.private_key_file): "
    )
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not issue_frozen()


def test_a_garbage_key_stops_a_relay_send_before_the_issue_is_frozen(
    garbage_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SMTP__HOST", "127.0.0.1")
    monkeypatch.setenv("DIGEST_SECRET_KEY", "dkim-test-key-of-at-least-32-characters")
    monkeypatch.setenv("DIGEST_PUBLIC_URL", "https://news.example.org")

    result = CliRunner().invoke(cli, ["send", "--date", DAY.isoformat()])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {garbage_key}: the DKIM key cannot sign")
    assert result.stderr.count("\n") == 1
    assert not issue_frozen()


@pytest.mark.parametrize(
    "pem",
    [
        GARBAGE_PEM,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n",
    ],
    ids=["not-base64", "not-asn1", "empty", "truncated"],
)
def test_every_unusable_key_is_a_config_error(workdir: Path, pem: str) -> None:
    path = workdir / "dkim.pem"
    path.write_text(pem, encoding="utf-8")
    settings = load_settings(dkim={"selector": "digest", "private_key_file": path})

    with pytest.raises(ConfigError) as caught:
        dkim_key(settings)

    assert "\n" not in str(caught.value)
    assert "setting dkim.private_key_file" in str(caught.value)


def test_a_good_key_loads(workdir: Path) -> None:
    path = workdir / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True
    )
    settings = load_settings(dkim={"selector": "digest", "private_key_file": path})

    key = dkim_key(settings)

    assert key is not None
    assert (key.selector, key.domain) == ("digest", "localhost")
