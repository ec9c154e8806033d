"""The example support flow, plugged in with BOT_FLOW and driven through the same pipeline."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from examples.support import SupportFlow
from portabot.conversation.loader import load_flow
from portabot.messages import Account, Conversation, Kind, Message, parse_command
from portabot.settings import ConfigurationError
from portabot.testing.fakes import FakeVk
from tests.conftest import (
    BotFactory,
    make_settings,
    post_telegram,
    post_vk,
    query,
    say_web,
    telegram_update,
    vk_event,
)


@pytest.fixture
def desk(start_bot: BotFactory) -> httpx.Client:
    return start_bot(bot_flow="examples.support:flow")


def test_tickets_are_kept_per_person(desk: httpx.Client, database_url: str) -> None:
    assert "Support desk" in say_web(desk, "/start")[0]
    assert say_web(desk, "/ticket") == ["Describe the problem in one message (or /cancel)."]
    assert say_web(desk, "The printer is on fire")[0].startswith("Ticket #1 is open")
    assert say_web(desk, "/ticket VPN drops every hour")[0].startswith("Ticket #2 is open")
    assert say_web(desk, "/tickets") == ["#1: The printer is on fire\n#2: VPN drops every hour"]
    assert say_web(desk, "/close 1") == ["Ticket #1 is closed."]
    assert say_web(desk, "/tickets") == ["#2: VPN drops every hour"]
    # Another person has their own desk.
    with httpx.Client(base_url=desk.base_url) as someone_else:
        assert say_web(someone_else, "/tickets") == ["You have no open tickets."]
    people = query(database_url, "SELECT state, data FROM people")
    assert [p["state"] for p in people if "VPN" in p["data"]] == ["desk"]


def test_the_same_flow_serves_telegram_and_vk(desk: httpx.Client, fake_vk: FakeVk) -> None:
    response = post_telegram(desk, telegram_update(1, "/ticket Lost my password"))
    assert response.json()["text"].startswith("Ticket #1 is open")
    assert post_vk(desk, vk_event("v1", "/tickets")).text == "ok"
    assert fake_vk.texts() == [("3001", "You have no open tickets.")]


def test_describing_can_be_cancelled() -> None:
    flow = SupportFlow()

    def say(conversation: Conversation, text: str) -> Conversation:
        command = parse_command(text)
        kind = Kind.COMMAND if command else Kind.TEXT
        message = Message(Account("web", "a", "a"), kind, text, *(command or (None, "")))
        return asyncio.run(
            flow.step(conversation, message, platforms=("web",), now=1.0)
        ).conversation

    describing = say(Conversation(), "/ticket")
    assert describing.state == "describing"
    assert say(describing, "/cancel") == Conversation("desk", {})


def test_merging_keeps_both_lists_of_tickets() -> None:
    kept = Conversation(
        "desk", {"tickets": [{"number": 1, "text": "a", "opened": 5, "open": True}]}
    )
    absorbed = Conversation(
        "describing", {"tickets": [{"number": 1, "text": "b", "opened": 2, "open": True}]}
    )
    merged = SupportFlow().merge(kept, absorbed)
    assert merged.state == "desk"
    assert [(t["number"], t["text"]) for t in merged.data["tickets"]] == [(1, "b"), (2, "a")]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("examples.nowhere:flow", "cannot import examples.nowhere"),
        ("examples.support:missing", "examples.support has no missing"),
        ("examples.support:HELP", "neither a Flow nor a function returning one"),
    ],
)
def test_a_wrong_bot_flow_is_a_clear_configuration_error(spec: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load_flow(make_settings(bot_flow=spec))


def test_bot_flow_must_name_an_attribute() -> None:
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        make_settings(bot_flow="examples.support")
