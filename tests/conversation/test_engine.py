"""The engine without HTTP or a database: routes, hooks, transitions, build errors, the checks of
the state, effects and their results."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from portabot import (
    START,
    Context,
    Conversation,
    Feature,
    Flow,
    FlowError,
    Kind,
    Message,
    State,
    StateError,
    Step,
    Target,
    command,
    on,
    result,
    text,
)
from portabot.conversation.engine import MAX_STATE_BYTES
from portabot.features.linking.effects import IssueLinkCode, LinkCodeIssued
from portabot.messages import Account, parse_command
from tests.conftest import make_settings

ANN = Account("web", "ann", "ann")


def say(value: str) -> Message:
    parsed = parse_command(value)
    if parsed is not None:
        return Message(ANN, Kind.COMMAND, value, *parsed)
    return Message(ANN, Kind.TEXT, value)


def step(flow: Flow, conversation: Conversation, value: str | Message) -> Step:
    message = say(value) if isinstance(value, str) else value
    return asyncio.run(flow.step(conversation, message, platforms=("web",), now=0.0))


def resume(flow: Flow, conversation: Conversation, value: object) -> Step:
    return asyncio.run(flow.resume(conversation, value, platforms=("web",), now=0.0))


def texts(result: Step) -> list[str]:
    return [reply.text for reply in result.replies]


class Recording(State):
    """Notes every hook it runs in the replies (async hooks: the old style still works)."""

    def __init__(self, name: str, goes_to: Target | str = None) -> None:
        self.name = name
        self.goes_to = goes_to

    async def enter(self, ctx: Context) -> None:
        ctx.reply(f"enter {self.name}")

    async def leave(self, ctx: Context) -> None:
        ctx.reply(f"leave {self.name}")

    async def stay(self, ctx: Context) -> None:
        ctx.reply(f"stay {self.name}")

    async def handle(self, ctx: Context, message: Message) -> Any:
        ctx.data["seen"] = ctx.data.get("seen", 0) + 1
        if message.text == "code":
            ctx.request(IssueLinkCode())
        return self.goes_to

    async def resume(self, ctx: Context, result: object) -> Target:
        assert isinstance(result, LinkCodeIssued)
        ctx.reply(f"code {result.code}")
        return ctx.flow.states["b"]


# Hooks and transitions.


def test_a_new_person_enters_the_start_state_then_the_message_is_handled() -> None:
    flow = Flow([Recording("a"), Recording("b")], start="a")
    result = step(flow, Conversation(), "hi")
    assert texts(result) == ["enter a", "stay a"]
    assert result.conversation == Conversation("a", {"seen": 1})


def test_a_transition_runs_leave_then_enter() -> None:
    b = Recording("b")
    flow = Flow([Recording("a", goes_to=b), b], initial="a")
    result = step(flow, Conversation("a", {"seen": 3}), "hi")
    assert texts(result) == ["leave a", "enter b"]
    assert result.conversation == Conversation("b", {"seen": 4})


def test_the_input_conversation_is_not_changed() -> None:
    flow = Flow([Recording("a")])
    before = Conversation("a", {"seen": 1, "nested": {"x": [1]}})
    step(flow, before, "hi")
    assert before.data == {"seen": 1, "nested": {"x": [1]}}


def test_effects_are_returned_and_results_resume_the_flow() -> None:
    flow = Flow([Recording("a"), Recording("b")])
    result = step(flow, Conversation("a"), "code")
    assert result.effects == [IssueLinkCode()]
    resumed = resume(flow, result.conversation, LinkCodeIssued("x-y", 600.0))
    assert texts(resumed) == ["code x-y", "leave a", "enter b"]
    assert resumed.conversation.state == "b"


def test_a_state_that_no_longer_exists_starts_over_keeping_the_data() -> None:
    flow = Flow([Recording("a")])
    result = step(flow, Conversation("removed", {"seen": 5}), "hi")
    assert result.conversation == Conversation("a", {"seen": 6})


def test_names_default_to_the_class_name_in_snake_case() -> None:
    class OrderSize(State):
        pass

    class Cart(State):
        name = "basket"

    class HTTPThing(OrderSize):
        pass

    assert (OrderSize.name, Cart.name, HTTPThing.name) == ("order_size", "basket", "http_thing")
    assert sorted(Flow([OrderSize, Cart]).states) == ["basket", "order_size"]


class Menu(State):
    @command("order", "o", help="place an order")
    def order(self, ctx: Context, message: Message) -> type[Size]:
        ctx.data["item"] = message.args
        return Size

    @text(r"(?i)hi|hello")
    def greet(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"{ctx.matched.group(0)} to you")

    @text()
    def other(self, ctx: Context, message: Message) -> None:
        ctx.reply("Send /order.")

    @on(Kind.JOINED)
    def joined(self, ctx: Context, message: Message) -> None:
        ctx.reply("welcome")

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"fallback {message.kind.value}")


class Size(State):
    @text(r"(?P<size>\d+)")
    async def size(self, ctx: Context, message: Message) -> Target:
        ctx.data["size"] = int(ctx.matched["size"])
        ctx.request(IssueLinkCode())
        return None

    @result(LinkCodeIssued)
    async def stored(self, ctx: Context, issued: LinkCodeIssued) -> Target:
        ctx.reply(f"order {issued.code}")
        return START

    def enter(self, ctx: Context) -> None:
        ctx.reply("What size?")

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply("A number, please.")


def orders(*features: Feature) -> Flow:
    flow = Flow([Menu, Size], features=features)

    @flow.command("cancel", help="start over")
    def cancel(ctx: Context, message: Message) -> Target:
        ctx.reply("Cancelled.")
        return START

    @flow.command("help", help="this list")
    def show_help(ctx: Context, message: Message) -> None:
        ctx.reply(ctx.flow.help(ctx.state))

    return flow


def test_commands_patterns_and_kinds_are_routed_in_the_state() -> None:
    flow = orders()
    result = step(flow, Conversation("menu"), "/O@bot pizza")
    assert result.conversation == Conversation("size", {"item": "pizza"})
    assert texts(result) == ["What size?"]
    assert texts(step(flow, Conversation("menu"), "  HELLO ")) == ["HELLO to you"]
    assert texts(step(flow, Conversation("menu"), "hi there")) == ["Send /order."]
    assert texts(step(flow, Conversation("menu"), Message(ANN, Kind.JOINED))) == ["welcome"]


def test_ctx_matched_outside_a_pattern_route_says_what_it_is_for() -> None:
    class Anything(State):
        @text()
        def any_text(self, ctx: Context, message: Message) -> None:
            ctx.reply(ctx.matched[0])

    expected = r"@text\(pattern\) or @press\(pattern\) route.*state 'anything'"
    with pytest.raises(LookupError, match=expected):
        step(Flow([Anything]), Conversation("anything"), "hi")


def test_what_no_route_takes_falls_back_to_handle() -> None:
    flow = orders()
    assert texts(step(flow, Conversation("menu"), "/unknown")) == ["fallback command"]
    assert texts(step(flow, Conversation("menu"), Message(ANN, Kind.LEFT))) == ["fallback left"]
    assert texts(step(flow, Conversation("menu"), Message(ANN, Kind.TEXT))) == ["fallback text"]
    assert texts(step(flow, Conversation("size"), "large")) == ["A number, please."]


def test_flow_wide_routes_work_in_every_state_and_start_goes_to_the_start() -> None:
    flow = orders()
    result = step(flow, Conversation("size", {"item": "tea"}), "/cancel")
    assert texts(result) == ["Cancelled."]
    assert result.conversation == Conversation("menu", {"item": "tea"})


def test_async_handlers_and_result_routes() -> None:
    flow = orders()
    result = step(flow, Conversation("size"), "12")
    assert result.effects == [IssueLinkCode()] and result.conversation.data == {"size": 12}
    resumed = resume(flow, result.conversation, LinkCodeIssued("a-b", 1.0))
    assert texts(resumed) == ["order a-b"] and resumed.conversation.state == "menu"


def test_help_lists_the_described_commands_of_the_state_and_the_flow() -> None:
    flow = orders()
    assert flow.help() == "/cancel – start over\n/help – this list"
    assert texts(step(flow, Conversation("menu"), "/help")) == [
        "/order – place an order\n/cancel – start over\n/help – this list"
    ]


class Tips(Feature):
    name = "tips"

    def __init__(self) -> None:
        self.states = (Tip(),)

    @command("tip", help="a tip")
    def tip(self, ctx: Context, message: Message) -> type[Tip]:
        return Tip

    @command("cancel")
    def cancel(self, ctx: Context, message: Message) -> None:
        ctx.reply("the feature's")

    def merge_data(self, kept: dict[str, Any], absorbed: dict[str, Any]) -> dict[str, Any]:
        return {**kept, "tips": kept.get("tips", 0) + absorbed.get("tips", 0)}


class Tip(State):
    def enter(self, ctx: Context) -> None:
        ctx.data["tips"] = ctx.data.get("tips", 0) + 1
        ctx.reply("Drink water.")


def test_features_bring_states_and_flow_wide_routes() -> None:
    flow = Flow([Menu], features=[Tips()])
    result = step(flow, Conversation("menu"), "/tip")
    assert texts(result) == ["Drink water."] and result.conversation.state == "tip"
    assert flow.help() == "/tip – a tip"
    assert flow.feature(Tips) is flow.features[0]
    assert flow.feature(Feature) is flow.features[0] and Flow([Menu]).feature(Tips) is None


def test_the_flows_own_routes_come_before_the_features() -> None:
    flow = Flow([Menu], features=[Tips()])

    @flow.text("water")
    def water(ctx: Context, message: Message) -> None:
        ctx.reply("the flow's")

    assert texts(step(flow, Conversation("menu"), "water")) == ["Send /order."]  # state first
    flow = Flow([Size], features=[Tips()])
    flow.text("water")(water)
    assert texts(step(flow, Conversation("size"), "water")) == ["the flow's"]


def test_merge_runs_the_flows_then_each_features_merge_data() -> None:
    flow = Flow([Recording("a"), Recording("b")], features=[Tips()])
    merged = flow.merge(
        Conversation("a", {"x": 1, "tips": 2}), Conversation("b", {"x": 2, "y": 3, "tips": 1})
    )
    assert merged == Conversation("a", {"x": 1, "y": 3, "tips": 3})


def test_the_first_features_entry_is_where_new_people_start() -> None:
    class Gate(Feature):
        name = "gate"
        entry = Recording("gate")

    flow = Flow([Recording("a")], features=[Feature(), Gate()])
    assert flow.initial_state() == "gate" and "gate" in flow.states
    assert step(flow, Conversation(), "hi").conversation.state == "gate"


def test_flow_attributes_the_pipeline_reads() -> None:
    flow = Flow([Menu])
    assert flow.name == "Flow" and flow.features == ()
    assert flow.failure_text.startswith("Sorry, something went wrong")
    assert flow.max_state_bytes == 64 * 1024
    named = Flow([Menu], name="orders", failure_text="Oops.", max_state_bytes=10)
    assert (named.name, named.failure_text, named.max_state_bytes) == ("orders", "Oops.", 10)


# Mistakes found when the flow is built.


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Flow([]), "at least one state"),
        (lambda: Flow([Recording("")]), "state Recording has no name"),
        (lambda: Flow([Recording("a"), Recording("a")]), "two states are named 'a'"),
        (lambda: Flow([Recording("a" * 65)]), "over 64 characters"),
        (lambda: Flow([Menu], start="nowhere"), "start state 'nowhere'"),
        (lambda: Flow([Menu], start=Size), "start state <class"),
        (lambda: Flow([Menu], initial=Recording("x")), "start state"),
        (lambda: Flow([Menu], features=[Tips(), Tips()]), "two states are named 'tip'"),
        (lambda: Flow([Menu, Twice]), r"/order has two routes: Twice.first .*Twice.second"),
        (lambda: Flow([Menu], features=[Tips(), Tips2()]), "/tip has two routes"),
        (lambda: Flow([Menu], routes=[lambda ctx, message: None]), "is not a route"),
        (lambda: command("two words"), "one word"),
        (lambda: text("(unclosed"), "text pattern"),
        (lambda: on(Kind.COMMAND), "use @command"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_mistakes_fail_when_the_flow_is_built(build: Any, error: str) -> None:
    with pytest.raises(FlowError, match=error):
        build()


class Twice(State):
    @command("order")
    def first(self, ctx: Context, message: Message) -> None: ...

    @command("Order")
    def second(self, ctx: Context, message: Message) -> None: ...


class Tips2(Feature):
    name = "tips2"

    @command("tip")
    def tip(self, ctx: Context, message: Message) -> None: ...


def test_two_flow_wide_routes_for_one_command_fail() -> None:
    flow = orders()
    with pytest.raises(FlowError, match="/help has two routes"):
        flow.command("help")(lambda ctx, message: None)


def test_the_flows_own_cancel_clashes_with_a_features() -> None:
    with pytest.raises(FlowError, match=r"/cancel has two routes: .*\(the flow\)"):

        @command("cancel")
        def cancel(ctx: Context, message: Message) -> None: ...

        Flow([Menu], routes=[cancel], features=[Tips()])


# Mistakes found when a handler returns.


def test_a_string_target_is_a_type_error_naming_the_class_to_return() -> None:
    flow = Flow([Recording("a", goes_to="b"), Recording("b")])
    with pytest.raises(TypeError, match=r"Recording.handle \(in state 'a'\) returned the string"):
        step(flow, Conversation("a"), "hi")
    flow = Flow([Menu, Recording("a", goes_to="menu")], start="a")
    with pytest.raises(TypeError, match="`return Menu`"):
        step(flow, Conversation("a"), "hi")


def test_a_state_not_in_the_flow_names_the_handler_and_the_target() -> None:
    flow = Flow([Menu])
    with pytest.raises(FlowError, match=r"Menu.order \(in state 'menu'\) moved to Size, which"):
        step(flow, Conversation("menu"), "/order")
    flow = Flow([Recording("a", goes_to=Recording("c"))])
    with pytest.raises(FlowError, match="moved to a Recording that is not in the flow"):
        step(flow, Conversation("a"), "hi")
    flow = Flow([Recording("a", goes_to=Recording), Recording("b")])
    with pytest.raises(FlowError, match="in the flow as 'a', 'b': return the instance"):
        step(flow, Conversation("a"), "hi")


# State that round-trips.


def storing(value: Any) -> Flow:
    class Storing(State):
        def handle(self, ctx: Context, message: Message) -> None:
            ctx.data["order"] = {"items": ["tea", "cake", value]}

    return Flow([Storing])


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({1, 2}, "a set does not survive JSON; store a list"),
        (frozenset(), "a frozenset does not survive JSON"),
        ((1, 2), "a tuple comes back from JSON as a list"),
        (b"x", "bytes do not survive JSON"),
        (datetime(2026, 1, 1), "a datetime does not survive JSON"),
        (Decimal("1.5"), "a Decimal does not survive JSON"),
        (Kind.TEXT, "a Kind does not survive JSON"),
        (math.nan, "nan does not survive JSON"),
        (math.inf, "inf does not survive JSON"),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else "",
)
def test_data_that_would_not_come_back_from_json_fails_naming_its_path(
    value: Any, error: str
) -> None:
    with pytest.raises(StateError, match=re.escape(f"ctx.data['order']['items'][2]: {error}")):
        step(storing(value), Conversation(), "hi")


def test_a_key_that_is_not_a_string_fails_naming_it() -> None:
    with pytest.raises(StateError, match=r"ctx.data\['order'\]\['items'\]\[2\]: the key 1 is not"):
        step(storing({1: "one"}), Conversation(), "hi")


def test_what_json_keeps_passes() -> None:
    value: dict[str, Any] = {"a": [1, 2.5, True, None, "é", {"b": []}]}
    stored = step(storing(value), Conversation(), "hi").conversation.data
    assert stored["order"]["items"][2] == value


def test_data_over_the_size_limit_fails_naming_the_biggest_key() -> None:
    class Growing(State):
        def handle(self, ctx: Context, message: Message) -> None:
            ctx.data["log"] = ctx.data.get("log", "") + message.text
            ctx.data["name"] = "ann"

    flow = Flow([Growing], max_state_bytes=100)
    assert step(flow, Conversation(), "x" * 70).conversation.data["name"] == "ann"
    with pytest.raises(StateError, match=r"over flow.max_state_bytes \(100\).*\['log'\]"):
        step(flow, Conversation(), "é" * 50)  # 50 characters, 100 bytes in UTF-8
    flow.max_state_bytes = 1000
    step(flow, Conversation(), "é" * 50)


def test_state_max_bytes_sets_the_limit_of_a_flow_that_did_not_set_its_own() -> None:
    class Growing(State):
        def handle(self, ctx: Context, message: Message) -> None:
            ctx.data["log"] = message.text

    flow, own = Flow([Growing]), Flow([Growing], max_state_bytes=4096)
    assert flow.max_state_bytes == MAX_STATE_BYTES == make_settings().state_max_bytes
    for each in (flow, own):
        each.configure(make_settings(state_max_bytes=2048))
    assert (flow.max_state_bytes, own.max_state_bytes) == (2048, 4096)  # the author's stays
    with pytest.raises(StateError, match=r"over STATE_MAX_BYTES \(2048\).*\['log'\]"):
        step(flow, Conversation(), "x" * 2048)
    step(own, Conversation(), "x" * 2048)


def test_results_are_checked_too() -> None:
    class Keeping(State):
        def resume(self, ctx: Context, result: object) -> None:
            ctx.data["result"] = result

    with pytest.raises(StateError, match=r"ctx.data\['result'\]: a LinkCodeIssued"):
        resume(Flow([Keeping]), Conversation(), LinkCodeIssued("a", 1.0))


AUTHOR = """
from portabot import START, Context, Flow, Linking, Message, State, Target, command, text


class Menu(State):
    @command("order", help="place an order")
    def order(self, ctx: Context, message: Message) -> type[Size]:
        return Size


class Size(State):
    @text(r"\\d+")
    async def size(self, ctx: Context, message: Message) -> Target:
        ctx.data["size"] = int(message.text)
        return START

    def enter(self, ctx: Context) -> None:
        ctx.reply("What size?")


flow = Flow([Menu, Size], features=[Linking()], name="orders")


@flow.command("cancel", help="start over")
def cancel(ctx: Context, message: Message) -> Target:
    return START
"""


def test_an_authors_module_passes_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "orders.py").write_text(AUTHOR)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "orders.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_import_portabot_brings_neither_the_database_nor_http() -> None:
    code = "import sys, portabot; print(sorted({'sqlalchemy', 'starlette'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
