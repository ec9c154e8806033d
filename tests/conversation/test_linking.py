"""Linking and the passphrase gate as features, and the built-in bot made of them, as pure functions
of (conversation, message) -> (conversation, replies)."""

from __future__ import annotations

import asyncio

from portabot import Context, Conversation, Flow, Linking, Passphrase, State, Step, command
from portabot.builtin import make
from portabot.features.linking import MAX_WRONG_CODES
from portabot.features.linking.codes import CODE_LIFETIME, make_code, normalise_code, word_list
from portabot.features.linking.effects import (
    IssueLinkCode,
    LinkCodeIssued,
    Linked,
    LinkRefused,
    RedeemLinkCode,
    Refusal,
    RevokeLinkCodes,
)
from portabot.features.linking.effects import (
    LinkingResult as EffectResult,
)
from portabot.messages import Account, Kind, Message, parse_command

TG = Account("telegram", "1", "1")


def say(flow: Flow, conversation: Conversation, text: str, now: float = 1000.0) -> Step:
    command = parse_command(text)
    kind = Kind.COMMAND if command else Kind.TEXT
    message = Message(TG, kind, text, *(command or (None, "")))
    return asyncio.run(flow.step(conversation, message, platforms=("telegram",), now=now))


def resume(flow: Flow, conversation: Conversation, result: EffectResult) -> Step:
    return asyncio.run(flow.resume(conversation, result, platforms=("telegram",), now=1000.0))


def texts(step: Step) -> list[str]:
    return [reply.text for reply in step.replies]


def test_without_a_passphrase_everyone_is_in() -> None:
    step = say(make(), Conversation(), "/start")
    assert step.conversation.state == "idle"
    assert "/bind" in texts(step)[0]


def test_the_passphrase_is_asked_for_and_found_in_any_case() -> None:
    flow = make("Blue Whale")
    step = say(flow, Conversation(), "/bind")
    assert step.conversation.state == "locked" and step.effects == []
    assert "passphrase" in texts(step)[0]
    step = say(flow, step.conversation, "is it the blue WHALE?")
    assert step.conversation.state == "idle"
    assert texts(step)[0].startswith("You're in")


def test_bind_asks_for_a_code_and_shows_the_command_on_its_own_line() -> None:
    flow = make()
    step = say(flow, Conversation("idle"), "/bind")
    assert step.effects == [IssueLinkCode()]
    step = resume(flow, step.conversation, LinkCodeIssued("amber-fox", 1000.0 + CODE_LIFETIME))
    assert step.conversation.state == "binding"
    assert texts(step)[0].splitlines()[-1] == "/in amber-fox"
    assert "10 min" in texts(step)[0]


def test_cancel_leaves_binding_and_revokes() -> None:
    flow = make()
    binding = Conversation("binding", {"code": "a-b", "code_expires": 2000.0})
    step = say(flow, binding, "/cancel")
    assert step.effects == [RevokeLinkCodes()]
    assert step.conversation == Conversation("idle", {})
    # With nothing to cancel, /cancel is the flow's own.
    assert texts(say(flow, step.conversation, "/cancel")) == ["Nothing to cancel."]


def test_binding_notices_when_the_code_expired() -> None:
    flow = make()
    step = say(flow, Conversation("binding", {"code": "a-b", "code_expires": 999.0}), "hello")
    assert step.conversation.state == "idle"
    assert "expired" in texts(step)[0]


def test_in_asks_to_redeem_the_normalised_code() -> None:
    step = say(make(), Conversation("idle"), "/in  Amber FOX-river")
    assert step.effects == [RedeemLinkCode("amber-fox-river")]
    step = say(make(), Conversation("idle"), "/in")
    assert step.effects == [] and "/in <code>" in texts(step)[0]


def test_wrong_codes_are_counted_and_limited() -> None:
    flow = make()
    conversation = Conversation("idle")
    for _ in range(MAX_WRONG_CODES):
        step = say(flow, conversation, "/in wrong-code")
        assert step.effects
        step = resume(flow, step.conversation, LinkRefused(Refusal.UNKNOWN))
        conversation = step.conversation
    step = say(flow, conversation, "/in right-code")
    assert step.effects == [] and "Too many" in texts(step)[0]
    # Once CODE_LIFETIME has passed, the person may try again.
    assert say(flow, conversation, "/in right-code", now=1000.0 + CODE_LIFETIME).effects


