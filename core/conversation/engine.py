"""The conversation engine: states with routes and enter/leave/stay hooks, stepped without I/O.

A step maps (conversation, input) to (conversation, replies, effects). Effects are requests the
pipeline carries out inside the update's transaction (say, storing a link code); their results come
back to the flow through `Flow.resume`, so a flow never touches the database itself.

Hooks and route handlers may be plain `def` or `async def` (an awaitable result is awaited).
Prefer `def`: a hook does no I/O — it reads the context, writes `ctx.data`, replies and requests
effects, and effects are the sanctioned way to reach the database or the outside (they run in the
update's transaction and are retried with it; a hook that calls out would repeat the call on every
redelivery and hold the person's lock while it waits). `async def` is accepted so that old flows
and helpers written as coroutines keep working.

A handler moves the conversation by what it returns: None stays, a State class (or instance) in
the flow moves there, START goes to the flow's start. Names are only for storage, so a typo in a
target is a NameError when the module loads or a FlowError naming the handler, never silence.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias, TypeVar, cast

from portabot import timers
from portabot.calls import MAX_ARGS_BYTES, MAX_TIMEOUT, TIMEOUT, Call, Registration, Service
from portabot.conversation.routing import (
    FlowError,
    Route,
    check_name,
    command_route,
    event_route,
    kind_route,
    marked,
    named_route,
    press_route,
    result_route,
    routes_of,
    text_route,
)
from portabot.features import Effect, EffectHandler
from portabot.messages import Conversation, Kind, Message
from portabot.replies import MAX_NOTICE, Part, Reply, ReplyError, Rows, dumps
from portabot.telling import Tell, check_tell_args

if TYPE_CHECKING:
    from portabot.features import Feature
    from portabot.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=Service)
Audience: TypeAlias = Callable[[str | None, dict[str, Any]], bool]
"""Whom a broadcast reaches: a person's state (None before their first message) and data ->
whether to send to them (`portabot broadcast --to NAME`)."""
AUDIENCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

MAX_NAME = 64
"""The longest state name: `people.state` is a String(64)."""

MAX_STATE_BYTES = 64 * 1024
"""The default of STATE_MAX_BYTES (and the limit of a flow not configured). A person's data is
read and written on every message: loaded, copied for the step, checked and dumped. Measured
(one core of a server Xeon, Python 3.12), a 60 KB state of 560 small records takes ~5.5 ms for
that (the check alone 1.2 ms; a small state's check ~2.5 µs); a 128 MB Lambda has about a tenth
of a core, so ~50 ms per message before any database round trip. Past that, data belongs in a
table of its own (a feature with an effect)."""

_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

FAILURE_TEXT = "Sorry, something went wrong on our side. Please try again later."


class StateError(ValueError):
    """`ctx.data` would not come back from the database as the step left it (or is too big)."""


class _Start:
    """The type of START."""

    def __repr__(self) -> str:
        return "START"


START: Final = _Start()
"""A handler's target: the flow's start state (the passphrase gate lets a person in with it)."""


@dataclass(slots=True)
class Context:
    """What a hook may read (the input, the person's linked platforms, the time, the flow and the
    state the person is in) and write (data, replies, effects)."""

    data: dict[str, Any]
    platforms: tuple[str, ...]
    now: float
    flow: Flow
    state: State
    message: Message | None = None
    """The message being handled; in a result route, the message whose step asked for the
    effect (None when the pipeline resumes without one)."""
    match: re.Match[str] | None = None
    """The match of a `@text(pattern)` or `@press(pattern)` route."""
    replies: list[Reply] = field(default_factory=list)
    effects: list[Effect[Any]] = field(default_factory=list)
    notice_text: str | None = None
    """The notice for the press being handled (`ctx.notice`)."""

    @property
    def matched(self) -> re.Match[str]:
        """`match` where it is always set, in a `@text(pattern)` or `@press(pattern)` route's
        handler: typed without None, so that `ctx.matched[1]` needs no check under
        `mypy --strict`."""
        if self.match is None:
            raise LookupError(
                "ctx.matched is the match of a @text(pattern) or @press(pattern) route; this "
                "handler is not one "
                f"(state {self.state.name!r})"
            )
        return self.match

    def reply(
        self,
        *parts: Part,
        buttons: Rows | None = None,
        image: str | None = None,
        edit: bool = False,
    ) -> None:
        """Reply with text, strings and spans (`"Order for ", bold(name)`); `buttons` in rows
        (`[[Button("Small", "size:s"), Button("Large", "size:l")]]`), an https `image` (the text
        its caption), `edit=True` to replace the pressed message. Checked now: a payload too
        long or a keyboard too big raises ReplyError here, in the flow's own test."""
        self.replies.append(Reply.of(*parts, buttons=buttons, image=image, edit=edit))

    def tell(
        self,
        *parts: Part,
        buttons: Rows | None = None,
        image: str | None = None,
        platforms: Sequence[str] | None = None,
        person: int | None = None,
    ) -> None:
        """A message to a person rather than to this chat: on every platform they linked (or only
        those in `platforms`: "telegram", "vk", "web"), the current person by default or the one
        whose id is `person` (from a feature's table, say a ticket's owner). Telegram and VK get
        it in the person's private chat, the web chat in the visitor's inbox. Stored with the
        step, sent once after it commits (a re-delivered update tells nothing again). Checked
        now, as `reply`; a `person` id that does not exist fails the step when carried out."""
        named = check_tell_args(platforms, person)
        reply = Reply.of(*parts, buttons=buttons, image=image)
        self.effects.append(Tell(reply, named, person))

    def wake(
        self,
        name: str,
        *,
        at: float | datetime | None = None,
        after: float | timedelta | None = None,
        data: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        """Step the flow again `after` seconds (or a timedelta), or `at` a time (Unix seconds or an
        aware datetime): a Kind.TIMER message named `name`, with `data` in `message.data`, routed
        by `@timer(name)`; its replies go to this chat. One timer per `key` (the name unless
        given): asking again replaces it, `ctx.cancel(key)` drops it. Fires once, within a tick
        of the time (every minute, or a running server's TICK_SECONDS)."""
        self.effects.append(timers.wake(name, self.now, at, after, data, key))

    def later(
        self,
        *parts: Part,
        at: float | datetime | None = None,
        after: float | timedelta | None = None,
        buttons: Rows | None = None,
        image: str | None = None,
        key: str | None = None,
    ) -> None:
        """Send this reply to this chat later (`after` or `at`, as `wake`), with no step; with a
        `key`, asking again replaces it and `ctx.cancel(key)` drops it."""
        reply = Reply.of(*parts, buttons=buttons, image=image)
        due = timers.due_time(self.now, at, after)
        checked = None if key is None else timers.check_key(key)
        self.effects.append(timers.Later(reply, due, checked))

    def cancel(self, key: str) -> None:
        """Drop the timer or reply sent later of this key (nothing happens if there is none)."""
        self.effects.append(timers.Cancel(timers.check_key(key)))

    def call(self, service: str, **args: Any) -> None:
        """Call the flow's outside service `service` with these keyword arguments after this step
        commits (`Flow(services={...})` or `@flow.service(name)`); what it returns comes back as
        a Kind.RETURNED message (`@returned(service)`, `message.result`), a failure after every
        retry as Kind.FAILED (`@failed(service)`, `message.error`). Once per update: a
        re-delivery calls nothing again. Reply now to say that an answer is coming."""
        self.effects.append(self.flow.calling(service, args))

    def notice(self, text: str) -> None:
        """The short note a platform shows for the press being handled (a toast, a snackbar)."""
        if not isinstance(text, str) or not text.strip():
            raise ReplyError("a notice is a non-empty str")
        if len(text) > MAX_NOTICE:
            raise ReplyError(f"the notice {text[:20]!r}… is over {MAX_NOTICE} characters")
        if self.message is None or self.message.kind is not Kind.PRESS:
            raise ReplyError("ctx.notice answers a press: this step is not one (reply instead)")
        self.notice_text = text

    def request(self, effect: Effect[Any]) -> None:
        self.effects.append(effect)


@dataclass(frozen=True, slots=True)
class Step:
    conversation: Conversation
    replies: list[Reply]
    effects: list[Effect[Any]]
    notice: str | None = None
    data_json: str | None = None
    """`conversation.data` as JSON, as the size check wrote it (None: not written yet)."""


class State:
    """A state of a flow: its routes (methods decorated with @command, @text, @on, @result), the
    enter/leave/stay hooks, and `handle`/`resume` for what no route took.

    `name` is what is stored for people in the state; by default the class's name in snake_case
    (`OrderSize` -> "order_size"). Renaming a state strands the people in it (they start over).
    """

    name: str = ""
    flow_wide: ClassVar[bool] = True
    """Whether the flow-wide routes apply in this state (the passphrase gate turns them off)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):
            cls.name = _SNAKE.sub("_", cls.__name__).lower()

    def enter(self, ctx: Context) -> Awaitable[None] | None:
        """Called when the conversation moves into this state."""
        return None

    def leave(self, ctx: Context) -> Awaitable[None] | None:
        """Called when the conversation moves out of this state."""
        return None

    def stay(self, ctx: Context) -> Awaitable[None] | None:
        """Called when an input was handled and the conversation stays in this state."""
        return None

    def handle(self, ctx: Context, message: Message) -> Target | Awaitable[Target]:
        """A message no route took; returns the target (None: stay)."""
        return None

    def resume(self, ctx: Context, result: Any) -> Target | Awaitable[Target]:
        """An effect's result no route took; returns the target (None: stay)."""
        return None


Target: TypeAlias = "type[State] | State | _Start | None"
"""What a handler returns: where the conversation goes (None: it stays)."""


@dataclass(slots=True)
class _Routes:
    """The routes of one scope (a state, the flow's own, the features'), ready to look up."""

    scope: str
    named: dict[str, Route] = field(default_factory=dict)
    any_command: list[Route] = field(default_factory=list)
    messages: list[Route] = field(default_factory=list)
    results: list[Route] = field(default_factory=list)
    described: list[Route] = field(default_factory=list)

    def add(self, route: Route, others: Iterable[_Routes] = ()) -> None:
        if route.kind is None:
            self.results.append(route)
        elif route.kind is Kind.COMMAND and not route.commands:
            self.any_command.append(route)
        elif route.kind is Kind.COMMAND:
            for name in route.commands:
                for table in (self, *others):
                    if name in table.named:
                        raise FlowError(
                            f"/{name} has two routes: {table.named[name].describe()} "
                            f"({table.scope}) and {route.describe()} ({self.scope})"
                        )
                self.named[name] = route
        else:
            self.messages.append(route)
        if route.help_line():
            self.described.append(route)


class Flow:
    """The states of a bot, the one a new person starts in, its flow-wide routes and features.

    `states` are State classes (made without arguments) or instances; `start` (or its old name
    `initial`: a class, an instance or a state's name) defaults to the first of them. `routes` are
    functions decorated with @command, @text, @on or @result that apply in every state, as do those
    added later with `flow.command(...)` and so on, and the features' routes after them.

    `max_state_bytes` bounds a person's state; without it the deployment's STATE_MAX_BYTES does
    (from `configure`). Passed, it stays whatever the setting says: the author who measured what
    the flow keeps has decided, and an operator's setting meant for flows that did not say should
    not undo that.

    `audiences` name the filters `portabot broadcast --to NAME` selects people with (as
    `@flow.audience(NAME)` adds one).
    """

    def __init__(
        self,
        states: Iterable[type[State] | State] = (),
        start: type[State] | State | str | None = None,
        *,
        routes: Iterable[Callable[..., Any]] = (),
        features: Iterable[Feature] = (),
        failure_text: str = FAILURE_TEXT,
        name: str | None = None,
        max_state_bytes: int | None = None,
        initial: type[State] | State | str | None = None,
        services: Mapping[str, Service] | None = None,
        audiences: Mapping[str, Audience] | None = None,
    ) -> None:
        self.audiences: dict[str, Audience] = {}
        for audience_name, select in (audiences or {}).items():
            self._add_audience(audience_name, select)
        self.features: tuple[Feature, ...] = tuple(features)
        self.services: dict[str, Registration] = {}
        """The outside calls `ctx.call` may ask for, by name."""
        for service_name, function in (services or {}).items():
            self.service(service_name)(function)
        self.failure_text = failure_text
        """The reply a person gets when an update of theirs is given up (the pipeline sends it)."""
        self.name = name or type(self).__name__
        self._own_limit = max_state_bytes is not None
        self.max_state_bytes = MAX_STATE_BYTES if max_state_bytes is None else max_state_bytes
        own = [state() if isinstance(state, type) else state for state in states]
        if not own:
            raise FlowError("a flow needs at least one state")
        self.states: dict[str, State] = {}
        for state in own + [s for feature in self.features for s in _feature_states(feature)]:
            self._add_state(state)
        self.start = self._resolve_start(start if start is not None else initial, own[0])
        self._tables = {name: _Routes(f"state {name!r}") for name in self.states}
        for state_name, state in self.states.items():
            for route in routes_of(state):
                self._tables[state_name].add(route)
        self._own = _Routes("the flow")
        self._featured = _Routes("features")
        for function in routes:
            for route in marked(function):
                self._own.add(route, [self._featured])
        for feature in self.features:
            for route in feature.routes:
                self._featured.add(route, [self._own])
        self._handlers: dict[type[Effect[Any]], EffectHandler] = {}
        for feature in self.features:
            for kind, handler in feature.effects.items():
                if kind in self._handlers:
                    raise FlowError(f"two features carry out {kind.__name__}")
                self._handlers[kind] = handler

    def _add_state(self, state: State) -> None:
        if any(state is known for known in self.states.values()):
            return  # a feature's entry is among its states too
        name = state.name
        where = f"state {type(state).__name__}"
        if not isinstance(name, str) or not name:
            raise FlowError(f"{where} has no name")
        if len(name) > MAX_NAME:
            raise FlowError(f"{where}: the name {name!r} is over {MAX_NAME} characters")
        if name in self.states:
            other = type(self.states[name]).__name__
            raise FlowError(f"two states are named {name!r} ({other} and {type(state).__name__})")
        self.states[name] = state

    def _resolve_start(self, start: type[State] | State | str | None, first: State) -> State:
        if start is None:
            return first
        if isinstance(start, str):
            found = self.states.get(start)
        elif isinstance(start, State):
            found = start if any(start is s for s in self.states.values()) else None
        else:
            found = next((s for s in self.states.values() if type(s) is start), None)
        if found is None:
            raise FlowError(f"the start state {start!r} is not one of {sorted(self.states)}")
        return found

    # Flow-wide routes added after the flow is built.

    def command(self, *names: str, help: str = "", args: str = "") -> Callable[[F], F]:
        """`@flow.command("cancel", help=...)` on `def cancel(ctx, message)`: in every state."""
        return self._adding(command_route(names, help, args))

    def text(self, pattern: str | None = None) -> Callable[[F], F]:
        return self._adding(text_route(pattern))

    def on(self, kind: Kind) -> Callable[[F], F]:
        return self._adding(kind_route(kind))

    def press(self, pattern: str | None = None) -> Callable[[F], F]:
        return self._adding(press_route(pattern))

    def event(self, name: str | None = None) -> Callable[[F], F]:
        return self._adding(event_route(name))

    def timer(self, name: str | None = None) -> Callable[[F], F]:
        return self._adding(named_route(Kind.TIMER, name))

    def returned(self, name: str | None = None) -> Callable[[F], F]:
        return self._adding(named_route(Kind.RETURNED, name))

    def failed(self, name: str | None = None) -> Callable[[F], F]:
        return self._adding(named_route(Kind.FAILED, name))

    def result(self, kind: type) -> Callable[[F], F]:
        return self._adding(result_route(kind))

    def service(self, name: str, *, timeout: float = TIMEOUT) -> Callable[[S], S]:
        """`@flow.service("weather")` on `async def weather(city: str) -> dict`: an outside call
        `ctx.call("weather", city=...)` may ask for (a deployment may register its own), given
        `timeout` seconds an attempt."""
        check_name("service", name)
        if not 0 < timeout <= MAX_TIMEOUT:
            raise FlowError(f"service {name!r}: timeout is 0 to {MAX_TIMEOUT:g} seconds")

        def add(function: S) -> S:
            if not inspect.iscoroutinefunction(cast(Any, function)):  # kept as typed: S
                raise FlowError(f"service {name!r}: an `async def` function, not {function!r}")
            if name in self.services:
                raise FlowError(f"two services are named {name!r}")
            self.services[name] = Registration(function, float(timeout))
            return function

        return add

    def audience(self, name: str | None = None) -> Callable[[F], F]:
        """`@flow.audience("subscribers")` on `def subscribers(state, data) -> bool`: the people
        `portabot broadcast --to subscribers` sends to (the name defaults to the function's)."""

        def add(function: F) -> F:
            self._add_audience(name if name is not None else function.__name__, function)
            return function

        return add

    def calling(self, name: str, args: dict[str, Any]) -> Call:
        """The checked Call effect for `ctx.call` (FlowError or ReplyError naming what is
        wrong): the service is registered, the flow answers what it returns, the arguments are
        JSON and not too big."""
        if name not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise FlowError(
                f"no service {name!r} (registered: {known}): add it with Flow(services="
                f"{{{name!r}: function}}) or @flow.service({name!r})"
            )
        if not self._answers(name):
            raise FlowError(
                f"nothing answers service {name!r}: add a @returned({name!r}) route (and a "
                f"@failed({name!r}) one, or the person gets the flow's failure text)"
            )
        timers.check_data(args, MAX_ARGS_BYTES, f"the arguments of {name!r}")
        return Call(name, args)

    def _answers(self, name: str) -> bool:
        tables = [*self._tables.values(), self._own, self._featured]
        return any(
            route.kind is Kind.RETURNED and route.event in (None, name)
            for table in tables
            for route in table.messages
        )

    def audience_named(self, name: str) -> Audience:
        """The audience of that name; a LookupError names the flow's own."""
        found = self.audiences.get(name)
        if found is None:
            known = ", ".join(sorted(self.audiences)) or "none"
            raise LookupError(f"no audience {name!r} in the flow (its audiences: {known})")
        return found

    def _add_audience(self, name: str, select: Audience) -> None:
        if not isinstance(name, str) or not AUDIENCE_NAME.fullmatch(name):
            raise FlowError(f"audience {name!r}: 1 to 64 letters, digits, _ or -")
        if not callable(select):
            raise FlowError(f"audience {name!r}: a function (state, data) -> bool")
        if name in self.audiences:
            raise FlowError(f"two audiences are named {name!r}")
        self.audiences[name] = select

    def _adding(self, route: Route) -> Callable[[F], F]:
        def add(function: F) -> F:
            self._own.add(replace(route, handler=function), [self._featured])
            return function

        return add

    # What the pipeline, the CLI and handlers ask of a flow.

    def configure(self, settings: Settings) -> None:
        """Take the deployment's settings: STATE_MAX_BYTES (unless the flow set its own limit),
        and each feature its own (the bot does once at start; again is harmless)."""
        if not self._own_limit:
            self.max_state_bytes = settings.state_max_bytes
        for feature in self.features:
            feature.configure(settings)

    def feature(self, kind: type[FeatureT]) -> FeatureT | None:
        """The flow's feature of that class, if it has one (`flow.feature(Linking)`)."""
        return next((f for f in self.features if isinstance(f, kind)), None)

    def handler_for(self, effect: Effect[Any]) -> EffectHandler:
        """The handler a feature registered for the effect's type."""
        handler = self._handlers.get(type(effect))
        if handler is None:
            raise LookupError(
                f"no feature of this flow carries out {type(effect).__name__}: include the "
                "feature that registers it in Flow(..., features=[...])"
            )
        return handler

    def initial_state(self) -> str:
        """The state a new person starts in: the first feature's entry (the passphrase gate), or
        the flow's start."""
        feature = next((f for f in self.features if f.entry is not None), None)
        if feature is None or feature.entry is None:
            return self.start.name
        if self.states.get(feature.entry.name) is not feature.entry:
            raise FlowError(f"feature {feature.name!r}: its entry is not one of its states")
        return feature.entry.name

    def help(self, state: State | type[State] | None = None) -> str:
        """The `/command – what it does` lines of the described commands: the state's own (when
        given), then the flow-wide ones (the flow's, the features')."""
        if isinstance(state, type):
            state = self._instance_of(state, "help")
        tables = self._scopes(state) if state is not None else [self._own, self._featured]
        lines: dict[str, str] = {}  # by command: a state's own /cancel hides the flow's
        for route in (r for t in tables for r in t.described):
            line = route.help_line()
            if line is not None:
                lines.setdefault(route.commands[0], line)
        return "\n".join(lines.values())

    def merge_data(self, kept: dict[str, Any], absorbed: dict[str, Any]) -> dict[str, Any]:
        """Two people became one: by default the kept one's data wins and the absorbed one's fills
        what the kept one lacks. Override to combine (say, add up counts)."""
        return {**absorbed, **kept}

    def merge(self, kept: Conversation, absorbed: Conversation) -> Conversation:
        """Two people became one (their accounts were linked): the kept one's state, the data as
        `merge_data` and then each feature's `merge_data` leave it."""
        data = self.merge_data(kept.data, absorbed.data)
        for feature in self.features:
            data = feature.merge_data(data, absorbed.data)
        return Conversation(kept.state, data)

    async def step(
        self,
        conversation: Conversation,
        message: Message,
        *,
        platforms: tuple[str, ...],
        now: float,
    ) -> Step:
        state = self.states.get(conversation.state or "")
        ctx = self._context(conversation, state, platforms, now, message)
        if state is None:
            await _call(ctx.state.enter, ctx)
        route, ctx.match = self._route(ctx.state, message)
        if route is not None:
            handler = route.handler
        elif message.kind is Kind.FAILED:  # nothing answers it: the person is not left waiting
            handler = _tell_failure
        else:
            handler = ctx.state.handle
        return await self._finish(ctx, handler, await _call(handler, ctx, message))

    async def resume(
        self,
        conversation: Conversation,
        result: Any,
        *,
        platforms: tuple[str, ...],
        now: float,
        message: Message | None = None,
    ) -> Step:
        """The flow's answer to an effect's result; `message` is the one whose step asked for
        the effect (so that a result route after a press may `ctx.notice` and edit)."""
        state = self.states.get(conversation.state or "")
        ctx = self._context(conversation, state, platforms, now, message)
        scopes = self._scopes(ctx.state)
        route = next((r for t in scopes for r in t.results if r.takes(result)), None)
        handler = route.handler if route is not None else ctx.state.resume
        return await self._finish(ctx, handler, await _call(handler, ctx, result))

    def check(self, data: dict[str, Any]) -> str:
        """`data` as JSON; raise StateError unless it comes back from JSON as it is and fits the
        limit."""
        check_json(data)
        encoded = dumps(data)
        if len(encoded) * 4 <= self.max_state_bytes:
            return encoded  # even all four-byte characters would fit
        size = len(encoded.encode())
        if size > self.max_state_bytes:
            sizes = {k: len(json.dumps(v, ensure_ascii=False).encode()) for k, v in data.items()}
            biggest = max(sizes, key=sizes.__getitem__)
            limit = "flow.max_state_bytes" if self._own_limit else "STATE_MAX_BYTES"
            raise StateError(
                f"ctx.data is {size} bytes as JSON, over {limit} "
                f"({self.max_state_bytes}); the biggest part is ctx.data[{biggest!r}] "
                f"({sizes[biggest]} bytes): keep big or growing data in a table of its own"
            )
        return encoded

    # The step's machinery.

    def _context(
        self,
        conversation: Conversation,
        state: State | None,
        platforms: tuple[str, ...],
        now: float,
        message: Message | None,
    ) -> Context:
        # A state that no longer exists starts over (keeping the data).
        current = state or self.states[self.initial_state()]
        return Context(copy_json(conversation.data), platforms, now, self, current, message)

    def _scopes(self, state: State) -> list[_Routes]:
        own = self._tables[state.name]
        return [own, self._own, self._featured] if state.flow_wide else [own]

    def _route(self, state: State, message: Message) -> tuple[Route | None, re.Match[str] | None]:
        scopes = self._scopes(state)
        if message.kind is Kind.COMMAND:
            named = (t.named.get(message.command or "") for t in scopes)
            found = next((r for r in named if r is not None), None)
            found = found or next((r for t in scopes for r in t.any_command), None)
            return found, None
        for route in (r for t in scopes for r in t.messages):
            matched = route.matches(message)
            if matched:
                return route, matched if isinstance(matched, re.Match) else None
        return None, None

    async def _finish(self, ctx: Context, handler: Callable[..., Any], target: Any) -> Step:
        state = ctx.state
        following = self._target(state, handler, target)
        if following is state:
            await _call(state.stay, ctx)
        else:
            await _call(state.leave, ctx)
            ctx.state = following
            await _call(following.enter, ctx)
        encoded = self.check(ctx.data)
        conversation = Conversation(ctx.state.name, ctx.data)
        return Step(conversation, ctx.replies, ctx.effects, ctx.notice_text, encoded)

    def _target(self, state: State, handler: Callable[..., Any], target: Any) -> State:
        if target is None:
            return state
        if target is START:
            return self.start
        by = f"{_name(handler)} (in state {state.name!r})"
        if isinstance(target, State):
            if any(target is s for s in self.states.values()):
                return target
            raise FlowError(f"{by} moved to a {type(target).__name__} that is not in the flow")
        if isinstance(target, type) and issubclass(target, State):
            return self._instance_of(target, by)
        if isinstance(target, str):
            known = self.states.get(target)
            hint = f"`return {type(known).__name__}`" if known else "return the state's class"
            raise TypeError(
                f"{by} returned the string {target!r}: a target is not a name; {hint}, "
                "START or None"
            )
        raise TypeError(
            f"{by} returned {target!r}: return the state's class, START or None (to stay)"
        )

    def _instance_of(self, kind: type[State], by: str) -> State:
        found = [s for s in self.states.values() if type(s) is kind]
        if not found:
            raise FlowError(
                f"{by} moved to {kind.__name__}, which is not in the flow: add it to Flow([...])"
            )
        if len(found) > 1:
            names = ", ".join(repr(s.name) for s in found)
            raise FlowError(
                f"{by} moved to {kind.__name__}, which is in the flow as {names}: return the "
                "instance"
            )
        return found[0]


FeatureT = TypeVar("FeatureT", bound="Feature")


def _feature_states(feature: Feature) -> list[State]:
    return [*feature.states, *([feature.entry] if feature.entry is not None else [])]


def _tell_failure(ctx: Context, message: Message) -> None:
    ctx.reply(ctx.flow.failure_text)


def _name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", repr(handler))


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    value = function(*args)
    return await value if inspect.isawaitable(value) else value


# What comes back from JSON exactly: these types (exactly, not subclasses), finite floats, and
# lists and dicts of them with str keys.

_NAMES = {
    set: "a set does not survive JSON; store a list",
    frozenset: "a frozenset does not survive JSON; store a list",
    tuple: "a tuple comes back from JSON as a list; store a list",
    bytes: "bytes do not survive JSON; store a str (base64, say)",
    bytearray: "a bytearray does not survive JSON; store a str (base64, say)",
}


def _why(value: object) -> str:
    for kind, why in _NAMES.items():
        if isinstance(value, kind):
            return why
    if isinstance(value, date | time):
        return f"a {type(value).__name__} does not survive JSON; store a timestamp or ISO string"
    if isinstance(value, timedelta):
        return "a timedelta does not survive JSON; store seconds"
    if isinstance(value, float):
        return f"{value} does not survive JSON; store None or a finite number"
    return (
        f"a {type(value).__name__} does not survive JSON; store str, int, float, bool, None, "
        "or lists and dicts of them"
    )


class _Bad(Exception):
    def __init__(self, why: str) -> None:
        self.why = why
        self.path: list[str] = []


def _walk(value: object) -> None:
    if type(value) is str or type(value) is int or type(value) is bool or value is None:
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise _Bad(_why(value))
        return
    if type(value) is list:
        for index, item in enumerate(value):
            try:
                _walk(item)
            except _Bad as bad:
                bad.path.append(f"[{index}]")
                raise
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _Bad(f"the key {key!r} is not a str (JSON makes keys strings); use str keys")
            try:
                _walk(item)
            except _Bad as bad:
                bad.path.append(f"[{key!r}]")
                raise
        return
    raise _Bad(_why(value))


def copy_json(value: Any) -> Any:
    """A deep copy of JSON's values (what a person's data is: it came from JSON or passed
    `check_json`), a few times faster than `copy.deepcopy`, which it falls back on for others."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    return copy.deepcopy(value)


def check_json(data: object, what: str = "ctx.data") -> None:
    """Raise StateError unless `data` comes back from JSON as it is, naming the part that does
    not (`what` names the whole)."""
    try:
        _walk(data)
    except _Bad as bad:
        raise StateError(f"{what}{''.join(reversed(bad.path))}: {bad.why}") from None
    except RecursionError:
        raise StateError(f"{what} is nested too deeply (or contains itself)") from None
