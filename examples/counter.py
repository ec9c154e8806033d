"""A flow that counts each person's messages and answers with the count: with it, the reliability
tests and the load script see that every update was processed exactly once.

Plug it in with BOT_FLOW=examples.counter:flow, or examples.counter:echo for a second reply (the
message's text back), which on Telegram goes out through sendMessage rather than inline.
"""

from __future__ import annotations

from portabot.conversation.engine import Context, Conversation, Flow, State
from portabot.messages import Message


class Counting(State):
    name = "counting"

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo

    async def handle(self, ctx: Context, message: Message) -> str | None:
        count = ctx.data["count"] = int(ctx.data.get("count", 0)) + 1
        ctx.reply(f"That was message {count}.")
        if self.echo:
            ctx.reply(f"You said: {message.text}")
        return None


class CounterFlow(Flow):
    def __init__(self, *, echo: bool = False) -> None:
        super().__init__([Counting(echo=echo)], initial="counting")

    def merge(self, kept: Conversation, absorbed: Conversation) -> Conversation:
        # Two accounts became one person: their messages were all theirs.
        count = int(kept.data.get("count", 0)) + int(absorbed.data.get("count", 0))
        return Conversation(kept.state, {**absorbed.data, **kept.data, "count": count})


flow = CounterFlow()
echo = CounterFlow(echo=True)