def test_linked_names_every_platform() -> None:
    step = resume(make(), Conversation("idle"), Linked(("telegram", "vk", "web")))
    assert texts(step) == ["Linked! Your platforms: telegram, vk, web."]


def test_merging_two_people_leaves_one_member_without_pending_codes() -> None:
    kept = Conversation("binding", {"code": "a-b", "code_expires": 5.0, "x": 1})
    absorbed = Conversation("idle", {"wrong_codes": [1.0], "y": 2})
    assert make("pass").merge(kept, absorbed) == Conversation("binding", {"x": 1, "y": 2})
    # The Linked result that follows the merge takes the kept person out of binding.
    step = resume(make(), Conversation("binding", {"x": 1}), Linked(("telegram", "vk")))
    assert step.conversation == Conversation("idle", {"x": 1})


def test_me_lists_linked_platforms() -> None:
    step = asyncio.run(
        make().step(
            Conversation("idle"),
            Message(TG, Kind.COMMAND, "/me", "me"),
            platforms=("telegram", "web"),
            now=0.0,
        )
    )
    assert texts(step) == ["Linked platforms: telegram, web."]


def test_codes_are_words_from_the_shipped_list() -> None:
    words = word_list()
    assert len(set(words)) == len(words) >= 512
    codes = {make_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert all(part in words for part in code.split("-"))
        assert normalise_code(code.upper().replace("-", " ")) == code


def test_over_the_shared_budget_the_person_hears_how_long_to_wait() -> None:
    flow = make()
    step = say(flow, Conversation("idle"), "/in some-code")
    step = resume(flow, step.conversation, LinkRefused(Refusal.TOO_MANY, retry_after=125.0))
    assert texts(step) == [
        "Too many wrong codes have been sent to this bot lately, so it takes none for now. "
        "Try again in 3 min."
    ]
    # Not this person's mistake: their own count of wrong codes is unchanged.
    assert step.conversation.data.get("wrong_codes", []) == []


class Ordering(State):
    """An author's state: /bind from here comes back here."""

    @command("order")
    def order(self, ctx: Context, message: object) -> None:
        ctx.reply("ordered")


def authors_flow(passphrase: str | None = None) -> Flow:
    return Flow([Ordering], features=[Passphrase(passphrase), Linking()])


def test_linking_in_an_authors_flow_returns_to_where_bind_was_sent() -> None:
    flow = authors_flow()
    step = say(flow, Conversation("ordering"), "/bind")
    assert step.effects == [IssueLinkCode()]
    step = resume(flow, step.conversation, LinkCodeIssued("amber-fox", 1000.0 + CODE_LIFETIME))
    assert step.conversation.state == "binding"
    assert texts(say(flow, step.conversation, "hi"))[0].startswith("Waiting for /in amber-fox")
    # The author's flow-wide commands stay, and the feature's /me.
    assert texts(say(flow, step.conversation, "/me")) == ["Linked platforms: telegram."]
    cancelled = say(flow, step.conversation, "/cancel")
    assert cancelled.conversation == Conversation("ordering", {})
    linked = resume(flow, step.conversation, Linked(("telegram", "web")))
    assert linked.conversation == Conversation("ordering", {})
    assert flow.feature(Linking) is flow.features[1]
    assert "/in <code> – link this account" in flow.help()


def test_the_passphrase_gate_in_an_authors_flow_lets_people_into_its_start() -> None:
    flow = authors_flow("sesame")
    assert flow.initial_state() == "locked"
    step = say(flow, Conversation(), "/order")  # no route of the flow works while locked
    assert step.conversation.state == "locked" and "passphrase" in texts(step)[0]
    step = say(flow, step.conversation, "Open SESAME")
    assert step.conversation.state == "ordering"
    assert texts(step)[0].startswith("You're in, welcome!\n\nCommands:\n/bind")
    assert authors_flow().initial_state() == "ordering"


def test_the_passphrase_comes_from_the_settings_when_not_given() -> None:
    from pydantic import SecretStr

    from portabot import Settings

    flow = authors_flow()
    flow.configure(Settings(bot_passphrase=SecretStr("sesame")))
    assert flow.initial_state() == "locked"
    flow.configure(Settings(bot_passphrase=None))
    assert flow.initial_state() == "ordering"
