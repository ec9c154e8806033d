"""The home page: what the bot is, where to find it, and a chat box that talks to /webhooks/web."""

from __future__ import annotations

import re
import sys
from html import escape
from importlib.resources import files
from string import Template

from portabot.conversation.engine import Flow
from portabot.settings import Settings


def platform_links(settings: Settings) -> list[tuple[str, str]]:
    """(label, URL) for every platform the bot can be reached on besides this page."""
    links = []
    if settings.telegram_enabled and settings.telegram_bot_username:
        links.append(("Telegram", f"https://t.me/{settings.telegram_bot_username}"))
    if settings.vk_group_id is not None:
        links.append(("VK", f"https://vk.com/club{settings.vk_group_id}"))
    return links


LINKING = """<p>A bot that knows you wherever you write to it: link your accounts on different
     platforms with <code>/bind</code> and <code>/in &lt;code&gt;</code>, and it treats them as one
     person.</p>"""
"""What the page says of linking, when the flow includes the Linking feature."""
COSTS_LINK = '<p><a href="costs">What hosting this bot costs</a></p>'
CHAT = re.compile(r"<!--chat-->.*<!--/chat-->", re.DOTALL)
"""The chat box, which WEB_CHAT=off replaces with a line that says so."""


def includes_linking(flow: Flow) -> bool:
    """Whether the flow includes the Linking feature. A flow that does has imported it; one that
    does not need not import it (nor SQLAlchemy, which its table needs, on Lambda)."""
    linking = sys.modules.get("portabot.features.linking")
    return linking is not None and any(isinstance(f, linking.Linking) for f in flow.features)


def render_home(settings: Settings, flow: Flow) -> str:
    page = files("portabot.web").joinpath("index.html").read_text(encoding="utf-8")
    found = platform_links(settings)
    links = "".join(
        f'<li><a href="{escape(url)}" rel="noopener">{escape(label)}</a></li>'
        for label, url in found
    )
    if settings.web_chat:
        intro = f"<ul class=links>{links}</ul>" if links else "<p>Chat with it right here.</p>"
    else:
        elsewhere = " Write to it on one of the platforms above." if found else ""
        page = CHAT.sub(f"<p id=off>The web chat is off on this bot.{elsewhere}</p>", page)
        intro = f"<ul class=links>{links}</ul>" if links else ""
    return Template(page).substitute(
        name=escape(settings.bot_name),
        about=LINKING if includes_linking(flow) else "",
        links=intro,
        costs=COSTS_LINK if settings.costs_page else "",
    )
