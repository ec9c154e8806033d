"""The Telegram webhook over real HTTP, on SQLite and PostgreSQL, against the fake Bot API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Message
from portabot.testing.fakes import Failure, FakeTelegram
from tests.conftest import (
    BOT_USERNAME,
    SECRET,
    TOKEN,
    BotFactory,
    post_telegram,
    query,
    run,
    telegram_update,
)
from tests.test_cli import portabot
from tests.test_late_redelivery import age_kept_replies
from tests.test_poll import polling

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

    async def handle(self, ctx: Context, message: Message) -> None:
        for n in (1, 2, 3):
            ctx.reply(f"reply {n} to {message.text}")
        return None


def test_further_replies_go_through_send_message(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = start_bot(flow=Flow([Chatty()], initial="chatty"))
    response = post_telegram(bot, telegram_update(3, "hi", user_id=77))
    # The earlier replies go through the API during the request; the response, which reaches
    # the chat after them, carries the last: the chat sees them in order.
    assert response.json() == {"method": "sendMessage", "chat_id": 77, "text": "reply 3 to hi"}
    assert fake_telegram.sent() == [
        {"chat_id": 77, "text": "reply 1 to hi"},
        {"chat_id": 77, "text": "reply 2 to hi"},
    ]
    rows = query(database_url, "SELECT text, sent_at FROM outbox ORDER BY id")
    assert [r["text"] for r in rows] == ["reply 1 to hi", "reply 2 to hi"]
    assert all(r["sent_at"] is not None for r in rows)


def test_a_reply_that_cannot_be_sent_stays_in_the_outbox(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = start_bot(flow=Flow([Chatty()], initial="chatty"))
    fake_telegram.fail_next(status=500, times=3)  # every attempt for reply 1 fails
    response = post_telegram(bot, telegram_update(3, "hi", user_id=77))
    assert response.status_code == 200
    rows = query(database_url, "SELECT text, sent_at, attempts, last_error FROM outbox ORDER BY id")
    assert rows[0]["sent_at"] is None and rows[0]["attempts"] == 1
    assert "HTTP 500" in rows[0]["last_error"]
    assert rows[1]["sent_at"] is not None
    assert fake_telegram.sent() == [{"chat_id": 77, "text": "reply 2 to hi"}]


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
    b = {"id": 9, "is_bot": False, "first_name": "B"}
    left = telegram_update(2, None, user_id=9, left_chat_member=b)  # B left by themselves
    response = post_telegram(bot, left)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 5, "channel_post": {"message_id": 1, "chat": {"id": -100}, "text": "x"}},
        {"update_id": 7},
        {**telegram_update(8, "hi"), "message": {**telegram_update(8)["message"], "from": BOT}},
    ],
    ids=["channel_post", "empty", "from_a_bot"],
)
def test_other_update_types_are_acknowledged_and_ignored(
    bot: httpx.Client, database_url: str, update: dict[str, object]
) -> None:
    response = post_telegram(bot, update)
    assert response.status_code == 200 and response.content == b""
    assert query(database_url, "SELECT id FROM people") == []


def test_a_photo_without_text_is_a_message(start_bot: BotFactory) -> None:
    update = telegram_update(1, None, photo=[{"file_id": "x", "width": 1, "height": 1}])
    assert post_telegram(echo(start_bot), update).json()["text"] == "photo: ''"


def test_telegram_is_off_without_a_token(start_bot: BotFactory) -> None:
    bot = start_bot(telegram_token=None)
    assert post_telegram(bot, telegram_update(1, "/help")).status_code == 404


# Real payloads: forum topics, service messages, chat migrations, messages on behalf of a chat

ANN = {"id": 1001, "is_bot": False, "first_name": "Ann", "username": "ann", "language_code": "en"}
FORUM = {"id": -1001934567890, "title": "Portabot forum", "is_forum": True, "type": "supergroup"}
SUPERGROUP = {"id": -1001711122233, "title": "Portabot chat", "type": "supergroup"}
OLD_GROUP = {"id": -4098765432, "title": "Portabot users", "type": "group"}
NEW_SUPERGROUP = {"id": -1002098765432, "title": "Portabot users", "type": "supergroup"}
CHANNEL = {
    "id": -1001600000001,
    "title": "Portabot news",
    "username": "portabot_news",
    "type": "channel",
}
GROUP_ANONYMOUS_BOT = {
    "id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"
}  # fmt: skip
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"}
TELEGRAM = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
DATE = 1_700_000_000


class Echo(State):
    """Says what it was given: anything that should not reach a flow shows up as a reply."""

    name = "echo"

    async def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"{message.kind.value}: {message.text!r}")
        return None


def age_outbox(url: str) -> None:
    """As if the time for the replies' next try had come."""
    query(url, "UPDATE outbox SET due_at = 0 WHERE sent_at IS NULL")


