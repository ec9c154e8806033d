"""Replies that could not be sent: kept in the outbox, retried later with backoff (by a later
request or `portabot deliver`), never dropped silently and never sent twice."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from portabot.channels import platform_channels
from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Delivery, Message
from portabot.outbound import Outbound
from portabot.settings import Settings
from portabot.storage.database import Database
from portabot.storage.outbox import add_to_outbox, claim_due
from portabot.testing.fakes import FakeTelegram
from tests.channels.test_telegram import Chatty
from tests.conftest import SECRET, TOKEN, BotFactory, post_telegram, query, run, telegram_update
from tests.test_cli import portabot

OUTBOX = (
    "SELECT id, text, sent_at, attempts, due_at, gave_up_at, last_error FROM outbox ORDER BY id"
)


def chatty(start_bot: BotFactory, **changes: object) -> httpx.Client:
    return start_bot(flow=Flow([Chatty()], initial="chatty"), **changes)


def age_outbox(url: str) -> None:
    """As if the retry's time had come."""
    query(url, "UPDATE outbox SET due_at = due_at - 100000 WHERE due_at IS NOT NULL")


def deliver(tmp_path: Path, database_url: str, fake: FakeTelegram) -> str:
    result = portabot(
        tmp_path,
        "deliver",
        DATABASE_URL=database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake.url,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_failed_reply_is_retried_later_and_sent_once(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    bot = chatty(start_bot)
    fake_telegram.fail_next(status=502, times=3)  # every attempt at reply 1 during the request
    assert post_telegram(bot, telegram_update(1, "hi", user_id=5)).status_code == 200
    first, second = query(database_url, OUTBOX)
    assert first["sent_at"] is None and first["attempts"] == 1 and first["due_at"] is not None
    assert second["sent_at"] is not None
    # Not yet due: backoff.
    assert deliver(tmp_path, database_url, fake_telegram).startswith("sent 0, failed 0; 1 waiting")
    age_outbox(database_url)
    assert deliver(tmp_path, database_url, fake_telegram).startswith("sent 1, failed 0; 0 waiting")
    assert deliver(tmp_path, database_url, fake_telegram).startswith("sent 0, failed 0; 0 waiting")
    texts = [p["text"] for p in fake_telegram.sent()]
    assert texts == ["reply 2 to hi", "reply 1 to hi"]  # each exactly once


def test_a_refusal_for_good_is_kept_but_not_retried(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    bot = chatty(start_bot)
    fake_telegram.fail_next(status=403)  # "bot was blocked by the user": no retry helps
    post_telegram(bot, telegram_update(1, "hi", user_id=5))
    first = query(database_url, OUTBOX)[0]
    assert first["gave_up_at"] is not None and first["attempts"] == 1
    assert "HTTP 403" in first["last_error"]
    age_outbox(database_url)
    assert deliver(tmp_path, database_url, fake_telegram).startswith("sent 0, failed 0; 0 waiting")


def test_a_later_request_sends_what_was_left(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = chatty(start_bot, outbox_retry_seconds=0)
    fake_telegram.fail_next(status=500, times=3)
    post_telegram(bot, telegram_update(1, "one", user_id=5))
    age_outbox(database_url)
    post_telegram(bot, telegram_update(2, "two", user_id=5))
    texts = [p["text"] for p in fake_telegram.sent()]
    assert texts == ["reply 2 to one", "reply 1 to two", "reply 2 to two", "reply 1 to one"]
    assert all(row["sent_at"] is not None for row in query(database_url, OUTBOX))


def test_concurrent_senders_never_send_a_reply_twice(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    async def scenario() -> None:
        db = Database(database_url, pool_size=4)
        async with db.transaction() as conn:
            await add_to_outbox(
                # Each to a chat of its own: one chat takes one a second (after a short burst).
                conn,
                [Delivery("telegram", str(70 + i), f"n{i}", f"u:{i}") for i in range(30)],
                0.0,
            )
        senders = [Outbound(db, {c.platform: c for c in platform_channels(settings)}) for _ in "ab"]
        # Six batches of 7 at once: enough for all 30, if no two take the same reply.
        await asyncio.gather(*(s.deliver_due(limit=7) for s in senders for _ in range(3)))
        assert await claim_due(db, 10**10, 100) == []
        for sender in senders:
            await sender.close()
        await db.close()

    run(scenario())
    texts = [p["text"] for p in fake_telegram.sent()]
    assert sorted(texts) == sorted(f"n{i}" for i in range(30))


class Slow(State):
    """Holds each message until the impatient client below has left and the server has closed
    its connection."""

    name = "slow"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.left = threading.Event()

    async def handle(self, ctx: Context, message: Message) -> None:
        self.started.set()
        async with asyncio.timeout(30):
            while not self.left.is_set():
                await asyncio.sleep(0.01)
        ctx.reply(f"slow reply to {message.text}")
        return None


def test_a_reply_is_sent_through_the_api_when_telegram_stopped_waiting(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    slow = Slow()
    bot = start_bot(flow=Flow([slow], initial="slow"))
    url = urlsplit(str(bot.base_url))
    body = json.dumps(telegram_update(1, "hi", user_id=5)).encode()
    with socket.create_connection((url.hostname, url.port)) as impatient:
        impatient.sendall(
            b"POST /webhooks/telegram HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            + f"X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # Telegram gives up and closes the connection while the update is being handled.
        assert slow.started.wait(30), "the update never reached the flow"
        impatient.shutdown(socket.SHUT_WR)
        impatient.settimeout(30)
        assert impatient.recv(1) == b"", "the server answered before the flow did"
        # The server closed its side: it has seen the client go.
    slow.left.set()
    deadline = time.monotonic() + 10
    while not fake_telegram.sent() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake_telegram.sent() == [{"chat_id": 5, "text": "slow reply to hi"}]
    [row] = query(database_url, OUTBOX)
    assert row["sent_at"] is not None
    # Its re-delivery is a duplicate: acknowledged, and the reply is not sent again.
    assert post_telegram(bot, telegram_update(1, "hi", user_id=5)).content == b""
    assert len(fake_telegram.sent()) == 1
