"""The channels, registered in one place: which ones a deployment has follows from its settings.
A platform's module (its update models) is imported only where the platform is configured: a
Lambda container of a Telegram bot does not build VK's models at its cold start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portabot.channels.base import Channel
from portabot.channels.web import WebChannel
from portabot.settings import detect_host

if TYPE_CHECKING:
    from portabot.channels.telegram import TelegramChannel
    from portabot.channels.vk import VkChannel
    from portabot.settings import Settings
    from portabot.storage.database import Database


def platform_channels(
    settings: Settings, db: Database | None = None
) -> list[TelegramChannel | VkChannel]:
    """The channels of the platforms that are configured (each needs its token); `db` where
    they send replies (VK remembers its uploaded images there)."""
    channels: list[TelegramChannel | VkChannel] = []
    if settings.telegram_enabled:
        from portabot.channels.telegram import TelegramChannel

        channels.append(TelegramChannel(settings))
    if settings.vk_enabled:
        from portabot.channels.vk import VkChannel

        channels.append(VkChannel(settings, db))
    return channels


def all_channels(settings: Settings, db: Database) -> dict[str, Channel]:
    """Every channel the deployment serves, by platform: the web chat unless WEB_CHAT=off (its
    cookies' key and limits live in the database), and the configured platforms."""
    channels: dict[str, Channel] = {}
    if settings.web_chat:
        channels["web"] = WebChannel(db, settings, host=detect_host())
    for channel in platform_channels(settings, db):
        channels[channel.platform] = channel
    return channels
