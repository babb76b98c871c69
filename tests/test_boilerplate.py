"""Boilerplate rules: loading them, and what the shipped rules catch and leave alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.content.boilerplate import Boilerplate, load_boilerplate
from digest.content.loader import SeedFormat, parse_article
from digest.errors import ConfigError


@pytest.fixture(scope="module")
def shipped() -> Boilerplate:
    # No boilerplate_file set: the rules shipped in the package.
    return load_boilerplate(None)


@pytest.mark.parametrize(
    "line",
    [
        # As the seed has them.
        "Subscribe to The Week",
        "Escape your echo chamber. Get the facts behind the news, plus analysis from multiple perspectives.",
        "Sign up for The Week's Free Newsletters",
        "From our morning news briefing to a weekly Good News Newsletter, get the best of The Week "
        "delivered directly to your inbox.",
        "Sign up for Today's Best Articles in your inbox",
        "A free daily email with the biggest news stories of the day – and the best features from TheWeek.com",
        # The same promotions, worded or typeset differently.
        "SUBSCRIBE TO THE WEEK.",
        "Subscribe now and save 50%",
        "Sign up to The Week’s free newsletters!",
        "Sign up for our Good News newsletter",
        "  Escape  your echo chamber:   get the facts ",
        "Get the facts behind the news, plus analysis from multiple perspectives",
        "From our evening briefing to a weekly digest, get the best of The Week delivered straight to your inbox",
        "A free weekly newsletter with the best features from TheWeek.com",
        "Our free morning briefing, with the day's top stories",
        "Get our Morning Briefing in your inbox",
        "Try 6 free issues",
        "Claim three free issues today",
        "Sign-up to The Week's newsletters",
        "Newsletter sign-up",
        "Want more? Sign up for our free newsletter",
        "Subscribe",
        "Sign up",
    ],
)
def test_promotions_are_caught(line: str, shipped: Boilerplate) -> None:
    assert shipped.matches(line)


@pytest.mark.parametrize(
    "line",
    [
        "Bashar al-Assad 'informed' on US-led airstrikes against IS",
        "Researchers said newsletters sent to the team's inbox every morning kept the project on track.",
        "Voters who subscribe to the idea of a wealth tax are growing in number, the poll found, and "
        "they are younger than the party's traditional supporters in every region surveyed this year.",
        "The minister refused to sign up for the scheme, saying it would cost taxpayers too much.",
        "Subscribers to the service complained that the briefing arrived late.",
        "He said the free daily email from the council was the only way residents heard about closures.",
        "The free daily email from the council was the only way residents heard about closures.",
        "Sign up to the scheme has been slow, the minister said.",
        "Sign up for the army was voluntary until 1916.",
        "The scam email was delivered directly to your inbox",
        "Subscribe to the idea of a tax",
        "Sign",
    ],
)
def test_reporting_is_left_alone(line: str, shipped: Boilerplate) -> None:
    assert not shipped.matches(line)


def test_exact_lines_compare_normalised() -> None:
    rules = Boilerplate.from_rules(["Read more from The Week."], [])

    assert rules.matches("READ MORE FROM THE WEEK")
    assert not rules.matches("Read more from The Week about Syria")


def test_unanchored_patterns_are_found_anywhere_anchored_ones_only_at_the_start() -> None:
    rules = Boilerplate.from_rules([], ["theweek\\.com$", "^advert"])

    assert rules.matches("The best features from TheWeek.com")
    assert rules.matches("Advertisement")
    assert not rules.matches("An advert for TheWeek.com appeared")  # neither at its place
    assert rules.flags(["Advert", "", "-", "Visit theweek.com"]) == [True, False, False, True]


def test_rules_are_data_not_code(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "lines = [\"Donate today\"]\npatterns = ['^support our journalism\\b']\n", encoding="utf-8"
    )
    rules = load_boilerplate(path)
    text = "Headline\nStandfirst\nDonate today\nSupport our journalism: give now\nSubscribe to The Week\n"

    article = parse_article(text, source="x.txt", seed_format=SeedFormat(boilerplate=rules))

    assert article.paragraphs == ("Subscribe to The Week",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("lines = [", "not valid TOML"),
        ("lines = 'one'", "'lines' must be a list of strings"),
        ("patterns = [1]", "'patterns' must be a list of strings"),
        ("line = ['x']", "unknown key 'line'; expected 'lines', 'patterns' and 'max_length'"),
        ("max_length = 0", "'max_length' must be a whole number of characters, 1 or more"),
        ("patterns = ['(unclosed']", "patterns[0] '(unclosed' is not a valid regular expression"),
    ],
)
def test_bad_rules_files_name_the_file_and_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=r"rules\.toml") as caught:
        load_boilerplate(path)

    assert message in str(caught.value)


def test_a_missing_rules_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"boilerplate rules file not found \(setting boilerplate_file\)"
    ):
        load_boilerplate(tmp_path / "nope.toml")


def test_lines_longer_than_max_length_are_content() -> None:
    rules = Boilerplate.from_rules(["Read more"], ["^sign up\\b"], max_length=40)
    sign_up = "Sign up for our newsletter"

    assert rules.flags([sign_up, sign_up + " " + "x" * 40, "Read more.", ""]) == [
        True,
        False,
        True,
        False,
    ]


def test_an_exact_line_longer_than_max_length_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"^rules: lines\[1\] is 45 characters long, more than max_length \(40\)"
    ):
        Boilerplate.from_rules(["Read more", "x" * 45], [], max_length=40)


def test_patterns_never_drop_a_title(seed_format: SeedFormat) -> None:
    text = (
        "Sign up for our newsletter: the hidden cost\nStandfirst\nBody.\n"
        "-\nSign up for our newsletter? Why readers won't\nBriefing Summary\n"
        "-\nSubscribe to The Week\n"
    )

    article = parse_article(text, source="x.txt", seed_format=seed_format)

    assert article.title == "Sign up for our newsletter: the hidden cost"
    assert [story.title for story in article.related] == [
        "Sign up for our newsletter? Why readers won't"
    ]


def test_back_references_and_named_groups_work() -> None:
    rules = Boilerplate.from_rules([], ["^(a)b", "^(\\w+) \\1$", "^(?P<Word>x+)y$"])

    assert rules.matches("ab")
    assert rules.matches("again again")
    assert rules.matches("xxy")
    assert not rules.matches("again and again")


def test_two_patterns_may_use_the_same_group_name(tmp_path: Path) -> None:
    # Anchored patterns are tried as one alternation; a group name used twice in it would
    # be a re.error (and a traceback in `digest load`) if they were joined as written.
    path = tmp_path / "rules.toml"
    path.write_text(
        "patterns = ['^(?P<verb>sign up) for\\b', '^(?P<verb>subscribe) to\\b', "
        "'^(?P<n>x+)-(?P=n)$', '^(?P<n>y+)$']\n",
        encoding="utf-8",
    )

    rules = load_boilerplate(path)

    assert rules.matches("Sign up for our newsletter")
    assert rules.matches("Subscribe to The Week")
    assert rules.matches("xx-xx")
    assert rules.matches("yyy")
    assert not rules.matches("xx-x")
    assert not rules.matches("Please subscribe to The Week")


def test_a_conditional_keeps_its_group_numbers() -> None:
    rules = Boilerplate.from_rules([], ["^(a)b", "^(c)?(?(1)d|e)$"])

    assert rules.matches("cd")
    assert rules.matches("e")
    assert not rules.matches("ce")
