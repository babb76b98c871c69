"""Golden files of the seed issue's two parts, so that any change to the look is a visible
diff in review. After a change on purpose, write them again with
``DIGEST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py`` and commit the diff.

The issue is the real seed with two fixture articles, on a fixed date, as issue No. 12,
with an editor's note; the personal values are fixed placeholders, so nothing but the
templates, the settings and the rendering code can move the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digest.content.loader import SeedFormat
from digest.email.render import Personal, Renderer, personalise
from digest.options import render_options

from .conftest import FIXTURES, REPO
from .test_render import seed_issue, settings

GOLDEN = REPO / "tests" / "golden"
NOTE = "Good morning. Three stories *today*, and [the archive](https://news.example.org/issues)."
PERSONAL = Personal(
    unsubscribe_url="https://news.example.org/unsubscribe/TOKEN",
    recipient="reader@example.org",
    preferences_url="https://news.example.org/preferences/TOKEN",
)


@pytest.fixture(scope="module")
def parts(seed_format: SeedFormat) -> dict[str, str]:
    issue = seed_issue(seed_format, FIXTURES / "lead_byline.txt", FIXTURES / "dated_byline.txt")
    options = render_options(
        settings(public_url="https://news.example.org", postal_address="1 High Street, Exampleton")
    )
    rendered = Renderer().render(issue, options, number=12, note=NOTE)
    html, text = personalise(rendered, PERSONAL)
    return {"seed.html": html, "seed.txt": text}


@pytest.mark.parametrize("name", ["seed.html", "seed.txt"])
def test_the_seed_issue_renders_as_the_golden_file_says(parts: dict[str, str], name: str) -> None:
    path: Path = GOLDEN / name
    if os.environ.get("DIGEST_UPDATE_GOLDEN"):
        path.write_text(parts[name], encoding="utf-8")
    assert path.is_file(), f"{path} is missing: write it with DIGEST_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    # One assertion per file: pytest shows the differing lines.
    assert parts[name].splitlines() == expected.splitlines()
