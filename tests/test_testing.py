"""portabot.testing's Harness: what a bot author's test sees is what the server does."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Message
from portabot.storage.outbox import count_due
from portabot.testing import Harness

FAR_FUTURE = 10**12


class Address(State):
    """Not in the flow."""


class Counting(State):
    """Counts what it is told, and misbehaves on request."""

    name = "counting"

    async def handle(self, ctx: Context, message: Message) -> type[State] | None:
        ctx.data["count"] = ctx.data.get("count", 0) + 1
        if message.command == "three":
            for n in (1, 2, 3):
                ctx.reply(f"reply {n}")
        elif message.command == "time":
            ctx.reply(f"{ctx.now:.0f}")
        elif message.text == "move":
            return Address  # forgotten in Flow([...])
        else:
            ctx.reply(f"message {ctx.data['count']}")
        return None


COUNTING = Flow([Counting()], "counting")


def test_every_reply_comes_back_in_order_and_none_is_left_to_send() -> None:
    with Harness(COUNTING) as bot:
        for platform in ("telegram", "vk", "web"):  # one reply inline, none, all of them
            assert bot.person(platform).say("/three") == ["reply 1", "reply 2", "reply 3"]
        assert bot.run(count_due(bot.bot.db, FAR_FUTURE)) == 0


def test_state_is_read_back_from_the_database() -> None:
    with Harness(COUNTING) as bot:
        ann = bot.person("telegram", 1)
        assert ann.conversation.state is None and ann.platforms == ()
        ann.say("hello")
        ann.say("again")
        assert ann.conversation.state == "counting"
        assert ann.conversation.data == {"count": 2}
        assert bot.person("telegram", 1).conversation.data == {"count": 2}  # the same account
        assert bot.person("telegram", 2).conversation.data == {}


def test_a_redelivery_is_a_duplicate() -> None:
    with Harness(COUNTING) as bot:
        ann, bob = bot.person("telegram"), bot.person("vk")
        assert ann.say("hello") == ["message 1"]
        assert bob.say("hello") == ["message 1"]
        assert ann.redeliver() == [] and bob.redeliver() == []
        # Much later, Telegram's copy proves that the answer in the response never arrived.
        bot.advance(60)
        assert ann.redeliver() == ["message 1"]
        assert bob.redeliver() == []
        assert ann.conversation.data == bob.conversation.data == {"count": 1}


def test_time_moves_for_the_flow_and_for_storage() -> None:
    with Harness(COUNTING, start=1000.0) as bot:
        ann = bot.person("web")
        assert ann.say("/time") == ["1000"]
        bot.advance(3600)
        assert ann.say("/time") == ["4600"]
    with Harness() as bot:  # the built-in bot's link codes expire after ten minutes
        ann, bob = bot.person("telegram"), bot.person("vk")
        ann.say("/bind")
        bot.advance(601)
        assert "expired" in bob.say(f"/in {ann.conversation.data['code']}")[0]
        assert bob.platforms == ("vk",)
    with pytest.raises(ValueError, match="forward only"):
        Harness().advance(-1)


def test_several_people_on_several_platforms_become_one() -> None:
    with Harness() as bot:
        ann, bob, cat = bot.person("telegram", 1), bot.person("vk", 1), bot.person("web")
        ann.say("/bind")
        assert bob.say(f"/in {ann.conversation.data['code']}") == [
            "Linked! Your platforms: telegram, vk."
        ]
        bob.say("/bind")
        cat.say(f"/in {bob.conversation.data['code']}")
        assert ann.platforms == bob.platforms == cat.platforms == ("telegram", "vk", "web")
        assert ann.say("/me") == ["Linked platforms: telegram, vk, web."]


def test_a_flow_error_is_raised_in_the_test_and_changes_nothing() -> None:
    with Harness(COUNTING) as bot:
        ann = bot.person("telegram")
        ann.say("hello")
        with pytest.raises(ValueError, match="moved to Address, which is not in the flow"):
            ann.say("move")
        with pytest.raises(ValueError, match="moved to Address, which is not in the flow"):
            ann.redeliver()  # not recorded as processed: the platform's retry fails again
        assert ann.conversation.data == {"count": 1}


def test_settings_are_the_given_ones_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_PASSPHRASE", "from the environment")
    with Harness() as bot:
        assert "/bind" in bot.person("telegram").say("/help")[0]
    with Harness(bot_passphrase="Open Sesame") as bot:
        ann = bot.person("telegram")
        assert "passphrase" in ann.say("/help")[0]
        assert "welcome" in ann.say("open sesame")[0]


def test_a_misspelt_setting_is_refused_with_the_name_it_resembles() -> None:
    with pytest.raises(TypeError, match=r"'bot_pasphrase'.*did you mean 'bot_passphrase'\?"):
        Harness(bot_pasphrase="Open Sesame")
    with pytest.raises(TypeError, match=r"'colour' \(settings go by their names"):
        Harness(colour="blue")


def test_the_database_is_migrated_and_removed() -> None:
    with Harness(COUNTING) as bot:
        path = Path(sa.engine.make_url(bot.bot.settings.database_url).database or "")
        assert path.is_file()
        bot.person("web").say("hi")
    assert not path.parent.exists()


def test_mistakes_in_using_it_are_named() -> None:
    with pytest.raises(ValueError, match="database_url"):
        Harness(COUNTING, database_url="sqlite:///mine.db")
    with Harness(COUNTING, web_chat=False) as bot, pytest.raises(ValueError, match="'web'"):
        bot.person("web")
    with pytest.raises(RuntimeError, match="with"):
        Harness(COUNTING).person("web")


def test_presses_and_other_kinds_come_back_with_what_rode_with_them() -> None:
    from portabot import Attachment, Button, Kind
    from portabot.features.linking import BIND, CANCEL

    with Harness() as bot:  # the built-in bot
        ann = bot.person("telegram")
        assert ann.send(Kind.JOINED) == ["Hello! Send /help to see what I can do."]
        photo = Attachment(Kind.PHOTO, file_id="AgAC")
        assert ann.send(Kind.PHOTO, attachments=[photo]) == ["Send /help to see what I can do."]
        helped = ann.say("/help")
        assert helped.notice is None and helped.edited == [False]
        assert helped.buttons[0] == Button("Link another account", BIND)
        issued = ann.press(BIND)
        assert issued.notice is None and issued.edited == [False]  # answered, without a notice
        assert issued.buttons == [Button("Cancel", CANCEL)]
        assert ann.press(CANCEL).edited == [True]
        with pytest.raises(ValueError, match="use say"):
            ann.send(Kind.COMMAND, "/help")
