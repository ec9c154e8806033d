"""Routes: what a state, a feature or the whole flow answers, declared by decorators.

`@command`, `@text`, `@on`, `@press`, `@event` and `@result` mark a method of a State (or a
Feature, or a plain function given to the Flow) and return it unchanged; the Flow collects the
marks when it is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from portabot.messages import UNSENT_KINDS, Kind, Message

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__portabot_routes__"


class FlowError(ValueError):
    """A flow that cannot work as written: found when it is built (or, for a state a handler
    moves to that is not in the flow, when the handler returns it)."""


@dataclass(frozen=True, slots=True)
class Route:
    """One way in: a command (by name, or any command when `commands` is empty), text (any
    non-empty, or matching `pattern`), a kind of message, or an effect's result by type."""

    handler: Callable[..., Any]
    kind: Kind | None = None
    """The kind of message matched; None for a result route."""
    commands: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    any_text: bool = False
    """Text routes: every text message, even one without text (a photo); else non-empty text."""
    result: type | None = None
    event: str | None = None
    """Event, timer and call routes: the event's, timer's or service's name (None: every one)."""
    help: str = ""
    args: str = ""
    """How the command's arguments read in the help (`<code>`)."""

    def bound(self, owner: object) -> Route:
        return replace(self, handler=self.handler.__get__(owner, type(owner)))

    def matches(self, message: Message) -> re.Match[str] | bool:
        """Whether a non-command message is this route's (the match, for a pattern)."""
        if self.kind is not message.kind:
            return False
        if self.kind is Kind.PRESS:
            if self.pattern is None:
                return True
            return self.pattern.fullmatch(message.payload) or False
        if self.kind in UNSENT_KINDS:
            return self.event is None or self.event == message.event
        if self.kind is not Kind.TEXT or self.any_text:
            return True
        text = message.text.strip()
        if self.pattern is not None:
            return self.pattern.fullmatch(text) or False
        return bool(text)

    def takes(self, result: object) -> bool:
        return self.result is not None and isinstance(result, self.result)

    def help_line(self) -> str | None:
        if not (self.help and self.commands):
            return None
        args = f" {self.args}" if self.args else ""
        return f"/{self.commands[0]}{args} – {self.help}"

    def describe(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))


def _marking(route: Route) -> Callable[[F], F]:
    def mark(function: F) -> F:
        setattr(function, _MARK, (*getattr(function, _MARK, ()), replace(route, handler=function)))
        return function

    return mark


def command_route(names: tuple[str, ...], help: str, args: str) -> Route:
    commands = tuple(name.removeprefix("/").lower() for name in names)
    for name in commands:
        if not name or any(c.isspace() or c == "@" for c in name):
            raise FlowError(f"command name {name!r}: a command is one word without '@' or spaces")
    return Route(_unset, Kind.COMMAND, commands=commands, help=help, args=args)


def text_route(pattern: str | None) -> Route:
    try:
        compiled = re.compile(pattern) if pattern is not None else None
    except re.error as exc:
        raise FlowError(f"text pattern {pattern!r}: {exc}") from None
    return Route(_unset, Kind.TEXT, pattern=compiled)


def kind_route(kind: Kind) -> Route:
    if kind is Kind.COMMAND:
        raise FlowError("on(Kind.COMMAND): use @command() for commands (no names: any command)")
    return Route(_unset, kind, any_text=True)


def press_route(pattern: str | None) -> Route:
    return replace(text_route(pattern), kind=Kind.PRESS)


EVENT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
"""An event's name: a short identifier (lower-case letters, digits, `_`, `.`, `-`)."""


def check_name(what: str, name: object) -> str:
    """An event's, timer's or service's name, or FlowError saying what one is."""
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise FlowError(
            f"{what} name {name!r}: 1 to 64 lower-case letters, digits, '_', '.' or '-'"
            " (starting with a letter or digit)"
        )
    return name


