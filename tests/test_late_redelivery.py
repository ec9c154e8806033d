"""Telegram delivers an update again only when our answer never reached it. A copy that comes
later than RESEND_AFTER carries the reply the first answer carried, once; a copy that comes
while the first may still answer carries nothing. A reply whose platform hung up before it was
ready goes through the API at once instead."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from portabot import Context, Flow, Message, State
from portabot.pipeline import RESEND_AFTER
from portabot.testing.fakes import FakeTelegram
from tests.conftest import (
    SECRET,
    BotFactory,
    post_telegram,
    post_vk,
    query,
    telegram_update,
    vk_event,
)


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


class Slow(State):
    """Answers once the test lets it (`released`), having said it started (`started`)."""

    started = threading.Event()
    released = threading.Event()

    async def handle(self, ctx: Context, message: Message) -> None:
        type(self).started.set()
        # Waited for in a thread: the server's loop goes on meanwhile and sees the hang-up.
        assert await asyncio.to_thread(type(self).released.wait, 30), "never released"
        ctx.reply(f"Late answer to {message.text}")


def connections(port: int) -> set[tuple[str, str]]:
    """The loopback TCP sockets on `port` the kernel knows, with their states (/proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if int(local.rpartition(":")[2], 16) == port:
            found.add((remote, state))
    return found


ESTABLISHED, CLOSE_WAIT = "01", "08"


def test_a_reply_the_platform_hung_up_on_goes_through_the_api(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    Slow.started.clear()
    Slow.released.clear()
    port = urlsplit(str(start_bot(Flow([Slow])).base_url)).port
    assert port is not None
    body = json.dumps(telegram_update(7, "ping")).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /webhooks/telegram HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert Slow.started.wait(30)
    # Hung up while the step runs: wait until the server has seen it (its socket closed).
    deadline = time.monotonic() + 30
    while any(state in (ESTABLISHED, CLOSE_WAIT) for _, state in connections(port)):
        assert time.monotonic() < deadline, connections(port)
        time.sleep(0.01)
    Slow.released.set()
    while not fake_telegram.calls:
        assert time.monotonic() < deadline, "the reply never reached the API"
        time.sleep(0.01)
    [call] = fake_telegram.calls
    assert (call.method, call.payload["text"]) == ("sendMessage", "Late answer to ping")
    # Not kept for a re-delivery too: it went once.
    assert query(database_url, "SELECT count(*) AS n FROM inline_replies") == [{"n": 0}]
