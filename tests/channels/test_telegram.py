"""The Telegram webhook over real HTTP, on SQLite and PostgreSQL, against the fake Bot API."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.conversation.engine import Context, Flow, State
from core.messages import Message
from tests.conftest import (
    BOT_USERNAME,
    SECRET,
    BotFactory,
    post_telegram,
    query,
    telegram_update,
)
from tests.servers import FakeTelegram, run

BOT = {"id": 3, "is_bot": True, "first_name": "Bot"}


def stored_updates(url: str) -> int:
    return len(query(url, "SELECT update_id FROM updates"))


def test_first_reply_comes_back_in_the_webhook_body(
    bot: httpx.Client, fake_telegram: FakeTelegram
) -> None:
    response = post_telegram(bot, telegram_update(1, "/help", user_id=42))
    assert response.status_code == 200
    body = response.json()
    assert body["method"] == "sendMessage"
    assert body["chat_id"] == 42
    assert "/bind" in body["text"]
    assert fake_telegram.calls == []  # no outbound call when the reply fits in the response


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong", 403), ("", 403)])
def test_missing_or_wrong_secret_is_refused_and_nothing_stored(
    bot: httpx.Client, database_url: str, secret: str | None, status: int
) -> None:
    response = post_telegram(bot, telegram_update(1, "/help"), secret=secret)
    assert response.status_code == status
    assert "secret" in response.json()["error"]
    assert stored_updates(database_url) == 0
    assert query(database_url, "SELECT id FROM people") == []


def test_a_redelivered_update_is_acknowledged_and_skipped(
    bot: httpx.Client, database_url: str
) -> None:
    replies = [post_telegram(bot, telegram_update(7, "/bind")) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert "/in " in replies[0].json()["text"]
    assert replies[1].content == replies[2].content == b""
    assert len(query(database_url, "SELECT code FROM link_codes")) == 1


def test_concurrent_copies_of_one_update_are_processed_once(
    bot: httpx.Client, database_url: str, fake_telegram: FakeTelegram
) -> None:
    async def deliver_three_times(update_id: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(bot.base_url), timeout=30) as client:
            update = telegram_update(update_id, "/bind", user_id=500 + update_id)
            headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            return await asyncio.gather(
                *(client.post("/webhooks/telegram", json=update, headers=headers) for _ in range(3))
            )

    for update_id in range(1, 11):
        responses = run(deliver_three_times(update_id))
        assert all(r.status_code == 200 for r in responses)
        bodies = [r.json() for r in responses if r.content]
        assert len(bodies) == 1, f"update {update_id} answered {len(bodies)} times"
    assert len(query(database_url, "SELECT code FROM link_codes")) == 10
    assert stored_updates(database_url) == 10
    assert fake_telegram.calls == []


class Chatty(State):
    """Answers every message three times: the first reply inline, the rest through the API."""

    name = "chatty"

    async def handle(self, ctx: Context, message: Message) -> str | None:
        for n in (1, 2, 3):
            ctx.reply(f"reply {n} to {message.text}")
        return None


def test_further_replies_go_through_send_message(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = start_bot(flow=Flow([Chatty()], initial="chatty"))
    response = post_telegram(bot, telegram_update(3, "hi", user_id=77))
    assert response.json() == {"method": "sendMessage", "chat_id": 77, "text": "reply 1 to hi"}
    assert fake_telegram.sent() == [
        {"chat_id": 77, "text": "reply 2 to hi"},
        {"chat_id": 77, "text": "reply 3 to hi"},
    ]
    rows = query(database_url, "SELECT text, sent_at FROM outbox ORDER BY id")
    assert [r["text"] for r in rows] == ["reply 2 to hi", "reply 3 to hi"]
    assert all(r["sent_at"] is not None for r in rows)


def test_a_reply_that_cannot_be_sent_stays_in_the_outbox(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = start_bot(flow=Flow([Chatty()], initial="chatty"))
    fake_telegram.fail_next(status=500, times=3)  # every attempt for reply 2 fails
    response = post_telegram(bot, telegram_update(3, "hi", user_id=77))
    assert response.status_code == 200
    rows = query(database_url, "SELECT text, sent_at, attempts, last_error FROM outbox ORDER BY id")
    assert rows[0]["sent_at"] is None and rows[0]["attempts"] == 1
    assert "HTTP 500" in rows[0]["last_error"]
    assert rows[1]["sent_at"] is not None
    assert fake_telegram.sent() == [{"chat_id": 77, "text": "reply 3 to hi"}]


def test_commands_addressed_with_the_bot_name(bot: httpx.Client) -> None:
    mine = post_telegram(
        bot, telegram_update(1, f"/help@{BOT_USERNAME}", chat_type="group", chat_id=-5)
    )
    assert "/bind" in mine.json()["text"] and mine.json()["chat_id"] == -5
    other = post_telegram(
        bot, telegram_update(2, "/help@another_bot", chat_type="group", chat_id=-5)
    )
    assert other.status_code == 200 and other.content == b""


def test_edited_messages_are_handled_like_messages(bot: httpx.Client) -> None:
    response = post_telegram(bot, telegram_update(1, "/me", field="edited_message"))
    assert response.json()["text"] == "Linked platforms: telegram."


def test_members_joining_and_leaving(bot: httpx.Client) -> None:
    joined = telegram_update(
        1, None, new_chat_members=[{"id": 9, "is_bot": False, "first_name": "B"}]
    )
    assert "/help" in post_telegram(bot, joined).json()["text"]
    left = telegram_update(2, None, left_chat_member={"id": 9, "is_bot": False, "first_name": "B"})
    response = post_telegram(bot, left)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 5, "channel_post": {"message_id": 1, "chat": {"id": -100}, "text": "x"}},
        {"update_id": 6, "callback_query": {"id": "1", "from": {"id": 1, "is_bot": False}}},
        {"update_id": 7},
        {**telegram_update(8, "hi"), "message": {**telegram_update(8)["message"], "from": BOT}},
    ],
    ids=["channel_post", "callback_query", "empty", "from_a_bot"],
)
def test_other_update_types_are_acknowledged_and_ignored(
    bot: httpx.Client, database_url: str, update: dict[str, object]
) -> None:
    response = post_telegram(bot, update)
    assert response.status_code == 200 and response.content == b""
    assert query(database_url, "SELECT id FROM people") == []


def test_a_photo_without_text_is_a_message(bot: httpx.Client) -> None:
    update = telegram_update(1, None, photo=[{"file_id": "x", "width": 1, "height": 1}])
    assert post_telegram(bot, update).json()["text"] == "Send /help to see what I can do."


def test_telegram_is_off_without_a_token(start_bot: BotFactory) -> None:
    bot = start_bot(telegram_token=None)
    assert post_telegram(bot, telegram_update(1, "/help")).status_code == 404
