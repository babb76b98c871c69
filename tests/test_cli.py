"""The command line: exact output and exit status."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.cli.root import COMMANDS, command_modules, every_command

from .conftest import FIXTURES, SEED

SEED_NAME = SEED.name
SEED_TITLE = "Bashar al-Assad 'informed' on US-led airstrikes against IS"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="digest")


def test_load_prints_a_summary_per_file(project: Path) -> None:
    result = run("load")

    assert result.exit_code == 0
    assert result.stdout == (
        f"seeds/{SEED_NAME}: {SEED_TITLE} [11 paragraphs, 8 related stories]\n"
        "1 article loaded from seeds; 0 files failed.\n"
    )
    assert result.stderr == ""


def test_load_json_gives_exactly_the_documented_shape(project: Path) -> None:
    result = run("load", "--json", "seeds/")

    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert set(document) == {"articles", "errors"}
    assert document["errors"] == []
    (article,) = document["articles"]
    assert list(article) == [
        "source",
        "id",
        "title",
        "standfirst",
        "paragraphs",
        "authors",
        "publisher",
        "related",
    ]
    assert article["source"] == f"seeds/{SEED_NAME}"
    assert article["title"] == SEED_TITLE
    assert len(article["paragraphs"]) == 11
    assert len(article["related"]) == 8
    assert article["related"][2] == {
        "title": "What will happen in 2025? Predictions and events",
        "kicker": "The Explainer",
        "summary": "The new year could bring further chaos in the Middle East and an intensifying AI "
        "arms race – all under the shadow of a second Donald Trump presidency",
        "authors": ["Harriet Marsden"],
        "publisher": "The Week UK",
        "published": None,
    }
    assert "Subscribe" not in result.stdout
    assert "Sign up" not in result.stdout


def test_load_json_prints_good_articles_and_errors_then_exits_1(project: Path) -> None:
    for name in ("dated_byline.txt", "not_utf8.txt", "empty.txt"):
        shutil.copy(FIXTURES / name, project / "seeds" / name)

    result = run("load", "--json", "seeds", "nowhere.txt")

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert [article["source"] for article in document["articles"]] == [
        f"seeds/{SEED_NAME}",
        "seeds/dated_byline.txt",
    ]
    assert document["articles"][1]["related"][0]["published"] == "2025-03-14"
    assert document["errors"] == [
        {"source": "seeds/empty.txt", "error": "empty file"},
        {"source": "seeds/not_utf8.txt", "error": "not valid UTF-8 (byte 0xe9 at offset 24)"},
        {"source": "nowhere.txt", "error": "no such file or directory"},
    ]


def test_load_reports_failures_on_stderr_and_exits_1(project: Path) -> None:
    shutil.copy(FIXTURES / "binary.txt", project / "seeds" / "binary.txt")

    result = run("load")

    assert result.exit_code == 1
    assert result.stdout == (
        f"seeds/{SEED_NAME}: {SEED_TITLE} [11 paragraphs, 8 related stories]\n"
        "1 article loaded from seeds; 1 file failed.\n"
    )
    assert result.stderr == "error: seeds/binary.txt: binary data (NUL bytes): not a text file\n"


def test_load_uses_the_seeds_dir_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "seeds").rename(project / "elsewhere")
    monkeypatch.setenv("DIGEST_SEEDS_DIR", "elsewhere")

    result = run("load")

    assert result.exit_code == 0
    assert result.stdout.endswith("1 article loaded from elsewhere; 0 files failed.\n")


def test_pick_freezes_the_issue_and_reuses_it(project: Path) -> None:
    first = run("pick", "--date", "2026-11-23")
    (project / "seeds" / "late.txt").write_text("A later story\nStandfirst\n", encoding="utf-8")
    second = run("pick", "--date", "2026-11-23")

    assert first.exit_code == 0
    assert first.stdout == (
        "Issue of 2026-11-23 (frozen now): 1 article, 6 related stories\n"
        f"  1. {SEED_TITLE} (6 related stories)\n"
    )
    assert second.exit_code == 0
    assert second.stdout == first.stdout.replace("frozen now", "frozen earlier")
    assert (project / "var" / "digest.db").is_file()


def test_pick_skips_what_earlier_issues_featured(project: Path) -> None:
    run("pick", "--date", "2026-11-23")

    result = run("pick", "--date", "2026-11-24")

    assert result.exit_code == 0
    assert result.stdout == (
        "Nothing new to send for 2026-11-24: no article in seeds that an earlier issue has not featured.\n"
    )


def test_pick_dry_run_writes_nothing(project: Path) -> None:
    dry = run("pick", "--date", "2026-11-23", "--dry-run")
    assert not (project / "var" / "digest.db").exists()
    real = run("pick", "--date", "2026-11-23")

    assert dry.stdout.startswith("Issue of 2026-11-23 (not frozen: dry run): 1 article")
    assert real.stdout.startswith("Issue of 2026-11-23 (frozen now): 1 article")


def test_pick_json_and_seed_warnings(project: Path) -> None:
    shutil.copy(FIXTURES / "empty.txt", project / "seeds" / "empty.txt")

    result = run("pick", "--date", "2026-11-23", "--json", "--seeds", "seeds")

    assert result.exit_code == 0
    assert result.stderr == "warning: skipped seeds/empty.txt: empty file\n"
    document = json.loads(result.stdout)
    assert (document["date"], document["frozen"], document["created"]) == ("2026-11-23", True, True)
    assert [article["title"] for article in document["articles"]] == [SEED_TITLE]
    assert len(document["articles"][0]["related"]) == 6


def test_pick_respects_the_limits(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_MAX_RELATED", "2")

    result = run("pick", "--date", "2026-11-23")

    assert result.stdout.endswith(f"  1. {SEED_TITLE} (2 related stories)\n")


def test_a_bad_setting_is_one_error_line_and_exit_1(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_MAX_ARTICLES", "lots")

    result = run("pick")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: invalid setting max_articles (DIGEST_MAX_ARTICLES) = 'lots': "
        "Input should be a valid integer, unable to parse string as an integer\n"
    )


@pytest.mark.parametrize("value", ["2026-13-45", "2026-02-30", "tomorrow", "26-11-23"])
def test_a_bad_date_is_refused(project: Path, value: str) -> None:
    result = run("pick", "--date", value)

    assert result.exit_code == 2
    assert f"Invalid value for '--date': '{value}' is not a date (YYYY-MM-DD)" in result.stderr


def test_a_good_date_is_taken(project: Path) -> None:
    result = run("pick", "--date", "2026-11-23", "--dry-run")

    assert result.exit_code == 0, result.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["serve"], ["schedule", "--serve"]])
def test_a_port_in_use_is_one_line_and_exit_1(project: Path, command: list[str]) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    with taken:
        result = subprocess.run(
            [sys.executable, "-m", "digest", *command, "--port", str(port)],
            cwd=project,
            env=clean_environment()
            | {"DIGEST_SECRET_KEY": "port-test-key-of-at-least-32-characters"},
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot serve on 127.0.0.1:{port} (--host, --port): Address already in use"
    )
    assert "Traceback" not in result.stderr
    assert "Uvicorn" not in result.stderr


def clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")}


def test_a_missing_config_file_is_an_error(project: Path) -> None:
    result = run("--config", "nope.toml", "load")

    assert result.exit_code == 1
    assert result.stderr == "Error: nope.toml: config file not found\n"


def test_every_command_has_help() -> None:
    for name, command in every_command().items():
        result = run(name, "--help")
        assert result.exit_code == 0, name
        assert command.help, name
        assert command.get_short_help_str(), name


def test_the_listing_of_commands_is_each_commands_own_help() -> None:
    """`digest --help` lists the commands without loading their modules, from COMMANDS:
    each line must be the command's own, and every command must be there."""
    commands = every_command()
    assert sorted(commands) == sorted(COMMANDS)
    for name, command in commands.items():
        short = COMMANDS[name][1]
        assert command.callback is not None
        assert command.callback.__module__ == command_modules(name)[0], name
        listed = click.Command(name, help=short)
        assert listed.get_short_help_str(1000) == command.get_short_help_str(1000), name


