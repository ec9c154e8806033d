"""Messages to a person rather than to the chat that wrote (issue 15): `ctx.tell` from a flow and
`portabot notify` from an operator reach every platform the person linked (Telegram and VK in
the private chat, the web chat in the inbox), each once, however often the update comes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from portabot import Context, Flow, Linking, Message, ReplyError, State, command
from portabot.storage.database import Database
from portabot.storage.inbox import collect_inbox
from portabot.telling import TellError
from portabot.testing import Harness
from portabot.testing.fakes import FakeTelegram, FakeVk
from tests.conftest import (
    SECRET,
    TOKEN,
    VK_GROUP,
    VK_SECRET,
    VK_TOKEN,
    BotFactory,
    post_telegram,
    query,
    run,
    say_web,
    telegram_update,
)
from tests.test_cli import portabot
from tests.test_linking import code_from, telegram_says, vk_says

ANN_TELEGRAM, ANN_VK, BOB_TELEGRAM = 1001, 3001, 2002


class Idle(State):
    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"You said {message.text}")


@command("tellme")
def tell_me(ctx: Context, message: Message) -> None:
    ctx.reply("Telling you everywhere")
    ctx.tell("Told you: ", message.args or "hello")


@command("tellvk")
def tell_vk(ctx: Context, message: Message) -> None:
    ctx.tell("Only on VK", platforms=["vk"])


@command("tell")
def tell_other(ctx: Context, message: Message) -> None:
    person, _, text = message.args.partition(" ")
    ctx.tell(text, person=int(person))


def telling_flow() -> Flow:
    return Flow([Idle], routes=[tell_me, tell_vk, tell_other], features=[Linking()])


def link_everywhere(bot: httpx.Client, fake_vk: FakeVk, database_url: str) -> str:
    """Ann on Telegram, VK and the web chat, one person; returns her web visitor id. The fake
    VK forgets what it sent while linking."""
    code = code_from(vk_says(bot, fake_vk, "link-1", "/bind", user_id=ANN_VK))
    assert "Linked!" in telegram_says(bot, 9001, f"/in {code}", user_id=ANN_TELEGRAM)
    code = code_from(telegram_says(bot, 9002, "/bind", user_id=ANN_TELEGRAM))
    assert say_web(bot, f"/in {code}") == ["Linked! Your platforms: telegram, vk, web."]
    rows = query(database_url, "SELECT user_id FROM accounts WHERE platform = 'web'")
    assert len(rows) == 1
    fake_vk.reset()
    return str(rows[0]["user_id"])


def person_id(database_url: str, platform: str, user_id: int | str) -> int:
    rows = query(
        database_url,
        f"SELECT person_id FROM accounts WHERE platform = '{platform}' AND user_id = '{user_id}'",
    )
    return int(rows[0]["person_id"])


def telegram_texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [str(p["text"]) for p in fake.sent() if str(p["chat_id"]) == str(chat_id)]


def vk_texts(fake: FakeVk, peer_id: int) -> list[str]:
    return [text for peer, text in fake.texts() if str(peer) == str(peer_id)]


def inbox(database_url: str, user_id: str) -> list[str]:
    """The web visitor's waiting messages, collected (so: taken) as the page does."""

    async def collect() -> list[str]:
        db = Database(database_url, pool_size=1)
        try:
            return [d.text for d in await collect_inbox(db, user_id)]
        finally:
            await db.close()

    texts: list[str] = run(collect())
    return texts


def inbox_rows(database_url: str) -> int:
    return int(query(database_url, "SELECT count(*) AS n FROM inbox")[0]["n"])


# `portabot notify`


def notify(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram, fake_vk: FakeVk, *args: str
) -> Any:
    return portabot(
        tmp_path,
        "notify",
        *args,
        DATABASE_URL=database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        VK_TOKEN=VK_TOKEN,
        VK_GROUP_ID=str(VK_GROUP),
        VK_SECRET=VK_SECRET,
        VK_API_URL=fake_vk.url,
    )


