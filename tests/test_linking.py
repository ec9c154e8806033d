"""Linking: a person on the web chat, Telegram and VK becomes one. Through the harness where
the flow and storage are what matter; over real HTTP where cookies, addresses and the platforms'
APIs do."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from portabot import Button, Flow, Linking, State
from portabot.features.linking import BIND, CANCEL, ME
from portabot.testing import Harness
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

CODE_LINE = re.compile(r"^/in ([a-z]+(?:-[a-z]+)+)$", re.MULTILINE)


def telegram_says(bot: httpx.Client, update_id: int, text: str, user_id: int = 1001) -> str:
    """The reply's text as the person reads it (a formatted one comes as Telegram HTML)."""
    response = post_telegram(bot, telegram_update(update_id, text, user_id=user_id))
    assert response.status_code == 200, response.text
    if not response.content:
        return ""
    body = response.json()
    said = str(body["text"])
    return html.unescape(re.sub(r"<[^>]*>", "", said)) if body.get("parse_mode") else said


def code_from(reply: str) -> str:
    match = CODE_LINE.search(reply)
    assert match, reply
    return match.group(1)


def test_web_and_telegram_become_one_person(start_bot: BotFactory, database_url: str) -> None:
    bot = start_bot(bot_passphrase="Open Sesame")
    # Both sides need the passphrase first (any case, anywhere in a message).
    assert "passphrase" in say_web(bot, "/bind")[0]
    assert "welcome" in say_web(bot, "my guess is open sesame!")[0]
    assert "passphrase" in telegram_says(bot, 1, "/start")

    code = code_from(say_web(bot, "/bind")[0])
    assert "Waiting for /in " + code in say_web(bot, "what now?")[0]

    # Telegram is not in yet: /in must wait for the passphrase.
    assert "passphrase" in telegram_says(bot, 2, f"/in {code}")
    assert "welcome" in telegram_says(bot, 3, "OPEN SESAME")
    assert telegram_says(bot, 4, f"/in {code}") == "Linked! Your platforms: telegram, web."

    assert say_web(bot, "/me") == ["Linked platforms: telegram, web."]
    assert telegram_says(bot, 5, "/me") == "Linked platforms: telegram, web."
    people = query(database_url, "SELECT id, state FROM people")
    assert len(people) == 1 and people[0]["state"] == "idle"
    assert len(query(database_url, "SELECT user_id FROM accounts")) == 2

    # The code is single-use.
    other = start_bot()
    assert "not valid" in telegram_says(other, 6, f"/in {code}", user_id=2002)


def test_one_account_per_platform_per_person(bot: httpx.Client, database_url: str) -> None:
    # Telegram and the web chat are linked; a second web visitor cannot join the same person.
    code = code_from(telegram_says(bot, 1, "/bind"))
    assert "Linked!" in say_web(bot, f"/in {code}")[0]
    code = code_from(telegram_says(bot, 2, "/bind"))
    with httpx.Client(base_url=bot.base_url) as visitor:
        assert "another platform" in say_web(visitor, f"/in {code}")[0]
    assert len(query(database_url, "SELECT id FROM people")) == 2


def vk_says(
    bot: httpx.Client, fake_vk: FakeVk, event_id: str, text: str, user_id: int = 3001
) -> str:
    before = len(fake_vk.sent())
    response = post_vk(bot, vk_event(event_id, text, user_id=user_id))
    assert response.status_code == 200 and response.text == "ok"
    return "\n".join(text for _, text in fake_vk.texts()[before:])


def test_telegram_vk_and_web_become_one_person(
    start_bot: BotFactory, fake_vk: FakeVk, database_url: str
) -> None:
    bot = start_bot(bot_passphrase="Open Sesame")
    assert "welcome" in vk_says(bot, fake_vk, "v1", "open sesame")
    code = code_from(vk_says(bot, fake_vk, "v2", "/bind"))
    assert "welcome" in telegram_says(bot, 1, "Open sesame")
    assert telegram_says(bot, 2, f"/in {code}") == "Linked! Your platforms: telegram, vk."
    # The web chat joins with a code made on Telegram, in the same person.
    assert "welcome" in say_web(bot, "OPEN SESAME")[0]
    code = code_from(telegram_says(bot, 3, "/bind"))
    assert say_web(bot, f"/in {code}") == ["Linked! Your platforms: telegram, vk, web."]
    everywhere = "Linked platforms: telegram, vk, web."
    assert vk_says(bot, fake_vk, "v3", "/me") == everywhere
    assert telegram_says(bot, 4, "/me") == everywhere
    assert say_web(bot, "/me") == [everywhere]
    assert len(query(database_url, "SELECT id FROM people")) == 1


def test_wrong_codes_are_limited_across_people_cookies_and_addresses(
    start_bot: BotFactory, database_url: str
) -> None:
    # Each guess from a fresh cookie (a fresh person) at a fresh address: the takeover.
    bot = start_bot(link_code_guesses=5)
    code = code_from(telegram_says(bot, 1, "/bind"))

    def stranger(n: int, text: str) -> str:
        with httpx.Client(base_url=bot.base_url, timeout=30) as visitor:
            headers = {"X-Forwarded-For": f"198.51.100.{n}"}
            response = visitor.post("/webhooks/web", json={"text": text}, headers=headers)
            assert response.status_code == 200, response.text
            return str(response.json()["texts"][0])

    for n in range(5):
        assert "not valid" in stranger(n, f"/in wrong-guess-{'x' * (n + 1)}")
    # Over the budget, even the right code is refused, for anyone, with the wait in minutes.
    refused = stranger(9, f"/in {code}")
    too_many = "Too many wrong codes have been sent to this bot lately, so it takes none for now."
    assert re.fullmatch(re.escape(too_many) + r" Try again in ([1-9]|10) min\.", refused), refused
    with httpx.Client(base_url=bot.base_url) as web:
        assert say_web(web, f"/in {code}")[0].startswith("Too many wrong codes")
    assert len(query(database_url, "SELECT id FROM people")) == 8  # nobody was linked
    # When the window has passed, the right code links, and does not spend the budget.
    query(database_url, "UPDATE limits SET window_start = window_start - 600")
    with httpx.Client(base_url=bot.base_url) as web:
        assert say_web(web, f"/in {code}") == ["Linked! Your platforms: telegram, web."]
    [budget] = query(database_url, "SELECT count FROM limits WHERE key = 'link-codes'")
    assert budget["count"] == 0