def deliver(tmp_path: Path, database_url: str, fake: FakeTelegram) -> None:
    """`portabot deliver`, in a process of its own."""
    env = {"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_SECRET": SECRET, "TELEGRAM_API_URL": fake.url}
    result = portabot(tmp_path, "deliver", DATABASE_URL=database_url, **env)
    assert result.returncode == 0, result.stderr


def echo(start_bot: BotFactory) -> httpx.Client:
    return start_bot(flow=Flow([Echo()], initial="echo"))


def chatty(start_bot: BotFactory) -> httpx.Client:
    return start_bot(flow=Flow([Chatty()], initial="chatty"))


def sent_in(update_id: int, chat: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An update with a message from Ann in `chat`, as Telegram sends it."""
    message = {"message_id": update_id, "from": ANN, "chat": chat, "date": DATE, **fields}
    return {"update_id": update_id, "message": message}


def in_topic(update_id: int, text: str, thread: int = 42) -> dict[str, Any]:
    """A message in a forum topic: Telegram makes the topic's first (service) message the one it
    replies to."""
    created = sent_in(thread, FORUM, forum_topic_created={"name": "Orders", "icon_color": 7322096})
    opening = {**created["message"], "message_thread_id": thread, "is_topic_message": True}
    return sent_in(
        update_id,
        FORUM,
        text=text,
        message_thread_id=thread,
        is_topic_message=True,
        reply_to_message=opening,
    )


def test_replies_in_a_forum_topic_go_to_the_topic(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    response = post_telegram(chatty(start_bot), in_topic(3, "hi"))
    forum = FORUM["id"]
    assert response.json() == {
        "method": "sendMessage",
        "chat_id": forum,
        "message_thread_id": 42,
        "text": "reply 3 to hi",
    }
    assert fake_telegram.sent() == [
        {"chat_id": forum, "message_thread_id": 42, "text": "reply 1 to hi"},
        {"chat_id": forum, "message_thread_id": 42, "text": "reply 2 to hi"},
    ]
    rows = query(database_url, "SELECT chat_id, thread_id, sent_at FROM outbox ORDER BY id")
    assert [(r["chat_id"], r["thread_id"]) for r in rows] == [(str(forum), "42")] * 2
    assert all(r["sent_at"] is not None for r in rows)


@pytest.mark.parametrize(
    "update",
    [
        sent_in(1, FORUM, text="hi"),
        sent_in(
            1,
            SUPERGROUP,
            text="hi",
            message_thread_id=17,
            reply_to_message={"message_id": 17, "from": ANN, "chat": SUPERGROUP, "date": DATE},
        ),
    ],
    ids=["forum-general-topic", "reply-chain-in-a-group"],
)
def test_replies_outside_a_topic_name_no_thread(
    start_bot: BotFactory, fake_telegram: FakeTelegram, update: dict[str, object]
) -> None:
    # In a group without topics message_thread_id names a reply chain: sendMessage refuses it.
    body = post_telegram(chatty(start_bot), update).json()
    assert "message_thread_id" not in body and body["text"] == "reply 3 to hi"
    assert all("message_thread_id" not in sent for sent in fake_telegram.sent())


def test_a_reply_retried_later_still_goes_to_the_topic(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    fake_telegram.fail_next(status=502, times=6)  # replies 1 and 2 fail during the request
    post_telegram(chatty(start_bot), in_topic(3, "hi"))
    assert fake_telegram.sent() == []
    age_outbox(database_url)
    deliver(tmp_path, database_url, fake_telegram)  # `portabot deliver`, another process
    assert [(s["message_thread_id"], s["text"]) for s in fake_telegram.sent()] == [
        (42, "reply 1 to hi"),
        (42, "reply 2 to hi"),
    ]


def test_a_late_copy_carries_the_reply_into_the_topic(bot: httpx.Client, database_url: str) -> None:
    first = post_telegram(bot, in_topic(1, "/help"))
    assert first.json()["message_thread_id"] == 42
    age_kept_replies(database_url)
    assert post_telegram(bot, in_topic(1, "/help")).json() == first.json()


def test_polling_answers_in_the_topic_too(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    pin = sent_in(1, FORUM, pinned_message=sent_in(9, FORUM, text="Rules")["message"])
    fake_telegram.push(pin, in_topic(2, "/me"))
    with polling(tmp_path, fake_telegram, DATABASE_URL=database_url) as poller:
        poller.wait_for(fake_telegram.sent)
        poller.stop()
    assert fake_telegram.sent() == [
        {"chat_id": FORUM["id"], "message_thread_id": 42, "text": "Linked platforms: telegram."}
    ]
    assert "stopped: 2 handled, 0 seen before" in poller.output


PRIVATE = {"id": 1001, "first_name": "Ann", "username": "ann", "type": "private"}
BOB = {"id": 2002, "is_bot": False, "first_name": "Bob"}
SERVICE_MESSAGES = {
    "pinned_message": (FORUM, {"pinned_message": sent_in(9, FORUM, text="Rules")["message"]}),
    "forum_topic_created": (
        FORUM,
        {
            "message_thread_id": 50,
            "is_topic_message": True,
            "forum_topic_created": {"name": "Orders", "icon_color": 7322096},
        },
    ),
    "forum_topic_edited": (
        FORUM,
        {"message_thread_id": 50, "is_topic_message": True, "forum_topic_edited": {"name": "Old"}},
    ),
    "forum_topic_closed": (
        FORUM,
        {"message_thread_id": 50, "is_topic_message": True, "forum_topic_closed": {}},
    ),
    "forum_topic_reopened": (
        FORUM,
        {"message_thread_id": 50, "is_topic_message": True, "forum_topic_reopened": {}},
    ),
    "general_forum_topic_hidden": (FORUM, {"general_forum_topic_hidden": {}}),
    "general_forum_topic_unhidden": (FORUM, {"general_forum_topic_unhidden": {}}),
    "new_chat_title": (SUPERGROUP, {"new_chat_title": "Portabot chat (archive)"}),
    "new_chat_photo": (
        SUPERGROUP,
        {
            "new_chat_photo": [
                {
                    "file_id": "AgACAgIAAx0CZ_photo",
                    "file_unique_id": "AQADx7kxG",
                    "file_size": 9876,
                    "width": 160,
                    "height": 160,
                }
            ]
        },
    ),
    "delete_chat_photo": (SUPERGROUP, {"delete_chat_photo": True}),
    "group_chat_created": (OLD_GROUP, {"group_chat_created": True}),
    "message_auto_delete_timer_changed": (
        SUPERGROUP,
        {"message_auto_delete_timer_changed": {"message_auto_delete_time": 86400}},
    ),
    "video_chat_scheduled": (SUPERGROUP, {"video_chat_scheduled": {"start_date": DATE + 3600}}),
    "video_chat_started": (SUPERGROUP, {"video_chat_started": {}}),
    "video_chat_ended": (SUPERGROUP, {"video_chat_ended": {"duration": 1200}}),
    "video_chat_participants_invited": (
        SUPERGROUP,
        {"video_chat_participants_invited": {"users": [BOB]}},
    ),
    "write_access_allowed": (PRIVATE, {"write_access_allowed": {"from_request": True}}),
    "users_shared": (PRIVATE, {"users_shared": {"request_id": 1, "users": [{"user_id": 2002}]}}),
    "chat_shared": (PRIVATE, {"chat_shared": {"request_id": 2, "chat_id": -1001711122233}}),
    "successful_payment": (
        PRIVATE,
        {
            "successful_payment": {
                "currency": "XTR",
                "total_amount": 50,
                "invoice_payload": "order-7",
                "telegram_payment_charge_id": "stxAbCdEf123",
                "provider_payment_charge_id": "",
            }
        },
    ),
    "boost_added": (SUPERGROUP, {"boost_added": {"boost_count": 1}}),
    "member_removed_by_an_admin": (SUPERGROUP, {"left_chat_member": BOB}),
}


@pytest.mark.parametrize(("chat", "fields"), SERVICE_MESSAGES.values(), ids=SERVICE_MESSAGES)
def test_service_messages_are_acknowledged_and_not_given_to_the_flow(
    start_bot: BotFactory,
    fake_telegram: FakeTelegram,
    database_url: str,
    chat: dict[str, object],
    fields: dict[str, object],
) -> None:
    response = post_telegram(echo(start_bot), sent_in(1, chat, **fields))
    assert response.status_code == 200 and response.content == b""
    assert fake_telegram.calls == []
    assert stored_updates(database_url) == 1  # acknowledged once: a repeat is skipped
    assert query(database_url, "SELECT id FROM people") == []
    assert query(database_url, "SELECT id FROM outbox") == []


def test_what_people_do_in_a_chat_reaches_the_flow_by_its_kind(start_bot: BotFactory) -> None:
    bot = echo(start_bot)
    joined = post_telegram(bot, sent_in(1, SUPERGROUP, new_chat_members=[ANN]))
    left = post_telegram(bot, sent_in(2, SUPERGROUP, left_chat_member=ANN))
    photo = [{"file_id": "AgACAgIAAxk", "file_unique_id": "AQAD", "width": 90, "height": 67}]
    captioned = post_telegram(bot, sent_in(3, PRIVATE, photo=photo, caption="our cat"))
    # A photo without a caption is still something Ann sent: empty text.
    bare = post_telegram(bot, sent_in(4, PRIVATE, photo=photo))
    answers = [r.json()["text"] for r in (joined, left, captioned, bare)]
    assert answers == ["joined: ''", "left: ''", "photo: 'our cat'", "photo: ''"]


@pytest.mark.parametrize(
    "update",
    [
        sent_in(
            1,
            SUPERGROUP,
            **{"from": TELEGRAM},
            sender_chat=CHANNEL,
            is_automatic_forward=True,
            forward_origin={"type": "channel", "chat": CHANNEL, "message_id": 77, "date": DATE},
            forward_from_chat=CHANNEL,
            forward_from_message_id=77,
            forward_date=DATE,
            text="Release 1.2 is out",
        ),
        sent_in(
            1, SUPERGROUP, **{"from": GROUP_ANONYMOUS_BOT}, sender_chat=SUPERGROUP, text="/help"
        ),
        sent_in(1, SUPERGROUP, **{"from": CHANNEL_BOT}, sender_chat=CHANNEL, text="/help"),
        sent_in(1, SUPERGROUP, **{"from": TELEGRAM}, text="Login code: 12345"),
    ],
    ids=["automatic-forward", "anonymous-admin", "posted-as-a-channel", "from-telegram"],
)
def test_messages_sent_on_behalf_of_a_chat_are_ignored(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str, update: dict[str, object]
) -> None:
    response = post_telegram(echo(start_bot), update)
    assert response.status_code == 200 and response.content == b""
    assert fake_telegram.calls == []
    assert query(database_url, "SELECT id FROM people") == []


def migrated(update_id: int, notice: str) -> dict[str, object]:
    """Telegram's two notices of a group upgraded to a supergroup, one in each chat."""
    if notice == "old":
        return sent_in(update_id, OLD_GROUP, migrate_to_chat_id=NEW_SUPERGROUP["id"])
    return sent_in(update_id, NEW_SUPERGROUP, migrate_from_chat_id=OLD_GROUP["id"])


@pytest.mark.parametrize("first", ["old", "new"], ids=["old-group-first", "supergroup-first"])
def test_a_group_upgraded_to_a_supergroup_moves_its_chat(
    start_bot: BotFactory,
    fake_telegram: FakeTelegram,
    database_url: str,
    tmp_path: Path,
    first: str,
) -> None:
    old, new = str(OLD_GROUP["id"]), str(NEW_SUPERGROUP["id"])
    bot = chatty(start_bot)
    fake_telegram.fail_next(status=502, times=3)  # reply 1 waits in the outbox; reply 2 is sent
    post_telegram(bot, sent_in(1, OLD_GROUP, text="hi"))
    post_telegram(bot, telegram_update(2, "hi", user_id=2002))  # Bob, in private: not moved
    fake_telegram.reset()
    second = "new" if first == "old" else "old"
    for update in (migrated(10, first), migrated(11, second), migrated(10, first)):
        response = post_telegram(bot, update)
        assert response.status_code == 200 and response.content == b""
    assert fake_telegram.calls == []  # nothing was said in either chat
    assert sorted(r["update_id"] for r in query(database_url, "SELECT update_id FROM updates")) == [
        "1",
        "10",
        "11",
        "2",
    ]
    accounts = query(database_url, "SELECT user_id, chat_id FROM accounts ORDER BY user_id")
    assert accounts == [{"user_id": "1001", "chat_id": new}, {"user_id": "2002", "chat_id": "2002"}]
    outbox = query(database_url, "SELECT text, chat_id, sent_at FROM outbox ORDER BY id")
    waiting = [(r["text"], r["chat_id"]) for r in outbox if r["sent_at"] is None]
    sent = [(r["text"], r["chat_id"]) for r in outbox if r["sent_at"] is not None]
    assert waiting == [("reply 1 to hi", new)]
    assert sent == [("reply 2 to hi", old), ("reply 1 to hi", "2002"), ("reply 2 to hi", "2002")]
    age_outbox(database_url)
    deliver(tmp_path, database_url, fake_telegram)
    assert fake_telegram.sent() == [{"chat_id": int(new), "text": "reply 1 to hi"}]


def test_a_reply_sent_to_a_group_that_became_a_supergroup_follows_it(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    # The group was upgraded, and Telegram's notice has not been processed yet.
    upgraded = {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": NEW_SUPERGROUP["id"]},
    }
    fake_telegram.failures.append(Failure(400, upgraded, "sendMessage"))
    post_telegram(chatty(start_bot), sent_in(1, OLD_GROUP, text="hi"))
    assert [call.payload["chat_id"] for call in fake_telegram.failed] == [OLD_GROUP["id"]]
    assert fake_telegram.sent()[0] == {"chat_id": NEW_SUPERGROUP["id"], "text": "reply 1 to hi"}
    rows = query(database_url, "SELECT sent_at, last_error FROM outbox ORDER BY id")
    assert rows[0]["sent_at"] is not None and rows[0]["last_error"] is None