def test_notify_reaches_every_linked_platform_once_per_id(
    start_bot: BotFactory,
    fake_telegram: FakeTelegram,
    fake_vk: FakeVk,
    database_url: str,
    tmp_path: Path,
) -> None:
    bot = start_bot(flow=telling_flow())
    web = link_everywhere(bot, fake_vk, database_url)
    text = "Your ticket #7 is answered"
    args = (f"telegram:{ANN_TELEGRAM}", text, "--id", "k1")

    result = notify(tmp_path, database_url, fake_telegram, fake_vk, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sent to telegram, vk; 1 waits in the web inbox\n"
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [text]
    assert vk_texts(fake_vk, ANN_VK) == [text]
    assert inbox_rows(database_url) == 1

    again = notify(tmp_path, database_url, fake_telegram, fake_vk, *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "already sent with --id k1\n"
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [text]
    assert vk_texts(fake_vk, ANN_VK) == [text]
    # The visitor's page collects it, once.
    collected = bot.post("/webhooks/web/inbox", json={})
    assert collected.status_code == 200, collected.text
    assert collected.json()["texts"] == [text]
    assert bot.post("/webhooks/web/inbox", json={}).json()["texts"] == []

    # From any of the person's accounts; without --id each run is a new message.
    for _ in range(2):
        fresh = notify(tmp_path, database_url, fake_telegram, fake_vk, f"web:{web}", "Hi")
        assert fresh.stdout == "sent to telegram, vk; 1 waits in the web inbox\n"
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [text, "Hi", "Hi"]
    assert inbox(database_url, web) == ["Hi", "Hi"]
    assert (
        query(database_url, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"] == 0
    )


def test_notify_a_person_on_one_platform_and_bad_input(
    start_bot: BotFactory,
    fake_telegram: FakeTelegram,
    fake_vk: FakeVk,
    database_url: str,
    tmp_path: Path,
) -> None:
    bot = start_bot(flow=telling_flow())
    # Bob was first seen in a group: a message to him goes to his private chat all the same.
    group = telegram_update(1, "hi all", user_id=BOB_TELEGRAM, chat_id=-500, chat_type="group")
    assert post_telegram(bot, group).status_code == 200
    result = notify(tmp_path, database_url, fake_telegram, fake_vk, f"telegram:{BOB_TELEGRAM}", "x")
    assert result.stdout == "sent to telegram\n", result.stderr
    assert telegram_texts(fake_telegram, BOB_TELEGRAM) == ["x"]
    assert telegram_texts(fake_telegram, -500) == []

    unknown = notify(tmp_path, database_url, fake_telegram, fake_vk, "telegram:4242", "x")
    assert unknown.returncode == 1
    assert unknown.stderr == "portabot: no one has written from telegram:4242\n"
    for bad in ("telegram", "telegram:", ":1", "icq:1"):
        refused = notify(tmp_path, database_url, fake_telegram, fake_vk, bad, "x")
        assert refused.returncode == 2, bad
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr, bad
    for key in ("", "a b", "k" * 65):
        refused = notify(
            tmp_path, database_url, fake_telegram, fake_vk, "telegram:1", "x", "--id", key
        )
        assert refused.returncode == 2 and "--id" in refused.stderr, key
    empty = notify(tmp_path, database_url, fake_telegram, fake_vk, f"telegram:{BOB_TELEGRAM}", "")
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1
    assert telegram_texts(fake_telegram, BOB_TELEGRAM) == ["x"]


# ctx.tell over HTTP


def test_a_tell_reaches_every_linked_platform_once_however_often_the_update_comes(
    start_bot: BotFactory, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    bot = start_bot(flow=telling_flow())
    web = link_everywhere(bot, fake_vk, database_url)
    update = telegram_update(77, "/tellme soon", user_id=ANN_TELEGRAM)
    for _ in range(3):
        assert post_telegram(bot, update).status_code == 200
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == ["Told you: soon"]
    assert vk_texts(fake_vk, ANN_VK)[-1:] == ["Told you: soon"]
    assert vk_texts(fake_vk, ANN_VK).count("Told you: soon") == 1
    assert inbox(database_url, web) == ["Told you: soon"]

    # platforms=["vk"]: VK alone.
    assert post_telegram(bot, telegram_update(78, "/tellvk", user_id=ANN_TELEGRAM)).status_code
    assert vk_texts(fake_vk, ANN_VK)[-1] == "Only on VK"
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == ["Told you: soon"]
    assert inbox(database_url, web) == []


def test_a_tell_to_another_person_by_id(
    start_bot: BotFactory, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    bot = start_bot(flow=telling_flow())
    group = telegram_update(1, "hi all", user_id=BOB_TELEGRAM, chat_id=-500, chat_type="group")
    assert post_telegram(bot, group).status_code == 200
    bob = person_id(database_url, "telegram", BOB_TELEGRAM)
    ann = telegram_update(2, f"/tell {bob} Your order shipped", user_id=ANN_TELEGRAM)
    for _ in range(3):
        assert post_telegram(bot, ann).status_code == 200
    assert telegram_texts(fake_telegram, BOB_TELEGRAM) == ["Your order shipped"]
    assert telegram_texts(fake_telegram, -500) == []
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == []


# ctx.tell in the harness


def test_the_harness_shows_what_was_told() -> None:
    with Harness(telling_flow()) as bot:
        ann, bob = bot.person("telegram"), bot.person("vk")
        code = code_from(ann.say("/bind")[0])
        assert "Linked!" in bob.say(f"/in {code}")[0]
        told = ann.say("/tellme now")
        assert told == ["Telling you everywhere"]
        assert sorted(told.told) == [
            ("telegram", ann.account.user_id, "Told you: now"),
            ("vk", bob.account.user_id, "Told you: now"),
        ]
        assert ann.redeliver().told == []
        assert ann.say("/tellvk").told == [("vk", bob.account.user_id, "Only on VK")]

        carol = bot.person("web")
        assert carol.say("hi") == ["You said hi"]
        found = bot.stored(carol.account)
        assert found is not None
        assert ann.say(f"/tell {found.id} psst").told == [("web", carol.account.user_id, "psst")]
        with pytest.raises(TellError, match="no person 999"):
            ann.say("/tell 999 nobody")


def test_tell_checks_its_arguments_in_the_step() -> None:
    def attempt(**kwargs: Any) -> None:
        @command("go")
        def go(ctx: Context, message: Message) -> None:
            ctx.tell("x", **kwargs)

        with Harness(Flow([Idle], routes=[go])) as bot:
            bot.person("telegram").say("/go")

    cases: list[tuple[dict[str, Any], str]] = [
        ({"platforms": "vk"}, "not a str"),
        ({"platforms": ["VK"]}, "is not one of"),
        ({"platforms": []}, "empty"),
        ({"person": "3"}, "an int"),
        ({"person": True}, "an int"),
    ]
    for kwargs, why in cases:
        with pytest.raises(ReplyError, match=why):
            attempt(**kwargs)


def test_one_step_tells_a_bounded_number_of_messages() -> None:
    @command("spam")
    def spam(ctx: Context, message: Message) -> None:
        for n in range(int(message.args)):
            ctx.tell(f"message {n}")

    with Harness(Flow([Idle], routes=[spam])) as bot:
        ann = bot.person("vk")
        assert len(ann.say("/spam 64").told) == 64
        with pytest.raises(RuntimeError, match="more than 64"):
            ann.say("/spam 65")