def test_each_command_has_all_its_subcommands_in_a_fresh_process() -> None:
    """A group whose subcommands come from several modules loads them all when asked for
    alone, as `digest subscribers show` is, in a process that loaded nothing else."""
    for name, command in every_command().items():
        if not isinstance(command, click.Group):
            continue
        code = (
            "import click, sys\n"
            "from digest.cli import cli\n"
            f"group = cli.get_command(click.Context(cli), {name!r})\n"
            "print(' '.join(sorted(group.commands)))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert done.stdout.split() == sorted(command.commands), name


def test_help_and_version_load_no_commands_module() -> None:
    code = (
        "import sys\n"
        "from digest.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'sqlalchemy', 'alembic', 'premailer', 'starlette', 'uvicorn', 'dkim', 'pydantic'}\n"
        "print(sorted(heavy & set(sys.modules)), sorted(m for m in sys.modules if m.startswith('digest.cli.') and m != 'digest.cli.root'))\n"
    )
    for option in ("--help", "--version"):
        done = subprocess.run(
            [sys.executable, "-c", code, option],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert done.stdout.strip().splitlines()[-1] == "[] []", option


def test_the_installed_command_exits_without_a_traceback(project: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": "nonsense"}
    completed = subprocess.run(
        [sys.executable, "-m", "digest", "pick"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.startswith(
        "Error: invalid setting database_url (DIGEST_DATABASE_URL) = 'nonsense'"
    )
    assert "Traceback" not in completed.stderr

    verbose = subprocess.run(
        [sys.executable, "-m", "digest", "--verbose", "pick"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr


def test_preview_writes_html_text_and_eml_and_stores_nothing(project: Path) -> None:
    result = run("preview", "--date", "2026-11-23")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "var/preview/digest.html",
        "var/preview/digest.txt",
        "var/preview/digest.eml",
    ]
    assert re.fullmatch(
        r"Issue of 2026-11-23: 1 article, 6 related stories, HTML \d+\.\d KB", lines[3]
    )
    assert "signed with the preview key" in result.stderr
    eml = (project / "var" / "preview" / "digest.eml").read_bytes()
    message = BytesParser(policy=policy.default).parsebytes(eml)
    assert message["To"] == "Preview <digest@localhost>"
    assert message.defects == []
    html = (project / "var" / "preview" / "digest.html").read_text(encoding="utf-8")
    # Typographic quotes in the page (the Subject keeps the seed's).
    assert "Bashar al-Assad ‘informed’ on US-led airstrikes against" in html
    assert not (project / "var" / "digest.db").exists()  # no database made just to read one
    # Nothing was frozen: picking afterwards still creates the issue.
    assert run("pick", "--date", "2026-11-23").stdout.startswith("Issue of 2026-11-23 (frozen now)")


def test_preview_with_nothing_new_shows_the_latest_issue(project: Path) -> None:
    run("pick", "--date", "2026-11-20")

    result = run("preview", "--date", "2026-11-23", "--out", "elsewhere")

    assert result.exit_code == 0
    assert (
        result.stdout.splitlines()[0]
        == "Nothing new to send for 2026-11-23; previewing the issue of 2026-11-20."
    )
    assert (project / "elsewhere" / "digest.eml").is_file()


def test_preview_with_nothing_at_all_is_an_error(project: Path) -> None:
    (project / "seeds" / SEED_NAME).unlink()

    result = run("preview", "--date", "2026-11-23")

    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: nothing to preview for 2026-11-23: no new article in seeds and no earlier issue\n"
    )


def test_load_keeps_the_path_as_given(project: Path) -> None:
    result = run("load", "--json", f"./seeds/{SEED_NAME}", "./seeds/")

    assert [article["source"] for article in json.loads(result.stdout)["articles"]] == [
        f"./seeds/{SEED_NAME}",
        f"./seeds/{SEED_NAME}",
    ]


def test_a_missing_seeds_directory_is_an_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SEEDS_DIR", "nope")

    result = run("pick")

    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: nope: seeds directory not found (setting seeds_dir, DIGEST_SEEDS_DIR)\n"
    )


def test_preview_of_a_sent_issue_says_it_is_frozen_and_fresh_renders_anew(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("send").exit_code == 0  # to the outbox: the rendering is frozen
    monkeypatch.setenv("DIGEST_NEWSLETTER_NAME", "The Renamed Brief")

    as_sent = run("preview")
    assert as_sent.exit_code == 0, as_sent.output
    assert "was rendered and frozen at its first send" in as_sent.stderr
    assert "digest preview --fresh renders it anew" in as_sent.stderr
    page = (project / "var" / "preview" / "digest.html").read_text(encoding="utf-8")
    assert "The Renamed Brief" not in page

    fresh = run("preview", "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert "frozen" not in fresh.stderr
    page = (project / "var" / "preview" / "digest.html").read_text(encoding="utf-8")
    assert "The Renamed Brief" in page
