"""The web chat's inbox over HTTP: what waits for a visitor (put there as the bot would, with
add_to_inbox in a transaction on its database) is collected by their page's `POST
/webhooks/web/inbox` once, in the chat's bubbles, and by nobody else; a request without the
cookie gets nothing and makes no one; collections are limited per address; WEB_CHAT=off has no
inbox; `portabot maintain` forgets what no page collected. The page itself: tests/test_browser.py.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from portabot import Button, bold
from portabot.messages import Delivery
from portabot.replies import Reply
from portabot.storage.database import Database
from portabot.storage.inbox import add_to_inbox
from portabot.testing.fakes import FakeTelegram
from tests.conftest import BotFactory, query, say_web
from tests.test_limits import windows
from tests.test_maintain import DAY, maintain

INBOX = "/webhooks/web/inbox"


def visitor_id(url: str) -> str:
    """The user id of the one web visitor the bot knows."""
    [row] = query(url, "SELECT user_id FROM accounts WHERE platform = 'web'")
    return str(row["user_id"])


def put(url: str, user_id: str, *messages: str | Reply, now: float | None = None) -> None:
    """Keep messages for a visitor as the bot does: add_to_inbox in a transaction, keyed
    `tell-<n>:<position>` (from a thread of its own: the caller may hold an event loop)."""
    deliveries = []
    for i, message in enumerate(messages):
        reply = message if isinstance(message, Reply) else Reply.of(message)
        key = f"tell-{time.monotonic_ns()}:{i}"
        deliveries.append(Delivery("web", user_id, reply.text, key, reply=reply))

    async def add() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.transaction() as conn:
                await add_to_inbox(conn, deliveries, time.time() if now is None else now)
        finally:
            await db.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, add()).result()


def collect(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post(INBOX, json={}, headers=headers)


def collected(client: httpx.Client) -> dict[str, Any]:
    response = collect(client)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    found: dict[str, Any] = response.json()
    return found


def test_a_message_in_the_inbox_is_collected_once_by_its_visitor_only(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot()
    assert collected(bot) == {"replies": [], "texts": []}  # before the first message: nobody
    say_web(bot, "hello")
    user_id = visitor_id(database_url)
    with httpx.Client(base_url=bot.base_url) as other:
        say_web(other, "hello")
        menu = Reply.of(
            "Your ", bold("order"), " is ready", buttons=[[Button("Pick up", "pickup")]]
        )
        put(database_url, user_id, "Hello again", menu)
        assert collected(other) == {"replies": [], "texts": []}  # another visitor's cookie
        found = collected(bot)
        assert found["texts"] == ["Hello again", "Your order is ready"]
        first, second = found["replies"]
        assert first["text"] == "Hello again" and first["id"].endswith(":0")
        assert second["html"] == "Your <b>order</b> is ready"
        assert second["buttons"] == [[{"label": "Pick up", "payload": "pickup"}]]
        assert collected(bot) == {"replies": [], "texts": []}  # each shown once
        assert collected(other) == {"replies": [], "texts": []}
    assert query(database_url, "SELECT count(*) AS n FROM inbox")[0]["n"] == 0
    # The chat's replies are still the chat's: the inbox only holds what no request answered.
    assert say_web(bot, "hello") == ["Send /help to see what I can do."]
    assert collected(bot)["replies"] == []


def test_without_a_valid_cookie_nothing_is_collected_and_nobody_is_made(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot()
    say_web(bot, "hello")
    put(database_url, visitor_id(database_url), "For the visitor only")
    people = query(database_url, "SELECT count(*) AS n FROM people")[0]["n"]
    with httpx.Client(base_url=bot.base_url) as stranger:
        assert collected(stranger) == {"replies": [], "texts": []}
        cookie = bot.cookies["portabot_web"]
        stranger.cookies.set("portabot_web", cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB"))
        assert collected(stranger) == {"replies": [], "texts": []}  # a forged signature
        assert "set-cookie" not in collect(stranger).headers
    assert query(database_url, "SELECT count(*) AS n FROM people")[0]["n"] == people
    assert collected(bot)["texts"] == ["For the visitor only"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{}", "text/plain", 415),  # what a form on another site could send
        (b'{"user": "someone"}', "application/json", 422),
        (b"[]", "application/json", 422),
        (b"{", "application/json", 400),
        (b"{" + b" " * 2000 + b"}", "application/json", 413),
    ],
)
def test_bad_collections_are_refused_with_a_reason(
    start_bot: BotFactory, body: bytes, content_type: str, status: int
) -> None:
    bot = start_bot()
    say_web(bot, "hello")
    response = bot.post(INBOX, content=body, headers={"Content-Type": content_type})
    assert response.status_code == status and response.json()["error"]
    assert bot.get(INBOX).status_code == 405


def test_collections_beyond_the_limit_are_told_to_wait(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot()
    say_web(bot, "hello")
    started, sent = time.time(), 0
    while True:  # until refused with a few seconds of the window left for what follows
        while (response := collect(bot)).status_code == 200:
            sent += 1
            assert sent <= 60 * windows(started, time.time(), 60)
        assert response.status_code == 429
        wait = int(response.headers["retry-after"])
        if wait >= 5:
            break
    assert 1 <= wait <= 60 and response.json()["retry_after"] == wait
    error = response.json()["error"]
    assert error.startswith("too many checks for messages from your address: try again in ")
    counted = "SELECT key, count FROM limits WHERE key LIKE 'web-inbox:%'"
    before = query(database_url, counted)
    assert [row["count"] for row in before] == [61]
    for _ in range(3):  # remembered: refused again without a statement
        assert collect(bot).status_code == 429
    assert query(database_url, counted) == before
    # The address's own limit: another address still collects, and the chat still answers.
    assert collect(bot, **{"X-Forwarded-For": "198.51.100.7"}).status_code == 200
    assert say_web(bot, "hello") == ["Send /help to see what I can do."]


def test_no_inbox_when_the_web_chat_is_off(start_bot: BotFactory) -> None:
    off = start_bot(web_chat=False)
    response = off.post(INBOX, json={})
    assert response.status_code == 404
    assert response.json() == {"error": "the web chat is off on this bot"}


def test_maintain_forgets_what_no_page_collected(
    tmp_path: Path, start_bot: BotFactory, database_url: str, fake_telegram: FakeTelegram
) -> None:
    bot = start_bot()
    say_web(bot, "hello")
    stays = visitor_id(database_url)
    with httpx.Client(base_url=bot.base_url) as left:
        say_web(left, "hello")
        [gone] = [
            r["user_id"]
            for r in query(database_url, "SELECT user_id FROM accounts WHERE platform = 'web'")
            if r["user_id"] != stays
        ]
        put(database_url, stays, "Too old", now=time.time() - 31 * DAY)
        put(database_url, stays, "Still here")
        put(database_url, gone, "Never read")
        query(
            database_url,
            f"UPDATE people SET updated_at = updated_at - 31 * {DAY} WHERE id = (SELECT"
            f" person_id FROM accounts WHERE platform = 'web' AND user_id = '{gone}')",
        )
        out = maintain(tmp_path, database_url, fake_telegram)
        assert "web visitors: 1 deleted (web only, idle more than 30 days)" in out
        assert (
            "web inbox: 2 deleted (not collected within 30 days, or its visitor forgotten)"
        ) in out
        assert collected(left)["replies"] == []
    assert collected(bot)["texts"] == ["Still here"]
