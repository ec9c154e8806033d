"""Telegram delivers an update again only when our answer never reached it. A copy that comes
later than RESEND_AFTER carries the reply the first answer carried, once; a copy that comes
while the first may still answer carries nothing."""

from __future__ import annotations

import httpx

from portabot.pipeline import RESEND_AFTER
from tests.conftest import post_telegram, post_vk, query, telegram_update, vk_event


def age_kept_replies(database_url: str) -> None:
    """As if Telegram's copy came after its own timeout."""
    query(database_url, f"UPDATE inline_replies SET replied_at = replied_at - {RESEND_AFTER + 1}")


def test_a_late_copy_carries_the_reply_once(bot: httpx.Client, database_url: str) -> None:
    first = post_telegram(bot, telegram_update(1, "hello"))
    assert first.json()["method"] == "sendMessage"
    assert post_telegram(bot, telegram_update(1, "hello")).content == b""  # too soon: nothing
    age_kept_replies(database_url)
    late = post_telegram(bot, telegram_update(1, "hello"))
    assert late.json() == first.json()
    assert post_telegram(bot, telegram_update(1, "hello")).content == b""  # and only once
    assert query(database_url, "SELECT count(*) AS n FROM updates") == [{"n": 1}]


def test_replies_that_went_through_the_api_are_not_kept(
    bot: httpx.Client, database_url: str
) -> None:
    # VK's replies never ride in the response: nothing to keep, nothing to send again.
    assert post_vk(bot, vk_event("e1", "hello")).text == "ok"
    age_kept_replies(database_url)
    assert post_vk(bot, vk_event("e1", "hello")).text == "ok"
    assert query(database_url, "SELECT count(*) AS n FROM inline_replies") == [{"n": 0}]
