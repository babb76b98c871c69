"""The rendered email against EMAIL.md: everything that can be checked by reading it."""

from __future__ import annotations

import colorsys
import dataclasses
import datetime as dt
import itertools
import re
from pathlib import Path

import lxml.html
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from digest.content.loader import SeedFormat, decode_seed, parse_article
from digest.content.picker import pick
from digest.email.render import Personal, Renderer, personalise, wrap
from digest.email.view import article_url, byline_text
from digest.errors import ConfigError, TemplateError
from digest.models import Issue, PickLimits, RelatedStory, RenderedIssue
from digest.options import render_options
from digest.settings import Settings, load_settings
from digest.settings.brand import DARK_BACKGROUNDS, MIN_CONTRAST, contrast, dark_variant

from .conftest import FIXTURES, SEED

DAY = dt.date(2026, 11, 23)
MAX_HTML_BYTES = 90 * 1024


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def seed_issue(seed_format: SeedFormat, *names: Path) -> Issue:
    articles = [
        parse_article(
            decode_seed(path.read_bytes(), path.name), source=path.name, seed_format=seed_format
        )
        for path in (SEED, *names)
    ]
    return pick(articles, today=DAY, already_featured=set(), limits=PickLimits())


@pytest.fixture(scope="module")
def rendered(seed_format: SeedFormat) -> RenderedIssue:
    issue = seed_issue(seed_format, FIXTURES / "markup.txt", FIXTURES / "several_authors.txt")
    return Renderer().render(issue, render_options(settings(public_url="https://news.example.org")))


@pytest.fixture(scope="module")
def page(rendered: RenderedIssue) -> lxml.html.HtmlElement:
    html, _ = personalise(
        rendered,
        Personal(
            unsubscribe_url="https://news.example.org/unsubscribe/t?a=1&b=2",
            recipient="Ann <ann@example.org>",
            preferences_url="https://news.example.org/preferences/t",
        ),
    )
    return lxml.html.document_fromstring(html)


def test_document_head(rendered: RenderedIssue, page: lxml.html.HtmlElement) -> None:
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert page.get("lang") == "en"
    assert page.get("dir") == "ltr"
    assert "xmlns:v=" in rendered.html
    assert "xmlns:o=" in rendered.html
    metas = {
        (meta.get("name") or "charset"): meta.get("content") or meta.get("charset")
        for meta in page.iter("meta")
    }
    assert metas["charset"] == "utf-8"
    assert metas["viewport"] == "width=device-width, initial-scale=1"
    assert "x-apple-disable-message-reformatting" in metas
    assert metas["format-detection"] == "telephone=no, date=no, address=no, email=no, url=no"
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    # Short for a page title (under 70 characters); the subject names the lead story.
    assert page.findtext(".//title") == "The Digest, 23 November 2026"
    assert re.search(r"<!--\[if mso\]>.*PixelsPerInch>96<.*<!\[endif\]-->", rendered.html, re.S)


def test_layout_tables_are_presentation_and_600px(
    rendered: RenderedIssue, page: lxml.html.HtmlElement
) -> None:
    tables = list(page.iter("table"))
    assert tables
    for table in tables:
        assert table.get("role") == "presentation"
        assert (table.get("cellpadding"), table.get("cellspacing"), table.get("border")) == (
            "0",
            "0",
            "0",
        )
    container = page.find_class("container")[0]
    assert "max-width:600px" in container.get("style").replace(" ", "")
    assert re.search(r'<!--\[if mso\]>\s*<table role="presentation"[^>]*width="600"', rendered.html)
    wrapper = page.find(".//div[@role='article']")
    assert wrapper is not None
    assert wrapper.get("aria-roledescription") == "email"
    assert wrapper.get("aria-label") == rendered.subject


