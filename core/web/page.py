"""The home page: what the bot is, where to find it, and a chat box that talks to /webhooks/web."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from string import Template

from core.settings import Settings


def platform_links(settings: Settings) -> list[tuple[str, str]]:
    """(label, URL) for every platform the bot can be reached on besides this page."""
    links = []
    if settings.telegram_enabled and settings.telegram_bot_username:
        links.append(("Telegram", f"https://t.me/{settings.telegram_bot_username}"))
    if settings.vk_group_id is not None:
        links.append(("VK", f"https://vk.com/club{settings.vk_group_id}"))
    return links


COSTS_LINK = '<p><a href="costs">What hosting this bot costs</a></p>'


def render_home(settings: Settings) -> str:
    template = Template(files("core.web").joinpath("index.html").read_text(encoding="utf-8"))
    links = "".join(
        f'<li><a href="{escape(url)}" rel="noopener">{escape(label)}</a></li>'
        for label, url in platform_links(settings)
    )
    return template.substitute(
        name=escape(settings.bot_name),
        links=f"<ul class=links>{links}</ul>" if links else "<p>Chat with it right here.</p>",
        costs=COSTS_LINK if settings.costs_page else "",
    )