def test_telegram_first_then_web() -> None:
    with Harness() as bot:
        ann, web = bot.person("telegram"), bot.person("web")
        code = code_from(ann.say("/bind")[0])
        assert web.say(f"/in {code.upper().replace('-', ' ')}") == [
            "Linked! Your platforms: telegram, web."
        ]
        assert ann.say("/me") == ["Linked platforms: telegram, web."]


def test_web_then_vk() -> None:
    with Harness() as bot:
        code = code_from(bot.person("web").say("/bind")[0])
        assert bot.person("vk").say(f"/in {code}") == ["Linked! Your platforms: vk, web."]


def test_codes_expire() -> None:
    with Harness() as bot:
        code = code_from(bot.person("web").say("/bind")[0])
        bot.advance(601)
        ann = bot.person("telegram")
        assert "expired" in ann.say(f"/in {code}")[0]
        assert ann.say("/me") == ["Linked platforms: telegram."]


def test_a_code_works_only_from_another_platform() -> None:
    with Harness() as bot:
        ann = bot.person("telegram")
        code = code_from(ann.say("/bind")[0])
        assert "another platform" in bot.person("telegram").say(f"/in {code}")[0]
        assert "linked already" in ann.say(f"/in {code}")[0]


def test_cancel_revokes_the_code() -> None:
    with Harness() as bot:
        web = bot.person("web")
        code = code_from(web.say("/bind")[0])
        assert web.say("/cancel") == ["Linking cancelled."]
        assert "not valid" in bot.person("telegram").say(f"/in {code}")[0]


def test_a_new_bind_replaces_the_old_code() -> None:
    with Harness() as bot:
        web, ann = bot.person("web"), bot.person("telegram")
        first, second = (code_from(web.say("/bind")[0]) for _ in range(2))
        assert first != second
        assert "not valid" in ann.say(f"/in {first}")[0]
        assert "Linked!" in ann.say(f"/in {second}")[0]


def test_wrong_codes_are_limited_per_person() -> None:
    with Harness() as bot:
        ann = bot.person("telegram")
        code = code_from(bot.person("web").say("/bind")[0])
        for n in range(5):
            assert "not valid" in ann.say(f"/in wrong-code-number-{'x' * (n + 1)}")[0]
        assert "Too many wrong codes" in ann.say(f"/in {code}")[0]
        # Another person is not held back by the first one's mistakes.
        assert "Linked!" in bot.person("telegram").say(f"/in {code}")[0]


def test_the_help_offers_linking_as_buttons_and_a_press_does_what_the_command_does() -> None:
    with Harness() as bot:
        ann, bob = bot.person("telegram"), bot.person("vk")
        shown = ann.say("/help")
        assert shown[0].startswith("Commands:\n/help – this list")
        assert [(b.label, b.payload) for b in shown.buttons] == [
            ("Link another account", BIND),
            ("My platforms", ME),
        ]
        assert ann.say("/start").buttons == shown.buttons
        issued = ann.press(BIND)
        code = code_from(issued[0])
        assert issued.buttons == [Button("Cancel", CANCEL)]
        assert issued.replies[0].html().endswith(f"<code>/in {code}</code>")
        assert ann.conversation.state == "binding"
        # While a code waits, the help offers to cancel it.
        assert ann.press("help").buttons[0] == Button("Cancel linking", CANCEL)
        assert bob.say(f"/in {code}") == ["Linked! Your platforms: telegram, vk."]
        assert ann.press(ME) == ["Linked platforms: telegram, vk."]


@pytest.mark.parametrize("platform", ["telegram", "vk", "web"])
def test_the_cancel_button_cancels_linking_like_cancel(platform: str) -> None:
    with Harness() as bot:
        ann = bot.person(platform)
        code = code_from(ann.say("/bind")[0])
        cancelled = ann.press(CANCEL)
        assert cancelled == ["Linking cancelled."] and cancelled.edited == [True]  # the code goes
        assert ann.conversation.state == "idle" and "code" not in ann.conversation.data
        assert "not valid" in bot.person("vk" if platform != "vk" else "web").say(f"/in {code}")[0]
        # Pressed again (an old button, or any client's payload): as /cancel answers.
        assert ann.press(CANCEL) == ann.say("/cancel") == ["Nothing to cancel."]
        assert ann.press(CANCEL, message_id=None) == ["Nothing to cancel."]
        assert ann.press("linking:nonsense") == [
            "That button does nothing now. Send /help to see what I can do."
        ]


def test_a_flow_of_its_own_with_linking_answers_a_stray_cancel() -> None:
    class Home(State):
        pass

    with Harness(Flow([Home], features=[Linking()])) as bot:
        ann = bot.person("telegram")
        assert ann.press(CANCEL) == ["Nothing to cancel: no account is being linked."]
        ann.press(BIND)
        assert ann.press(CANCEL) == ["Linking cancelled."]
        assert ann.conversation.state == "home"
