"""The conversation engine: states with enter/leave/stay hooks, stepped without any I/O.

A step maps (conversation, input) to (conversation, replies, effects). Effects are requests the
pipeline carries out inside the update's transaction (say, storing a link code); their results come
back to the flow through `Flow.resume`, so a flow never touches the database itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from portabot.features import Effect, EffectHandler, Feature
from portabot.messages import Message, Reply


@dataclass(frozen=True, slots=True)
class Conversation:
    """One person's place in the flow: the state's name (None before the first message) and data."""

    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Context:
    """What a hook may read (the input, the person's linked platforms, the time) and write."""

    data: dict[str, Any]
    platforms: tuple[str, ...]
    now: float
    message: Message | None = None
    replies: list[Reply] = field(default_factory=list)
    effects: list[Effect[Any]] = field(default_factory=list)

    def reply(self, text: str) -> None:
        self.replies.append(Reply(text))

    def request(self, effect: Effect[Any]) -> None:
        self.effects.append(effect)


@dataclass(frozen=True, slots=True)
class Step:
    conversation: Conversation
    replies: list[Reply]
    effects: list[Effect[Any]]


class State:
    """A state of a flow. Hooks are async so that flows read like handlers; they must not do I/O.

    `handle` and `resume` return the name of the next state, or None to stay.
    """

    name: str = ""

    async def enter(self, ctx: Context) -> None:
        """Called when the conversation moves into this state."""

    async def leave(self, ctx: Context) -> None:
        """Called when the conversation moves out of this state."""

    async def stay(self, ctx: Context) -> None:
        """Called when an input was handled and the conversation stays in this state."""

    async def handle(self, ctx: Context, message: Message) -> str | None:
        return None

    async def resume(self, ctx: Context, result: Any) -> str | None:
        return None


class Flow:
    """A set of states, the one a new person starts in, and the features the flow includes."""

    def __init__(
        self, states: Iterable[State], initial: str, *, features: Iterable[Feature] = ()
    ) -> None:
        self.states = {state.name: state for state in states}
        if initial not in self.states:
            raise ValueError(f"initial state {initial!r} is not one of {sorted(self.states)}")
        self.initial = initial
        self.features = tuple(features)
        self._handlers: dict[type[Effect[Any]], EffectHandler] = {}
        for feature in self.features:
            for kind, handler in feature.effects.items():
                if kind in self._handlers:
                    raise ValueError(f"two features carry out {kind.__name__}")
                self._handlers[kind] = handler

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
        """The state a new person starts in (a flow may choose it from its settings)."""
        return self.initial

    def merge(self, kept: Conversation, absorbed: Conversation) -> Conversation:
        """Two people became one (their accounts were linked): by default the kept one's state
        wins and the absorbed one's data fills what the kept one lacks."""
        return Conversation(kept.state, {**absorbed.data, **kept.data})

    async def step(
        self,
        conversation: Conversation,
        message: Message,
        *,
        platforms: tuple[str, ...],
        now: float,
    ) -> Step:
        ctx = Context(copy.deepcopy(conversation.data), platforms, now, message)
        state = self.states.get(conversation.state or "")
        if state is None:
            state = self.states[self.initial_state()]
            await state.enter(ctx)
        target = await state.handle(ctx, message)
        return await self._finish(ctx, state, target)

    async def resume(
        self,
        conversation: Conversation,
        result: Any,
        *,
        platforms: tuple[str, ...],
        now: float,
    ) -> Step:
        ctx = Context(copy.deepcopy(conversation.data), platforms, now)
        state = self.states.get(conversation.state or "") or self.states[self.initial_state()]
        target = await state.resume(ctx, result)
        return await self._finish(ctx, state, target)

    async def _finish(self, ctx: Context, state: State, target: str | None) -> Step:
        if target is None or target == state.name:
            await state.stay(ctx)
        else:
            if target not in self.states:
                raise ValueError(f"state {state.name!r} moved to unknown state {target!r}")
            await state.leave(ctx)
            state = self.states[target]
            await state.enter(ctx)
        return Step(Conversation(state.name, ctx.data), ctx.replies, ctx.effects)
