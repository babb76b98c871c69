"""The narrow options each stage gets, built from the settings at the edge.

The renderer, the message builder and the list id rules never see :class:`Settings`,
and so never import pydantic-settings: each declares the small frozen value it needs
(:class:`RenderOptions`, :class:`MessageOptions`, :class:`ListNaming`, the
:class:`DkimKey`), and the edges
(pipeline, web, CLI) build it here from the settings.
"""

from __future__ import annotations

from digest.audience.listid import ListNaming, derive_list_id, effective_list_id
from digest.email.dkim import DkimKey, load_dkim_key
from digest.email.message import MessageOptions
from digest.email.view import Brand, RenderOptions
from digest.settings import Settings
from digest.settings.brand import dark_variant

__all__ = ["brand", "dkim_key", "list_naming", "message_options", "render_options"]


def render_options(settings: Settings) -> RenderOptions:
    """What the renderer needs: names, links and the footer's postal address."""
    return RenderOptions(
        newsletter_name=settings.newsletter_name,
        excerpt_words=settings.excerpt_words,
        brand=brand(settings),
        excerpt_paragraphs=settings.excerpt_paragraphs,
        article_url_template=settings.article_url_template,
        public_url=settings.public_url,
        postal_address=settings.postal_address,
    )


def brand(settings: Settings) -> Brand:
    """The look, from the ``[brand]`` settings (checked for contrast when they are read)."""
    configured = settings.brand
    return Brand(
        accent_color=configured.accent_color,
        dark_accent_color=dark_variant(configured.accent_color),
        background_color=configured.background_color,
        serif=configured.font_stack == "serif",
        logo_url=configured.logo_url,
        logo_width=configured.logo_width,
        logo_height=configured.logo_height,
        logo_alt=configured.logo_alt or settings.newsletter_name,
    )


def list_naming(settings: Settings) -> ListNaming:
    """The ``list_id`` setting, and the id derived from the name and the From domain."""
    return ListNaming(
        configured=settings.list_id,
        derived=derive_list_id(settings.newsletter_name, settings.sending_domain),
    )


def message_options(settings: Settings, *, list_id: str | None = None) -> MessageOptions:
    """What the message builder needs; ``list_id`` is the one the store kept, if known.

    Without it, the id is the ``list_id`` setting or the derived one (a preview of a list
    that never sent; :mod:`digest.audience.listid` says which id a real send uses).
    """
    return MessageOptions(
        newsletter_name=settings.newsletter_name,
        from_address=settings.from_address,
        from_name=settings.from_name,
        sending_domain=settings.sending_domain,
        public_url=settings.public_url,
        list_id=list_id or effective_list_id(list_naming(settings), ()),
    )


def dkim_key(settings: Settings) -> DkimKey | None:
    """The configured DKIM key, checked by signing, or None when signing is not set up."""
    configured = settings.dkim
    return load_dkim_key(
        private_key_file=configured.private_key_file,
        selector=configured.selector,
        domain=configured.domain or settings.sending_domain,
    )
