"""The engine without HTTP or a database: hooks, transitions, effects and their results."""

from __future__ import annotations

import asyncio

import pytest

from portabot.conversation.engine import Context, Conversation, Flow, State
from portabot.features.linking.effects import IssueLinkCode, LinkCodeIssued
from portabot.messages import Account, Kind, Message

ANN = Account("web", "ann", "ann")


def text(value: str) -> Message:
    return Message(ANN, Kind.TEXT, value)


class Recording(State):
    """Notes every hook it runs in the replies."""

    def __init__(self, name: str, goes_to: str | None = None) -> None:
        self.name = name
        self.goes_to = goes_to

    async def enter(self, ctx: Context) -> None:
        ctx.reply(f"enter {self.name}")

    async def leave(self, ctx: Context) -> None:
        ctx.reply(f"leave {self.name}")

    async def stay(self, ctx: Context) -> None:
        ctx.reply(f"stay {self.name}")

    async def handle(self, ctx: Context, message: Message) -> str | None:
        ctx.data["seen"] = ctx.data.get("seen", 0) + 1
        if message.text == "code":
            ctx.request(IssueLinkCode())
        return self.goes_to

    async def resume(self, ctx: Context, result: object) -> str | None:
        assert isinstance(result, LinkCodeIssued)
        ctx.reply(f"code {result.code}")
        return "b"


def step(flow: Flow, conversation: Conversation, message: Message):  # type: ignore[no-untyped-def]
    return asyncio.run(flow.step(conversation, message, platforms=("web",), now=0.0))


def test_a_new_person_enters_the_initial_state_then_the_message_is_handled() -> None:
    flow = Flow([Recording("a"), Recording("b")], initial="a")
    result = step(flow, Conversation(), text("hi"))
    assert [r.text for r in result.replies] == ["enter a", "stay a"]
    assert result.conversation == Conversation("a", {"seen": 1})


def test_a_transition_runs_leave_then_enter() -> None:
    flow = Flow([Recording("a", goes_to="b"), Recording("b")], initial="a")
    result = step(flow, Conversation("a", {"seen": 3}), text("hi"))
    assert [r.text for r in result.replies] == ["leave a", "enter b"]
    assert result.conversation == Conversation("b", {"seen": 4})


def test_the_input_conversation_is_not_changed() -> None:
    flow = Flow([Recording("a")], initial="a")
    before = Conversation("a", {"seen": 1, "nested": {"x": [1]}})
    step(flow, before, text("hi"))
    assert before.data == {"seen": 1, "nested": {"x": [1]}}


def test_effects_are_returned_and_results_resume_the_flow() -> None:
    flow = Flow([Recording("a"), Recording("b")], initial="a")
    result = step(flow, Conversation("a"), text("code"))
    assert result.effects == [IssueLinkCode()]
    resumed = asyncio.run(
        flow.resume(result.conversation, LinkCodeIssued("x-y", 600.0), platforms=("web",), now=0.0)
    )
    assert [r.text for r in resumed.replies] == ["code x-y", "leave a", "enter b"]
    assert resumed.conversation.state == "b"


def test_a_state_that_no_longer_exists_starts_over_keeping_the_data() -> None:
    flow = Flow([Recording("a")], initial="a")
    result = step(flow, Conversation("removed", {"seen": 5}), text("hi"))
    assert result.conversation == Conversation("a", {"seen": 6})


def test_moving_to_an_unknown_state_is_a_programming_error() -> None:
    flow = Flow([Recording("a", goes_to="nowhere")], initial="a")
    with pytest.raises(ValueError, match="unknown state 'nowhere'"):
        step(flow, Conversation("a"), text("hi"))


def test_the_initial_state_must_exist() -> None:
    with pytest.raises(ValueError, match="initial state"):
        Flow([Recording("a")], initial="b")


def test_merge_keeps_the_kept_state_and_fills_in_data() -> None:
    flow = Flow([Recording("a"), Recording("b")], initial="a")
    merged = flow.merge(Conversation("a", {"x": 1}), Conversation("b", {"x": 2, "y": 3}))
    assert merged == Conversation("a", {"x": 1, "y": 3})
