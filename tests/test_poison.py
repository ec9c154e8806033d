"""A flow that fails on one message: the platform gets 503 and delivers it again, and after three
failures the update is acknowledged and left in failed_updates, while everything else goes on."""

from __future__ import annotations

from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Message
from portabot.webhooks import MAX_FAILURES
from tests.conftest import (
    BotFactory,
    post_telegram,
    post_vk,
    query,
    telegram_update,
    vk_event,
)


class Fragile(State):
    name = "fragile"

    async def handle(self, ctx: Context, message: Message) -> None:
        if message.text == "boom":
            raise ValueError("the flow cannot take this")
        ctx.data["count"] = ctx.data.get("count", 0) + 1
        ctx.reply(f"message {ctx.data['count']}")
        return None


def test_a_message_the_flow_fails_on_is_given_up_after_three_deliveries(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot(Flow([Fragile()], initial="fragile"))
    poison = telegram_update(2, "boom")
    assert post_telegram(bot, telegram_update(1, "hi")).json()["text"] == "message 1"
    statuses = [post_telegram(bot, poison).status_code for _ in range(MAX_FAILURES)]
    assert statuses == [503] * (MAX_FAILURES - 1) + [200]
    # Given up: a further delivery is a duplicate, and the next message goes on from where it was.
    assert post_telegram(bot, poison).content == b""
    assert post_telegram(bot, telegram_update(3, "hi")).json()["text"] == "message 2"
    [failed] = query(database_url, "SELECT * FROM failed_updates")
    assert (failed["platform"], failed["update_id"], failed["attempts"]) == ("telegram", "2", 3)
    assert failed["error"] == "ValueError: the flow cannot take this"


def test_vk_hears_ok_once_an_event_is_given_up(start_bot: BotFactory, database_url: str) -> None:
    bot = start_bot(Flow([Fragile()], initial="fragile"))
    answers = [post_vk(bot, vk_event("e1", "boom")) for _ in range(MAX_FAILURES + 1)]
    assert [a.status_code for a in answers] == [503] * (MAX_FAILURES - 1) + [200, 200]
    assert answers[-1].text == answers[-2].text == "ok"
    assert query(database_url, "SELECT update_id FROM updates") == [{"update_id": "e1"}]


def test_a_failure_that_succeeds_on_a_later_delivery_is_processed_once(
    start_bot: BotFactory, database_url: str
) -> None:
    attempts = []

    class Flaky(State):
        name = "flaky"

        async def handle(self, ctx: Context, message: Message) -> None:
            attempts.append(message.text)
            if len(attempts) == 1:
                raise RuntimeError("once")
            ctx.reply("done")
            return None

    bot = start_bot(Flow([Flaky()], initial="flaky"))
    assert post_telegram(bot, telegram_update(9, "x")).status_code == 503
    assert post_telegram(bot, telegram_update(9, "x")).json()["text"] == "done"
    assert post_telegram(bot, telegram_update(9, "x")).content == b""
    assert len(attempts) == 2
    [failed] = query(database_url, "SELECT attempts FROM failed_updates")
    assert failed["attempts"] == 1
