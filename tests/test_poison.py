"""A flow that fails on one message: the platform gets 503 and delivers it again, and after three
failures the update is acknowledged and left in failed_updates, and the person is told, while
everything else goes on. The web chat, which nobody re-delivers, gives up at the first failure."""

from __future__ import annotations

from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Message
from portabot.pipeline import MAX_FAILURES
from portabot.testing.fakes import FakeVk
from tests.conftest import (
    BotFactory,
    post_telegram,
    post_vk,
    query,
    say_web,
    telegram_update,
    vk_event,
)

SORRY = "The flow stumbled; try something else."


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
    bot = start_bot(Flow([Fragile()], initial="fragile", failure_text=SORRY))
    poison = telegram_update(2, "boom")
    assert post_telegram(bot, telegram_update(1, "hi")).json()["text"] == "message 1"
    answers = [post_telegram(bot, poison) for _ in range(MAX_FAILURES)]
    assert [a.status_code for a in answers] == [503] * (MAX_FAILURES - 1) + [200]
    assert answers[-1].json()["text"] == SORRY  # in the response's one slot
    # Given up: a further delivery is a duplicate, and the next message goes on from where it was.
    assert post_telegram(bot, poison).content == b""
    assert post_telegram(bot, telegram_update(3, "hi")).json()["text"] == "message 2"
    [failed] = query(database_url, "SELECT * FROM failed_updates")
    assert (failed["platform"], failed["update_id"], failed["attempts"]) == ("telegram", "2", 3)
    assert failed["error"] == "ValueError: the flow cannot take this"


def test_vk_hears_ok_once_an_event_is_given_up(
    start_bot: BotFactory, database_url: str, fake_vk: FakeVk
) -> None:
    bot = start_bot(Flow([Fragile()], initial="fragile"))
    answers = [post_vk(bot, vk_event("e1", "boom")) for _ in range(MAX_FAILURES + 1)]
    assert [a.status_code for a in answers] == [503] * (MAX_FAILURES - 1) + [200, 200]
    assert answers[-1].text == answers[-2].text == "ok"
    assert query(database_url, "SELECT update_id FROM updates") == [{"update_id": "e1"}]
    # The person hears once that it went wrong, in the flow's default words.
    [(_, sorry)] = fake_vk.texts()
    assert sorry == Flow([Fragile()]).failure_text


def test_the_web_chat_answers_a_failure_at_once(start_bot: BotFactory, database_url: str) -> None:
    bot = start_bot(Flow([Fragile()], initial="fragile", failure_text=SORRY))
    assert say_web(bot, "boom") == [SORRY]
    assert say_web(bot, "hi") == ["message 1"]
    [failed] = query(database_url, "SELECT platform, attempts FROM failed_updates")
    assert (failed["platform"], failed["attempts"]) == ("web", 1)


def test_an_empty_failure_text_sends_nothing(start_bot: BotFactory) -> None:
    bot = start_bot(Flow([Fragile()], initial="fragile", failure_text=""))
    assert say_web(bot, "boom") == []


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
