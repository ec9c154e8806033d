"""A flow that counts each person's messages and answers with the count: with it, the reliability
tests and the load script see that every update was processed exactly once.

Plug it in with BOT_FLOW=examples.counter:flow, or examples.counter:echo for a reply before the
count (the message's text back), which on Telegram goes out through sendMessage while the count
rides inline (the response reaches the chat last).
"""

from __future__ import annotations

from typing import Any

from portabot import Context, Flow, Message, State


class Counting(State):
    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo

    def handle(self, ctx: Context, message: Message) -> None:
        count = ctx.data["count"] = int(ctx.data.get("count", 0)) + 1
        if self.echo:
            ctx.reply(f"You said: {message.text}")
        ctx.reply(f"That was message {count}.")


class CounterFlow(Flow):
    def __init__(self, *, echo: bool = False) -> None:
        super().__init__([Counting(echo=echo)], name="counter")

    def merge_data(self, kept: dict[str, Any], absorbed: dict[str, Any]) -> dict[str, Any]:
        # Two accounts became one person: their messages were all theirs.
        count = int(kept.get("count", 0)) + int(absorbed.get("count", 0))
        return {**absorbed, **kept, "count": count}


flow = CounterFlow()
echo = CounterFlow(echo=True)
