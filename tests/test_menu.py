"""One menu flow (examples/menu.py) on Telegram, VK and the web chat at once: the same buttons
reach each in its own shape, each press comes back to the flow with its payload and edits the
menu in place, and the order ends in the same state everywhere."""

from __future__ import annotations

import json
from typing import Any

from examples.menu import flow
from portabot.testing import Harness
from portabot.testing.fakes import FakeTelegram, FakeVk
from tests.channels.test_telegram_rich import carry_out, pressed
from tests.channels.test_vk_rich import vk_press
from tests.conftest import (
    BotFactory,
    post_telegram,
    post_vk,
    query,
    telegram_update,
    vk_event,
)

SIZES = [("Small", "size:s"), ("Medium", "size:m"), ("Large", "size:l")]
CHOICE = [("Order", "confirm"), ("Cancel", "cancel")]


def telegram_keyboard(row: list[tuple[str, str]]) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": t, "callback_data": p} for t, p in row]]}


def vk_keyboard(row: list[tuple[str, str]]) -> dict[str, Any]:
    buttons = [
        {
            "action": {
                "type": "callback",
                "label": t,
                "payload": json.dumps({"p": p}, separators=(",", ":")),
            }
        }
        for t, p in row
    ]
    return {"inline": True, "buttons": [buttons]}


def web_buttons(row: list[tuple[str, str]]) -> list[list[dict[str, str]]]:
    return [[{"label": t, "payload": p} for t, p in row]]


def test_the_menu_on_every_platform(
    start_bot: BotFactory, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    bot = start_bot(flow=flow)

    # Telegram: the menu rides in the webhook response; a press is answered there, and the
    # edit of the menu goes through the API.
    response = post_telegram(bot, telegram_update(1, "/menu", user_id=1001))
    assert response.json() == {
        "method": "sendMessage",
        "chat_id": 1001,
        "text": "Pick a size:",
        "reply_markup": telegram_keyboard(SIZES),
    }
    sent = carry_out(fake_telegram, response)  # as Telegram does with the response
    answer = post_telegram(bot, pressed(2, "size:m", sent, query_id="q2"))
    assert answer.json() == {"method": "answerCallbackQuery", "callback_query_id": "q2"}
    [edit] = fake_telegram.sent("editMessageText")
    assert edit == {
        "chat_id": 1001,
        "message_id": sent["message_id"],
        "text": "One <b>Medium</b> coffee?",
        "parse_mode": "HTML",
        "reply_markup": telegram_keyboard(CHOICE),
    }
    confirmed = post_telegram(bot, pressed(3, "confirm", sent, query_id="q3"))
    assert confirmed.json() == {
        "method": "answerCallbackQuery",
        "callback_query_id": "q3",
        "text": "Ordered",
    }
    assert fake_telegram.sent("editMessageText")[-1]["text"] == "Ordered: one <b>Medium</b> coffee."

    # VK: everything through the API; the press is answered with a snackbar.
    assert post_vk(bot, vk_event("v1", "/menu")).text == "ok"
    [vk_menu] = fake_vk.messages(3001)
    assert (vk_menu.text, vk_menu.keyboard) == ("Pick a size:", vk_keyboard(SIZES))
    assert (
        post_vk(bot, vk_press("v2", {"p": "size:l"}, vk_menu.conversation_message_id)).text == "ok"
    )
    assert fake_vk.messages(3001)[0].text == "One Large coffee?"
    assert fake_vk.messages(3001)[0].keyboard == vk_keyboard(CHOICE)
    assert (
        post_vk(bot, vk_press("v3", {"p": "cancel"}, vk_menu.conversation_message_id)).text == "ok"
    )
    assert [(m.text, m.edits) for m in fake_vk.messages(3001)] == [("Cancelled.", 2)]
    assert len(fake_vk.sent("messages.sendMessageEventAnswer")) == 2
    assert fake_vk.snackbars() == []  # cancelling gives no notice

    # The web chat: bubbles with buttons; a press names its bubble and the edit replaces it.
    first = bot.post("/webhooks/web", json={"text": "/menu"}).json()
    [bubble] = first["replies"]
    assert bubble["buttons"] == web_buttons(SIZES)
    press = {"payload": "size:s", "message": bubble["id"]}
    [edited] = bot.post("/webhooks/web", json=press).json()["replies"]
    assert edited["replaces"] == bubble["id"]
    assert edited["html"] == "One <b>Small</b> coffee?"
    assert edited["buttons"] == web_buttons(CHOICE)
    done = bot.post("/webhooks/web", json={"payload": "confirm", "message": bubble["id"]}).json()
    assert done["notice"] == "Ordered"
    assert done["texts"] == ["Ordered: one Small coffee."]

    states = query(database_url, "SELECT state, data FROM people ORDER BY id")
    assert states == [{"state": "done", "data": "{}"}] * 3


def test_a_stale_press_changes_nothing() -> None:
    # Payloads are untrusted: a size pressed on an old menu, once the order is placed, is
    # answered (the spinner stops) and does not reopen the order.
    with Harness(flow) as bot:
        ann = bot.person("telegram")
        ann.say("/menu")
        ann.press("size:s")
        assert ann.press("confirm").notice == "Ordered"
        assert ann.press("size:l") == ["Send /menu to order."]
        assert ann.press("confirm") == ["Send /menu to order."]
        assert ann.press("x" * 500) == ["Send /menu to order."]
        assert ann.conversation.state == "done" and ann.conversation.data == {}


def test_the_menu_in_the_harness_shows_its_buttons() -> None:
    with Harness(flow) as bot:
        ann = bot.person("vk")
        menu = ann.say("/menu")
        assert [(b.label, b.payload) for b in menu.buttons] == SIZES
        chosen = ann.press("size:m")
        assert chosen == ["One Medium coffee?"] and chosen.edited == [True]
        assert chosen.replies[0].html() == "One <b>Medium</b> coffee?"
        assert ann.press("cancel") == ["Cancelled."]
        assert ann.conversation.state == "done"
