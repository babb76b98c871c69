"""An issue to the two parts of one email: inlined HTML and plain text, rendered once.

Templates come from the ``templates_dir`` setting first, then the ones shipped in the
package (``digest/templates/``).
Values that differ per recipient are rendered as markers and filled in by
:func:`personalise`, so the costly steps (Jinja, premailer) never run per subscriber.
"""

from __future__ import annotations

import html
import logging
import textwrap
import traceback
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import cssutils
import jinja2
from premailer import Premailer

from digest.email.markers import MARKERS, PREFERENCES_MARK, RECIPIENT_MARK, UNSUBSCRIBE_MARK
from digest.email.view import RenderOptions, issue_context
from digest.errors import TemplateError
from digest.models import Issue, RenderedIssue

__all__ = [
    "BUILTIN_TEMPLATES",
    "HTML_TEMPLATE",
    "TEXT_TEMPLATE",
    "TEXT_WIDTH",
    "Notice",
    "Personal",
    "Renderer",
    "html_values",
    "inline_css",
    "personalise",
    "personalise_html",
    "template_loader",
    "text_values",
    "wrap",
]

log = logging.getLogger(__name__)
css_log = logging.getLogger(f"{__name__}.css")

# Package data, so an installed digest renders without the repository.
BUILTIN_TEMPLATES: Traversable = files("digest") / "templates"
HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
TEXT_WIDTH = 76


@dataclass(frozen=True, kw_only=True, slots=True)
class Notice:
    """A one-off mail to one reader, rendered: its subject and both parts."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Personal:
    """What differs between two recipients' copies of one issue."""

    unsubscribe_url: str
    recipient: str
    # The reader's preferences page ("" without a public URL: the copy has no such link).
    preferences_url: str


def wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Fold ``text`` at ``width``, never breaking a word or a URL."""
    return textwrap.fill(str(text), width=width, break_long_words=False, break_on_hyphens=False)


def html_values(personal: Personal) -> dict[str, str]:
    """What each marker becomes in the HTML part: the values, HTML-escaped."""
    return {
        UNSUBSCRIBE_MARK: html.escape(personal.unsubscribe_url, quote=True),
        RECIPIENT_MARK: html.escape(personal.recipient, quote=True),
        PREFERENCES_MARK: html.escape(personal.preferences_url, quote=True),
    }


def text_values(personal: Personal) -> dict[str, str]:
    """What each marker becomes in the text part: the values as they are."""
    return {
        UNSUBSCRIBE_MARK: personal.unsubscribe_url,
        RECIPIENT_MARK: personal.recipient,
        PREFERENCES_MARK: personal.preferences_url,
    }


def personalise(rendered: RenderedIssue, personal: Personal) -> tuple[str, str]:
    """The HTML and text of one recipient's copy: markers replaced, escaped for each part."""
    in_text = text_values(personal)
    return (
        personalise_html(rendered.html, personal),
        MARKERS.sub(lambda match: in_text[match[0]], rendered.text),
    )


def personalise_html(html: str, personal: Personal) -> str:
    """The HTML part alone, markers replaced with HTML-escaped values."""
    in_html = html_values(personal)
    return MARKERS.sub(lambda match: in_html[match[0]], html)


def template_loader(templates_dir: Path | None) -> jinja2.BaseLoader:
    """The operator's ``templates_dir`` first, then the shipped templates.

    "builtin/NAME" always names the shipped file, so an operator's own template can
    extend it and override a single block.
    """
    # Jinja's loader for package data: it finds the templates wherever digest is installed
    # (a folder, a zip), and reloads edited ones as the preview server needs.
    builtin = jinja2.PackageLoader("digest", "templates")
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders += [builtin, jinja2.PrefixLoader({"builtin": builtin})]
    return jinja2.ChoiceLoader(loaders)


class Renderer:
    """The Jinja environment and the inliner, set up once and used for every issue."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.folders = [str(templates_dir)] if templates_dir is not None else []
        self.folders.append(str(BUILTIN_TEMPLATES))
        self.environment = jinja2.Environment(
            loader=template_loader(templates_dir),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.environment.filters["wrap"] = wrap
        _quiet_cssutils()

    def render(
        self,
        issue: Issue,
        options: RenderOptions,
        *,
        number: int | None = None,
        note: str | None = None,
        earlier: dict[str, str] | None = None,
    ) -> RenderedIssue:
        """Render ``issue`` (``number``: its count among the issues sent, for the masthead;
        ``note``: the editor's note in Markdown; ``earlier``: the archive pages of related
        stories that led earlier issues, by article id): HTML inlined by premailer, and the
        text."""
        if issue.is_empty:
            raise ValueError("an empty issue has nothing to render")
        context = issue_context(issue, options, number=number, note=note, earlier=earlier)
        page = self._render(HTML_TEMPLATE, context)
        text = self._render(TEXT_TEMPLATE, context)
        return RenderedIssue(
            date=issue.date,
            subject=context["subject"],
            html=inline_css(page),
            text=_tidy_text(text),
            article_count=len(issue.articles),
            related_count=issue.related_count,
        )

    def render_notice(self, name: str, subject: str, values: dict[str, Any]) -> Notice:
        """A one-off mail from the templates ``name``.html.j2 and ``name``.txt.j2 (a
        confirmation, a welcome), with the issue's layout and inlined CSS."""
        context = {"subject": subject, "preheader": subject, **values}
        return Notice(
            subject=subject,
            html=inline_css(self._render(f"{name}.html.j2", context)),
            text=_tidy_text(self._render(f"{name}.txt.j2", context)),
        )

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.environment.get_template(name).render(context)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or exc.name or name
            raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from exc
        except jinja2.TemplateNotFound as exc:
            folders = ", ".join(self.folders)
            raise TemplateError(f"template {exc.name} not found in {folders}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{_template_line(exc, name)}: {exc.message}") from exc


def inline_css(page: str) -> str:
    """Inline the page's CSS with premailer; keep only what cannot be inlined in <style>."""
    inliner = Premailer(
        page,
        # Never fetch a stylesheet named by a template: rendering stays offline.
        allow_network=False,
        # The default would also strip !important from the @media rules kept in <style>,
        # and dark mode and the mobile layout would silently lose to the inline styles.
        strip_important=False,
        remove_classes=False,
        keep_style_tags=False,
    )
    return str(inliner.transform(pretty_print=False))


def _tidy_text(text: str) -> str:
    """At most one blank line in a row, no trailing spaces but the signature's "-- "."""
    lines = [line if line == "-- " else line.rstrip() for line in text.splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy).strip("\n") + "\n"


def _template_line(exc: BaseException, fallback: str) -> str:
    """ "file:line" of the template frame that raised, from the traceback Jinja rewrites."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return fallback


def _quiet_cssutils() -> None:
    """Send cssutils' remarks to our logger at DEBUG, and keep colours as written.

    cssutils flags every email-only property (mso-hide, color-scheme) as unknown; that is
    noise to a user, but worth seeing with --verbose.
    """
    forward = logging.getLogger(f"{__name__}.cssutils")
    if not forward.handlers:
        forward.addHandler(_ForwardTo(css_log))
        forward.propagate = False
        forward.setLevel(logging.DEBUG)
    cssutils.log.setLog(forward)
    cssutils.log.setLevel(logging.WARNING)
    # EMAIL.md asks for six-digit colours; cssutils would shorten #ffffff to #fff.
    cssutils.ser.prefs.minimizeColorHash = False


class _ForwardTo(logging.Handler):
    """Re-emits records on another logger at DEBUG."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.debug("%s", record.getMessage())
