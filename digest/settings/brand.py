"""The ``[brand]`` settings: the newsletter's colours, fonts and logo, and the check that
text stays readable on the chosen colours (WCAG 2 AA: 4.5:1 for body text)."""

from __future__ import annotations

import colorsys
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BODY_TEXT",
    "CARD_BACKGROUND",
    "COLUMN_BACKGROUND",
    "DARK_BACKGROUNDS",
    "MIN_CONTRAST",
    "BrandSettings",
    "contrast",
    "dark_variant",
]

# WCAG 2.x AA for normal-size text.
MIN_CONTRAST = 4.5
# The fixed colours the brand's colours meet: the column's white, the related-story
# cards' tint, and the body text's near-black.
COLUMN_BACKGROUND = "#ffffff"
CARD_BACKGROUND = "#f7f5f0"
BODY_TEXT = "#1d1d1d"
# The dark scheme's column, related-story cards and web page: the accent shown on them
# in a client's dark mode is derived from the brand's (see dark_variant).
DARK_BACKGROUNDS = ("#1c1c1c", "#262626", "#1e1e1e")
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def _luminance(color: str) -> float:
    channels = [int(color[index : index + 2], 16) / 255 for index in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours, from 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _hex_of(red: float, green: float, blue: float) -> str:
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in (red, green, blue))


def dark_variant(color: str, backgrounds: tuple[str, ...] = DARK_BACKGROUNDS) -> str:
    """The brand's colour for a dark scheme: same hue and saturation, lightened in small
    steps until it reaches WCAG AA on every dark background (white at worst, so it always
    ends). A light accent that already passes is kept as it is."""
    red, green, blue = (int(color[index : index + 2], 16) / 255 for index in (1, 3, 5))
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    candidate = color.lower()
    # Steps of 1% lightness: the first that passes, so the hue stays as deep as it can.
    step = 0
    while min(contrast(candidate, back) for back in backgrounds) < MIN_CONTRAST:
        step += 1
        candidate = _hex_of(*colorsys.hls_to_rgb(hue, min(1.0, lightness + step / 100), saturation))
    return candidate


class BrandSettings(BaseModel):
    """How the newsletter looks: restyled here, without touching the templates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The colour of the wordmark, kickers and links: text on the white column.
    accent_color: str = "#8c1d18"
    # Around the column (and behind the web pages' links above it).
    background_color: str = "#f1efe9"
    # Headlines and article text in a serif (the default) or a sans-serif face.
    font_stack: Literal["serif", "sans"] = "serif"
    # A logo image instead of the wordmark: an https URL, with its size in CSS pixels.
    logo_url: str | None = None
    logo_width: int = Field(default=200, ge=16, le=600)
    logo_height: int = Field(default=40, ge=8, le=300)
    # The logo's alternative text; unset: the newsletter's name.
    logo_alt: str | None = None

    @field_validator("accent_color", "background_color")
    @classmethod
    def _hex(cls, value: str) -> str:
        # Six-digit hex: what every mail client understands.
        if not _HEX.fullmatch(value):
            raise ValueError("expected a colour as six-digit hex, such as '#8c1d18'")
        return value.lower()

    @field_validator("logo_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.fullmatch(r"https://[^\s\"'<>]+", value):
            raise ValueError("expected the logo's https URL")
        return value

    @model_validator(mode="after")
    def _readable(self) -> BrandSettings:
        pairs = (
            ("accent_color", self.accent_color, "the white column", COLUMN_BACKGROUND),
            ("accent_color", self.accent_color, "the related-story cards", CARD_BACKGROUND),
            ("background_color", self.background_color, "body text", BODY_TEXT),
        )
        for name, color, against, other in pairs:
            ratio = contrast(color, other)
            if ratio < MIN_CONTRAST:
                raise ValueError(
                    f"{name} {color} on {against} ({other}) has a contrast of {ratio:.2f}:1; "
                    f"text needs at least {MIN_CONTRAST}:1 (WCAG AA)"
                )
        return self
