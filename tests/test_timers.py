"""Timers (issue 15): a flow asks to be woken later (`ctx.wake`) or to have a reply sent later
(`ctx.later`); what is due runs once, in the chat that asked, however many runners tick at once
and however often the update that set it is delivered."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest

from examples.reminders import flow as reminders
from portabot import Context, Flow, Linking, Message, ReplyError, State, command, timer
from portabot.bot import Bot
from portabot.jobs import run_due
from portabot.settings import Settings
from portabot.storage.inbox import collect_inbox
from portabot.testing import Harness
from portabot.testing.fakes import FakeTelegram
from tests.conftest import BotFactory, post_telegram, query, run, telegram_update
from tests.test_linking import code_from


def test_a_reminder_fires_once_after_its_time() -> None:
    with Harness(reminders) as bot:
        ann = bot.person("telegram")
        assert ann.say("/remind 2 tea") == ["I'll remind you of “tea” in 2 min."]
        assert bot.advance(119) == []
        assert bot.advance(2) == ["⏰ tea"]
        assert bot.advance(3600) == []
        assert ann.conversation.data["last"] == "tea"


def test_asking_again_with_a_key_replaces_the_timer_and_cancel_drops_it() -> None:
    with Harness(reminders) as bot:
        ann = bot.person("telegram")
        ann.say("/remind 2 tea")
        ann.say("/remind 5 tea")  # the same key: moved, not doubled
        ann.say("/remind 3 call mum")
        assert bot.advance(150) == []
        assert bot.advance(60) == ["⏰ call mum"]
        assert bot.advance(120) == ["⏰ tea"]
        ann.say("/remind 1 stretch")
        assert ann.say("/forget stretch") == ["No more reminders of “stretch”."]
        assert bot.advance(120) == []


def test_a_timer_set_by_the_timers_own_step_fires_again() -> None:
    with Harness(reminders) as bot:
        ann = bot.person("vk")
        ann.say("/remind 1 tea")
        assert bot.advance(60) == ["⏰ tea"]
        assert ann.say("/snooze") == ["Again in 5 min."]
        assert bot.advance(300) == ["⏰ tea"]


class Waiting(State):
    @command("later")
    def later(self, ctx: Context, message: Message) -> None:
        ctx.reply("In a minute.")
        ctx.later("A minute has passed.", after=timedelta(minutes=1), key="minute")

    @command("never")
    def never(self, ctx: Context, message: Message) -> None:
        ctx.cancel("minute")

    @command("at")
    def at(self, ctx: Context, message: Message) -> None:
        ctx.wake("noon", at=datetime.fromisoformat(message.args))

    @command("bad")
    def bad(self, ctx: Context, message: Message) -> None:
        arguments = {
            "negative": {"after": -1},
            "both": {"after": 1, "at": 5.0},
            "naive": {"at": datetime(2030, 1, 1)},
            "far": {"after": 400 * 86_400},
        }
        if message.args in arguments:
            ctx.wake("noon", **arguments[message.args])  # type: ignore[arg-type]
        elif message.args == "data":
            ctx.wake("noon", after=1, data={"when": datetime(2030, 1, 1)})
        else:
            ctx.wake("Noon!", after=1)

    @timer("noon")
    def noon(self, ctx: Context, message: Message) -> None:
        ctx.reply("It is noon.")


def test_a_reply_sent_later_goes_once_and_can_be_cancelled() -> None:
    with Harness(Flow([Waiting])) as bot:
        ann = bot.person("telegram")
        assert ann.say("/later") == ["In a minute."]
        assert bot.advance(61) == ["A minute has passed."]
        assert bot.advance(61) == []
        ann.say("/later")
        ann.say("/never")
        assert bot.advance(61) == []


def test_a_time_given_as_a_datetime_and_one_past_is_due_at_once() -> None:
    with Harness(Flow([Waiting])) as bot:
        ann = bot.person("telegram")
        ann.say("/at 2026-01-01T00:30:00+00:00")  # the harness starts at midnight
        assert bot.advance(29 * 60) == []
        assert bot.advance(60) == ["It is noon."]
        ann.say("/at 2020-01-01T00:00:00+00:00")
        assert bot.tick() == ["It is noon."]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("negative", "after= is 0 to"),
        ("both", "give one of at="),
        ("naive", "aware datetime"),
        ("far", "after= is 0 to"),
        ("data", "timer 'noon': data.'when'.: a datetime does not survive JSON"),
        ("name", "timer name 'Noon!'"),
    ],
)
def test_a_timer_asked_for_wrongly_fails_the_step_naming_what(args: str, says: str) -> None:
    with Harness(Flow([Waiting])) as bot, pytest.raises((ReplyError, ValueError), match=says):
        bot.person("telegram").say(f"/bad {args}")


def test_a_web_visitors_timer_waits_in_their_inbox() -> None:
    with Harness(reminders) as bot:
        visitor = bot.person("web")
        visitor.say("/remind 1 tea")
        assert bot.advance(60) == ["⏰ tea"]
        inbox = bot.run(_collect(bot, visitor.account.user_id))
        assert inbox == ["⏰ tea"]


async def _collect(bot: Harness, user_id: str) -> list[str]:
    return [d.text for d in await collect_inbox(bot.bot.db, user_id)]


def test_timers_follow_the_person_when_accounts_are_linked() -> None:
    flow = Flow([*reminders.states.values()], features=[Linking()])
    with Harness(flow) as bot:
        ann_telegram, ann_vk = bot.person("telegram"), bot.person("vk")
        ann_telegram.say("/remind 2 tea")
        ann_vk.say("/remind 3 tea")  # her VK self's own, of the same key
        ann_vk.say("/remind 4 cake")
        code = code_from(ann_vk.say("/bind")[0])
        ann_telegram.say(f"/in {code}")
        # The kept person's timer of a key stays; the absorbed one's others move over.
        fired = bot.advance(120) + bot.advance(120)
        assert sorted(fired) == ["⏰ cake", "⏰ tea"]
        assert bot.advance(3600) == []


def test_a_timer_through_the_webhook_fires_once_with_two_ticks_at_once(
    start_bot: BotFactory, fake_telegram: FakeTelegram, settings: Settings, database_url: str
) -> None:
    """The real app stores the timer; the update delivered again stores nothing more; two
    runners (two processes' worth: their own connections) tick at once when it is due."""
    client: httpx.Client = start_bot(reminders)
    update = telegram_update(501, "/remind 2 tea", user_id=1001)
    for _ in range(3):
        assert post_telegram(client, update).status_code == 200
    jobs = query(database_url, "SELECT due_at, created_at FROM jobs")
    assert len(jobs) == 1 and jobs[0]["due_at"] == pytest.approx(jobs[0]["created_at"] + 120)
    assert run(_tick_twice(settings)) == [[], []]  # not due yet: nothing fired
    query(database_url, "UPDATE jobs SET due_at = due_at - 121")  # two minutes pass
    fired = run(_tick_twice(settings))
    assert sorted(fired) == [[], ["timers: 1 fired; replies sent later: 0"]]
    texts = [m.text or "" for m in fake_telegram.messages(1001)]
    assert [text for text in texts if text.startswith("⏰")] == ["⏰ tea"]
    assert query(database_url, "SELECT count(*) AS n FROM jobs") == [{"n": 0}]
    assert run(_tick_twice(settings)) == [[], []]


async def _tick_twice(settings: Settings) -> list[list[str]]:
    """Two runners at once, each with its own database connections; the lines that say
    something fired."""
    bots = [Bot(settings, reminders), Bot(settings, reminders)]
    try:
        lines = await asyncio.gather(*(run_due(bot) for bot in bots))
    finally:
        for bot in bots:
            await bot.close()
    return [
        [line for line in found if line.startswith("timers: ") and " 0 fired" not in line]
        for found in lines
    ]


def test_a_linked_person_is_reminded_in_the_chat_that_asked(
    start_bot: BotFactory, fake_telegram: FakeTelegram, settings: Settings, database_url: str
) -> None:
    """A timer set in a group answers in that group, not in the person's private chat."""
    client = start_bot(reminders)
    group = telegram_update(601, "/remind 1 standup", user_id=1001, chat_id=-500, chat_type="group")
    assert post_telegram(client, group).status_code == 200
    query(database_url, "UPDATE jobs SET due_at = due_at - 61")
    run(_tick_twice(settings))
    assert [m.text for m in fake_telegram.messages(-500)][-1] == "⏰ standup"
    assert not [m for m in fake_telegram.messages(1001) if (m.text or "").startswith("⏰")]
