"""The editor's note: Markdown rendered safely above the stories, read from the day's file
or from --note."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner

from digest import pipeline
from digest.cli import cli
from digest.email.note import note_html
from digest.errors import InputError
from digest.settings import load_settings

DAY = dt.date(2026, 11, 23)


def test_markdown_is_rendered_and_raw_html_is_escaped() -> None:
    html = note_html(
        "# Not a heading\n\nA *good* day, [our page](https://news.example.org/x).\n\n"
        "<script>alert(1)</script> [bad](javascript:alert(1))\n\n- one\n- two"
    )
    page = lxml.html.fragment_fromstring(html, create_parent="div")
    assert not list(page.iter("h1", "h2", "script", "img"))
    assert [a.get("href") for a in page.iter("a")] == ["https://news.example.org/x"]
    assert "&lt;script&gt;" in html
    assert [li.text for li in page.iter("li")] == ["one", "two"]


def test_the_days_note_is_read_from_the_notes_folder(project: Path) -> None:
    settings = load_settings()
    assert pipeline.editor_note(settings, DAY) is None
    (project / "seeds" / "notes").mkdir()
    (project / "seeds" / "notes" / f"{DAY.isoformat()}.md").write_text("Hello *readers*.\n")
    assert pipeline.editor_note(settings, DAY) == "Hello *readers*."
    (project / "other.md").write_bytes(b"\xff\xfe bad")
    with pytest.raises(InputError, match=r"other\.md: the editor.s note is not UTF-8 text"):
        pipeline.editor_note(load_settings(note_file=project / "other.md"), DAY)
    with pytest.raises(InputError, match=r"missing\.md: the editor.s note does not exist"):
        pipeline.editor_note(load_settings(note_file=project / "missing.md"), DAY)


def test_preview_puts_the_note_above_the_stories_in_both_parts(project: Path) -> None:
    (project / "note.md").write_text("Three things *today*.\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["preview", "--date", DAY.isoformat(), "--note", "note.md"], prog_name="digest"
    )
    assert result.exit_code == 0, result.output
    html = (project / "var" / "preview" / "digest.html").read_text(encoding="utf-8")
    page = lxml.html.document_fromstring(html)
    [note] = page.find_class("note")
    assert note.text_content().strip() == "Three things today."
    assert html.index('class="note"') < html.index('class="article"')
    text = (project / "var" / "preview" / "digest.txt").read_text(encoding="utf-8")
    assert text.index("Three things *today*.") < text.index("=" * 76)
