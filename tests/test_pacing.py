"""Rate limits that hold across workers (issue 15): every send through a platform's API takes a
time in schedules kept in the database, so that however many senders there are, the fakes that
enforce Telegram's and VK's limits never answer 429; a 429 still comes, it pauses every sender."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from portabot.channels import platform_channels
from portabot.channels.telegram import BOT_PER_SECOND, CHAT_BURST, GROUP_INTERVAL
from portabot.messages import Delivery
from portabot.outbound import REPLY_BUDGET, Outbound
from portabot.settings import Settings
from portabot.storage.database import Database
from portabot.storage.outbox import add_to_outbox
from portabot.storage.pacing import Pace, hold, reserve
from portabot.testing.fakes import FakeTelegram, FakeVk, TelegramLimits, VkLimits, busiest
from tests.conftest import TOKEN, VK_TOKEN, query, run

OUTBOX = "SELECT id, sent_at, attempts, due_at, last_error FROM outbox ORDER BY id"


def store(database_url: str, deliveries: list[Delivery]) -> None:
    async def add() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                await add_to_outbox(conn, deliveries, time.time(), leased=False)
        finally:
            await db.close()

    run(add())


async def drain(database_url: str, settings: Settings) -> None:
    """One sender (a worker, a dyno, a `portabot deliver`) sends what is due."""
    db = Database(database_url, pool_size=1)
    outbound = Outbound(db, {c.platform: c for c in platform_channels(settings, db)})
    try:
        await outbound.deliver_all_due()
    finally:
        await outbound.close()
        await db.close()


# The fakes enforce the limits (when asked: off, they take anything).


def test_the_fake_telegram_refuses_what_goes_beyond_its_limits(fake_telegram: FakeTelegram) -> None:
    api = f"{fake_telegram.url}/bot{TOKEN}/sendMessage"
    with httpx.Client() as client:

        def send(chat: int) -> httpx.Response:
            return client.post(api, json={"chat_id": chat, "text": "hi"})

        assert all(send(7).status_code == 200 for _ in range(10))  # off by default
        fake_telegram.limits = TelegramLimits(per_second=1000)  # one limit at a time
        answers = [send(8).status_code for _ in range(7)]
        assert answers == [200] * 5 + [429] * 2  # one chat: a burst of 5, then one a second
        refusal = send(8).json()
        assert refusal["error_code"] == 429 and refusal["parameters"]["retry_after"] >= 1
        answers = [send(-100 - i % 2).status_code for i in range(44)]
        assert answers.count(429) == 4  # a group: 20 a minute
        fake_telegram.limits = TelegramLimits()
        fake_telegram.send_times.clear()
        answers = [send(1000 + i).status_code for i in range(35)]
        assert answers.count(200) == 30 and answers[30:] == [429] * 5  # the bot: 30 a second
    assert len(fake_telegram.throttled) == 2 + 1 + 4 + 5
    assert fake_telegram.fastest_second() == 30


def test_the_fake_vk_refuses_what_goes_beyond_its_limit(fake_vk: FakeVk) -> None:
    fake_vk.limits = VkLimits()
    with httpx.Client() as client:
        answers = [
            client.post(
                f"{fake_vk.url}/messages.send",
                data={"access_token": VK_TOKEN, "peer_id": str(i), "message": "hi"},
            ).json()
            for i in range(25)
        ]
    assert [a.get("error", {}).get("error_code") for a in answers[20:]] == [6] * 5
    assert fake_vk.fastest_second() == 20 and len(fake_vk.throttled) == 5


# The schedules themselves: what the reservations give, without waiting for any of it.


def test_reservations_keep_each_scope_to_its_pace(database_url: str) -> None:
    bot = Pace("telegram:1", 1 / BOT_PER_SECOND)
    group = Pace("telegram:1:-100", GROUP_INTERVAL)
    chat = Pace("telegram:1:42", 1.0, CHAT_BURST)

    async def scenario() -> tuple[list[float], list[float], list[float], bool]:
        db = Database(database_url, pool_size=2)
        now = 1_000_000.0  # every reservation asked at once, as by many workers
        try:
            to_group = [(await reserve(db, [bot, group], now, now + 1e6)).at for _ in range(30)]
            to_many = [(await reserve(db, [bot], now, now + 1e6)).at for _ in range(100)]
            to_chat = [(await reserve(db, [bot, chat], now, now + 1e6)).at for _ in range(6)]
            beyond = await reserve(db, [chat], now, now + 1)
        finally:
            await db.close()
        return to_group, to_many, to_chat, beyond.taken

    to_group, to_many, to_chat, taken = run(scenario())
    assert busiest(to_group, 60.0) <= 18  # Telegram's 20 a minute, with room to spare
    assert busiest(sorted(to_group + to_many)) <= 26  # the bot's 30 a second, likewise
    first = to_chat[0]
    assert [round(at - first, 6) for at in to_chat] == [0.0, 0.04, 0.08, 1.0, 2.0, 3.0]
    assert not taken  # the chat's next time is past the limit: nothing reserved
    (row,) = query(database_url, "SELECT next_at FROM pace WHERE scope = 'telegram:1:42'")
    assert row["next_at"] == pytest.approx(first + 4.0 + 2.0)  # from first + 4, 2 s of burst


def test_many_replies_to_one_chat_are_spaced_without_a_429(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    fake_telegram.limits = TelegramLimits()
    store(database_url, [Delivery("telegram", "42", f"part {i}", f"k:{i}") for i in range(7)])
    run(drain(database_url, settings))
    assert [p["text"] for p in fake_telegram.sent()] == [f"part {i}" for i in range(7)]
    assert fake_telegram.throttled == []
    times = [call.at for call in fake_telegram.calls]
    # A burst of three, then one a second (each waits for its time, however fast the machine).
    assert all(times[i] - times[0] >= i - 2 - 0.1 for i in range(3, 7))


def test_a_group_gets_one_message_every_few_seconds(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    fake_telegram.limits = TelegramLimits()
    store(database_url, [Delivery("telegram", "-1001", f"news {i}", f"g:{i}") for i in range(3)])
    run(drain(database_url, settings))
    assert len(fake_telegram.sent()) == 3 and fake_telegram.throttled == []
    first, second, third = (call.at for call in fake_telegram.calls)
    assert second - first >= GROUP_INTERVAL - 0.1 and third - second >= GROUP_INTERVAL - 0.1


def test_workers_sending_at_once_keep_the_bots_rate(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    fake_telegram.limits = TelegramLimits()
    store(database_url, [Delivery("telegram", str(500 + i), f"n{i}", f"w:{i}") for i in range(90)])

    async def three_workers() -> None:
        await asyncio.gather(*(drain(database_url, settings) for _ in range(3)))

    run(three_workers())
    assert sorted(p["text"] for p in fake_telegram.sent()) == sorted(f"n{i}" for i in range(90))
    assert fake_telegram.throttled == [] and fake_telegram.fastest_second() < 30


def test_a_429_pauses_every_worker(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    """Telegram's flood 429 comes to one worker; the other, about to send to another chat,
    waits out the retry_after too (the pause is in the shared schedule, not in one process)."""
    fake_telegram.fail_next(status=429, retry_after=2)
    store(database_url, [Delivery("telegram", "1", "first", "p:1")])

    async def scenario() -> None:
        first = asyncio.create_task(drain(database_url, settings))
        async with asyncio.timeout(10):
            while not fake_telegram.failed:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(store, database_url, [Delivery("telegram", "2", "second", "p:2")])
        await asyncio.gather(first, drain(database_url, settings))

    run(scenario())
    refused_at = fake_telegram.failed[0].at
    assert sorted(p["text"] for p in fake_telegram.sent()) == ["first", "second"]
    assert all(call.at >= refused_at + 2 - 0.05 for call in fake_telegram.calls)
    assert [row["attempts"] for row in query(database_url, OUTBOX)] == [1, 1]


def test_a_send_time_past_the_webhooks_budget_leaves_the_reply_due_then(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    """A webhook request has REPLY_BUDGET seconds for its replies: when the schedule has no
    time for one before then, it is not sent (nor counted as a failed try) but left due then."""
    paused_until = time.time() + 30

    async def scenario() -> None:
        db = Database(database_url, pool_size=1)
        outbound = Outbound(db, {c.platform: c for c in platform_channels(settings, db)})
        channel = outbound.channels["telegram"]
        delivery = Delivery("telegram", "9", "later", "d:1")
        await hold(db, channel.paces(delivery)[:1], paused_until)  # the bot's schedule
        async with db.transaction() as conn:
            stored = await add_to_outbox(conn, [delivery], time.time())
        try:
            assert await outbound.deliver(stored, deadline=time.monotonic() + REPLY_BUDGET) == (
                0,
                0,
            )
        finally:
            await outbound.close()
            await db.close()

    run(scenario())
    assert fake_telegram.calls == []
    (row,) = query(database_url, OUTBOX)
    assert row["sent_at"] is None and row["attempts"] == 0 and row["last_error"] is None
    assert abs(row["due_at"] - paused_until) < 0.01


def test_vk_sends_keep_the_communitys_limit(
    database_url: str, fake_vk: FakeVk, settings: Settings
) -> None:
    fake_vk.limits = VkLimits()
    store(database_url, [Delivery("vk", str(3000 + i), f"v{i}", f"v:{i}") for i in range(40)])

    async def two_workers() -> None:
        await asyncio.gather(drain(database_url, settings), drain(database_url, settings))

    run(two_workers())
    assert sorted(text for _, text in fake_vk.texts()) == sorted(f"v{i}" for i in range(40))
    assert fake_vk.throttled == [] and fake_vk.fastest_second() <= 20


def test_without_pacing_nothing_is_reserved(
    database_url: str, fake_telegram: FakeTelegram, settings: Settings
) -> None:
    """SEND_PACING=off, for an API with no limits: sends go at once, and no schedule is kept."""
    store(database_url, [Delivery("telegram", "42", f"quick {i}", f"q:{i}") for i in range(6)])

    async def unpaced() -> None:
        db = Database(database_url, pool_size=1)
        channels = {c.platform: c for c in platform_channels(settings, db)}
        outbound = Outbound(db, channels, paced=False)
        try:
            assert await outbound.deliver_all_due() == (6, 0)
        finally:
            await outbound.close()
            await db.close()

    run(unpaced())
    assert len(fake_telegram.sent()) == 6
    assert query(database_url, "SELECT count(*) AS n FROM pace") == [{"n": 0}]