def test_the_preheader_comes_first_and_is_hidden(page: lxml.html.HtmlElement) -> None:
    body = page.find("body")
    assert body is not None
    first = body[0]
    assert "preheader" in first.get("class")
    style = first.get("style").replace(" ", "")
    for rule in ("display:none", "max-height:0", "overflow:hidden", "mso-hide:all"):
        assert rule in style
    assert first.text_content().startswith("Syrian President says regime has no plans")


def test_headings_one_h1_and_no_skipped_levels(page: lxml.html.HtmlElement) -> None:
    levels = [int(element.tag[1]) for element in page.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    assert levels.count(1) == 1
    assert levels[0] == 1
    assert all(later - earlier <= 1 for earlier, later in itertools.pairwise(levels))
    # Typographic quotes, and the last two words kept together.
    assert page.find(".//h1").text_content() == (
        "Bashar al-Assad ‘informed’ on US-led airstrikes against\xa0IS"
    )


def test_nothing_forbidden(rendered: RenderedIssue, page: lxml.html.HtmlElement) -> None:
    assert not list(page.iter("script", "form", "input", "iframe", "svg"))
    assert not [link for link in page.iter("link") if link.get("rel") == "stylesheet"]
    lowered = rendered.html.lower()
    for css in (
        "display:flex",
        "display: flex",
        "display:grid",
        "position:",
        "background-image",
        "@import",
    ):
        assert css not in lowered


def test_css_is_inlined_and_only_what_cannot_be_stays(
    rendered: RenderedIssue, page: lxml.html.HtmlElement
) -> None:
    styles = [style.text_content() for style in page.iter("style")]
    assert len(styles) == 1
    kept = styles[0]
    # Everything left is @media or :root, and every declaration in it is !important.
    outside_media = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", kept)
    assert re.fullmatch(r"\s*:root\s*\{[^{}]*\}\s*", outside_media)
    declarations = [
        d.strip()
        for block in re.findall(r"\{([^{}]*)\}", kept)
        for d in block.split(";")
        if d.strip()
    ]
    assert declarations
    assert all(d.endswith("!important") for d in declarations)
    assert "prefers-color-scheme: dark" in kept
    assert "font-family" in page.findall(".//h1")[0].get("style")
    assert all(
        "font-family" in p.get("style", "") for p in page.iter("p") if p.text_content().strip()
    )


def test_colours_are_six_digit_hex(rendered: RenderedIssue) -> None:
    colours = re.findall(r"#[0-9a-fA-F]+\b", rendered.html)
    assert colours
    assert all(len(colour) == 7 for colour in colours)


def test_fonts_are_the_system_stack(rendered: RenderedIssue) -> None:
    assert (
        "-apple-system, BlinkMacSystemFont, &quot;Segoe UI&quot;, Roboto, Helvetica, Arial, sans-serif"
        in rendered.html
        or (
            '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif'
            in rendered.html
        )
    )


def test_every_headline_related_title_and_byline_is_there(
    rendered: RenderedIssue, page: lxml.html.HtmlElement
) -> None:
    text = page.text_content().replace("\xa0", " ")
    for title in (
        "Bashar al-Assad ‘informed’ on US-led airstrikes against IS",
        "The challenge facing Syria’s Alawites",
        "Ministers clash over energy bills",
        "Who pays for the energy transition?",
    ):
        assert title in text
    assert "By Harriet Marsden and Richard Windsor, The Week US" in text
    assert "By Anna Bell, Tom Price and Ruth Adeyemi, The Week UK" in text
    assert [k.text_content() for k in page.find_class("kicker")][:2] == [
        "Under The Radar",
        "Talking Point",
    ]


def test_seed_text_is_escaped_never_markup(
    rendered: RenderedIssue, page: lxml.html.HtmlElement
) -> None:
    assert '<script>alert("x")</script>' not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    headings = [h.text_content().replace("\xa0", " ") for h in page.iter("h2")]
    assert "Web developers warn of <script>alert(“x”)</script> injection" in headings
    assert not list(page.iter("script", "b", "em", "i"))
    assert (
        "Bugs & fixes: why <b>markup</b> in text is not markup &amp; never will be"
        in page.text_content()
    )
    assert "Web developers warn of <script>alert(“x”)</script> injection" in rendered.text


def test_every_link_goes_to_a_page_we_serve(
    rendered: RenderedIssue, page: lxml.html.HtmlElement
) -> None:
    hrefs = [str(a.get("href")) for a in page.iter("a")]
    anchors = [href for href in hrefs if href.startswith("#")]
    assert anchors == ["#story-1", "#story-2", "#story-3"]
    assert all(page.get_element_by_id(anchor[1:]) is not None for anchor in anchors)
    others = [href for href in hrefs if not href.startswith("#")]
    issue = "https://news.example.org/issues/2026-11-23"
    assert {href.rsplit("/", 1)[0] for href in others if href.startswith(issue + "/")} == {issue}
    assert others[-3:] == [
        "https://news.example.org/unsubscribe/t?a=1&b=2",
        "https://news.example.org/preferences/t",
        issue,
    ]
    assert all(href.startswith("https://news.example.org/") for href in others)
    for a in page.iter("a"):
        assert "click here" not in a.text_content().lower()


def test_article_links_come_from_the_url_template(seed_format: SeedFormat) -> None:
    issue = seed_issue(seed_format)
    template = "https://news.example.org/a/{slug}?id={id}"
    rendered = Renderer().render(
        issue, render_options(settings(article_url_template=template, excerpt_paragraphs=2))
    )
    html, text = personalise(
        rendered,
        Personal(
            unsubscribe_url="mailto:x@example.org", recipient="x@example.org", preferences_url=""
        ),
    )
    page = lxml.html.document_fromstring(html)
    url = article_url(issue.articles[0], template)

    assert (
        url
        == f"https://news.example.org/a/bashar-al-assad-informed-on-us-led-airstrikes-against-is?id={issue.articles[0].id}"
    )
    assert url is not None
    assert page.find(".//h1/a").get("href") == url
    assert len(page.find_class("body-text")) == 2
    continue_link = page.find_class("continue")[0].find("a")
    assert continue_link.get("href") == url
    assert continue_link.text_content() == "Continue reading\xa0→"
    # Said in full to a screen reader, which may list the links alone.
    assert continue_link.get("aria-label").startswith("Continue reading: Bashar al-Assad")
    assert f"Continue reading:\n{url}\n" in text


def test_footer_unsubscribe_address_and_view_in_browser(seed_format: SeedFormat) -> None:
    rendered = Renderer().render(
        seed_issue(seed_format),
        render_options(
            settings(
                public_url="https://news.example.org", postal_address="1 High Street, Exampleton"
            )
        ),
    )
    html, text = personalise(
        rendered,
        Personal(
            unsubscribe_url="https://news.example.org/unsubscribe/T0K",
            recipient="zoe@example.org",
            preferences_url="https://news.example.org/preferences/P0K",
        ),
    )
    footer = lxml.html.document_fromstring(html).find_class("footer")[0].text_content()

    assert "You are receiving this because you subscribed to The Digest." in footer
    assert "Sent to zoe@example.org." in footer
    assert "<" not in footer
    assert "Unsubscribe from The Digest" in footer
    assert "1 High Street, Exampleton" in footer
    assert "View this issue in your browser" in footer
    tail = text.split("\n-- \n", 1)[1]
    assert "Unsubscribe:\nhttps://news.example.org/unsubscribe/T0K\n" in tail
    assert "zoe@example.org" in tail
    assert "1 High Street, Exampleton" in tail
    assert "https://news.example.org/issues/2026-11-23" in tail


def test_personal_values_are_escaped_for_each_part(rendered: RenderedIssue) -> None:
    html, text = personalise(
        rendered,
        Personal(
            unsubscribe_url='https://x.org/u?a=1&b="2"',
            recipient="<script>Eve</script>",
            preferences_url='https://x.org/p?a=1&b="2"',
        ),
    )

    assert 'href="https://x.org/u?a=1&amp;b=&quot;2&quot;"' in html
    assert "&lt;script&gt;Eve&lt;/script&gt;" in html
    assert "<script>Eve</script>" in text
    assert "__digest_" not in html + text


def test_the_text_part_is_written_as_text(rendered: RenderedIssue) -> None:
    lines = rendered.text.split("\n")
    long_lines = [line for line in lines if len(line) > 76 and not line.startswith("http")]
    assert long_lines == []
    assert "\n-- \n" in rendered.text
    assert "<p" not in rendered.text
    assert "&amp;" not in rendered.text.replace("&amp; never", "")
    # Once in "In this issue", once as the headline, underlined.
    title = "Bashar al-Assad ‘informed’ on US-led airstrikes against IS"
    assert rendered.text.count(title) == 2
    assert f"\n{title}\n{'-' * len(title)}\n" in rendered.text


def test_wrap_keeps_urls_and_words_whole() -> None:
    url = "https://news.example.org/" + "x" * 90
    wrapped = wrap(f"Read it at {url} today, please, if you can spare the time for it")

    assert url in wrapped.split("\n")
    assert all(len(line) <= 76 for line in wrapped.split("\n") if "https://" not in line)


def test_the_seed_issue_is_well_under_gmails_clip(seed_format: SeedFormat) -> None:
    rendered = Renderer().render(seed_issue(seed_format), render_options(settings()))

    assert len(rendered.html.encode("utf-8")) < MAX_HTML_BYTES


def test_byline_text() -> None:
    story = RelatedStory(
        title="t",
        kicker=None,
        summary="s",
        authors=("A", "B", "C"),
        publisher="P",
        published=dt.date(2025, 3, 4),
    )
    assert byline_text(story.authors, story.publisher, story.published) == (
        "By A, B and C, P, 4 March 2025"
    )
    assert byline_text((), story.publisher, None) == "P"
    assert byline_text((), None, None) == ""


def test_a_template_error_names_the_file_and_line(tmp_path: Path, seed_format: SeedFormat) -> None:
    (tmp_path / "digest.txt.j2").write_text("line one\n{{ no_such_value }}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2:2: 'no_such_value' is undefined"):
        Renderer(tmp_path).render(seed_issue(seed_format), render_options(settings()))

    (tmp_path / "digest.txt.j2").write_text("{% for x in %}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"digest\.txt\.j2:1: "):
        Renderer(tmp_path).render(seed_issue(seed_format), render_options(settings()))


def test_an_operator_overrides_one_block(tmp_path: Path, seed_format: SeedFormat) -> None:
    (tmp_path / "digest.html.j2").write_text(
        '{% extends "builtin/digest.html.j2" %}{% block footer %}<p class="footer-text">Custom footer</p>{{ super() }}{% endblock %}',
        encoding="utf-8",
    )

    rendered = Renderer(tmp_path).render(seed_issue(seed_format), render_options(settings()))

    assert "Custom footer" in rendered.html
    assert "Unsubscribe from The Digest" in rendered.html


def test_an_empty_issue_is_not_rendered() -> None:
    with pytest.raises(ValueError, match="empty issue"):
        Renderer().render(Issue(date=DAY, articles=()), render_options(settings()))


def test_the_brand_restyles_the_email_without_touching_templates(seed_format: SeedFormat) -> None:
    branded = settings(
        brand={
            "accent_color": "#1F4E79",
            "background_color": "#EEF2F7",
            "font_stack": "sans",
            "logo_url": "https://news.example.org/logo.png",
            "logo_width": 180,
            "logo_height": 36,
        }
    )
    rendered = Renderer().render(seed_issue(seed_format), render_options(branded))
    html = rendered.html
    assert "#1f4e79" in html
    assert "#8c1d18" not in html
    assert "Georgia" not in html.split("@media", 1)[0]
    page = lxml.html.document_fromstring(html)
    [logo] = page.iter("img")
    assert (logo.get("src"), logo.get("width"), logo.get("height"), logo.get("alt")) == (
        "https://news.example.org/logo.png",
        "180",
        "36",
        "The Digest",
    )
    assert not page.find_class("newsletter-name")
    # A client's dark mode shows a lighter blue of the same hue, not the default's red.
    dark = html.split("prefers-color-scheme: dark", 1)[1]
    assert dark_variant("#1f4e79") in dark
    assert dark_variant("#8c1d18") not in dark


def _hls(color: str) -> tuple[float, float, float]:
    return colorsys.rgb_to_hls(*(int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)))


@given(st.from_regex(r"#[0-9a-f]{6}", fullmatch=True))
@hypothesis_settings(max_examples=300, deadline=None)
def test_the_dark_accent_is_readable_and_keeps_the_hue(accent: str) -> None:
    dark = dark_variant(accent)
    assert min(contrast(dark, back) for back in DARK_BACKGROUNDS) >= MIN_CONTRAST
    before, after = _hls(accent), _hls(dark)
    # Lighter or the same; the hue moves only by rounding to whole channels (none when grey).
    assert after[1] >= before[1] - 0.005
    if before[2] > 0.2 and 0.1 < after[1] < 0.9:
        assert min(abs(after[0] - before[0]), 1 - abs(after[0] - before[0])) < 0.03
    if min(contrast(accent, back) for back in DARK_BACKGROUNDS) >= MIN_CONTRAST:
        assert dark == accent


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (
            {"accent_color": "#ff9999"},
            "accent_color #ff9999 on the white column (#ffffff) has a contrast of 2.05:1",
        ),
        ({"background_color": "#333333"}, "background_color #333333 on body text (#1d1d1d)"),
        ({"accent_color": "red"}, "expected a colour as six-digit hex"),
    ],
)
def test_unreadable_brand_colours_are_a_setting_error(
    values: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"DIGEST_BRAND__{key.upper()}", value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert said in str(raised.value)
    assert "WCAG" in str(raised.value) or "hex" in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


# Gmail clips a message whose HTML passes 102 KB, hiding the rest, the footer's
# unsubscribe link among it.
GMAIL_CLIP_BYTES = 102 * 1024


@pytest.mark.parametrize("excerpt_words", [120, 0])
def test_five_long_articles_stay_under_gmails_clip(
    seed_format: SeedFormat, excerpt_words: int
) -> None:
    """Five lead articles of 20 paragraphs with six related stories each, in excerpts (the
    default) and in full: the personalised HTML part still under Gmail's clip."""
    [seed] = seed_issue(seed_format).articles
    paragraphs = (seed.paragraphs * 20)[:20]
    related = (seed.related * 6)[:6]
    articles = tuple(
        dataclasses.replace(
            seed,
            id=f"{seed.id}-{n}",
            title=f"{seed.title} ({n})",
            paragraphs=paragraphs,
            related=related,
        )
        for n in range(1, 6)
    )
    assert all(len(a.paragraphs) == 20 and len(a.related) == 6 for a in articles)
    options = render_options(
        settings(public_url="https://news.example.org", excerpt_words=excerpt_words)
    )
    rendered = Renderer().render(Issue(date=DAY, articles=articles), options)
    html, _ = personalise(
        rendered,
        Personal(
            unsubscribe_url="https://news.example.org/unsubscribe/" + "t" * 120,
            recipient="a.rather.long.address@subdomain.example.org",
            preferences_url="https://news.example.org/preferences/" + "t" * 120,
        ),
    )
    size = len(html.encode("utf-8"))
    assert size < GMAIL_CLIP_BYTES, f"{size / 1024:.1f} KB"
    if excerpt_words:
        assert html.count(">Continue reading") == 5