def named_route(kind: Kind, name: str | None) -> Route:
    """A route of a kind nobody sent (an event, a timer, a call's result), by name."""
    what = {Kind.EVENT: "event", Kind.TIMER: "timer"}.get(kind, "service")
    return Route(_unset, kind, event=None if name is None else check_name(what, name))


def event_route(name: str | None) -> Route:
    return named_route(Kind.EVENT, name)


def result_route(kind: type) -> Route:
    return Route(_unset, result=kind)


def command(*names: str, help: str = "", args: str = "") -> Callable[[F], F]:
    """`/name args` for any of `names` (case-insensitive, `/name@bot` too); no names: any command
    not routed by name. `help` (and `args`, as in `args="<code>"`) make its line of `Flow.help`.
    The handler takes `(ctx, message)`; `message.args` holds the rest of the line."""
    return _marking(command_route(names, help, args))


def text(pattern: str | None = None) -> Callable[[F], F]:
    """A text message: any non-empty one, or one whose stripped text `re.fullmatch`es `pattern`
    (flags inline, as in `(?i)yes|no`); the handler takes `(ctx, message)` and finds the match
    in `ctx.matched`."""
    return _marking(text_route(pattern))


def on(kind: Kind) -> Callable[[F], F]:
    """Every message of a kind: Kind.JOINED, Kind.LEFT, Kind.PHOTO and the other attachments,
    Kind.PRESS (every press), or Kind.TEXT (even one without text)."""
    return _marking(kind_route(kind))


def press(pattern: str | None = None) -> Callable[[F], F]:
    """A press of one of the flow's buttons: any, or one whose payload `re.fullmatch`es
    `pattern` (`@press(r"size:(s|m|l)")`, the choice in `ctx.matched[1]`). The payload is
    untrusted (a client can send any): check it against the state, as a typed answer."""
    return _marking(press_route(pattern))


def event(name: str | None = None) -> Callable[[F], F]:
    """An event from outside (`POST /api/events`) of this name (None: any); the handler takes
    `(ctx, message)` and finds the event's data in `message.data` (untrusted: check it). Its
    replies go to the person on every platform they linked."""
    return _marking(event_route(name))


def timer(name: str | None = None) -> Callable[[F], F]:
    """A timer of this name (`ctx.wake(name, after=...)`) is due (None: any); the handler takes
    `(ctx, message)` and finds the data it was set with in `message.data`. Its replies go to the
    chat where it was set."""
    return _marking(named_route(Kind.TIMER, name))


def returned(name: str | None = None) -> Callable[[F], F]:
    """An outside call to this service (`ctx.call(name, ...)`) came back; the handler takes
    `(ctx, message)` and finds what the service returned in `message.result`. Its replies go to
    the chat of the step that asked."""
    return _marking(named_route(Kind.RETURNED, name))


def failed(name: str | None = None) -> Callable[[F], F]:
    """An outside call to this service failed every attempt; the handler takes `(ctx, message)`,
    `message.error` says why. Without one, the person gets the flow's failure text."""
    return _marking(named_route(Kind.FAILED, name))


def result(kind: type) -> Callable[[F], F]:
    """An effect's result of this type coming back; the handler takes `(ctx, result)`."""
    return _marking(result_route(kind))


def marked(function: Callable[..., Any]) -> tuple[Route, ...]:
    """The routes a decorated function carries (a plain function given to the Flow)."""
    routes: tuple[Route, ...] = getattr(function, _MARK, ())
    if not routes:
        raise FlowError(f"{function!r} is not a route: decorate it with @command, @text or so")
    return routes


def routes_of(owner: object) -> list[Route]:
    """The routes declared on the methods of `owner`'s class (and its bases), bound to it."""
    methods: dict[str, object] = {}
    for klass in reversed(type(owner).__mro__):
        methods.update(vars(klass))
    return [route.bound(owner) for method in methods.values() for route in _routes(method)]


def _routes(method: object) -> tuple[Route, ...]:
    return getattr(method, _MARK, ()) if callable(method) else ()


def _unset(*args: object) -> None:
    raise AssertionError("a route's handler is set when it marks a function")
