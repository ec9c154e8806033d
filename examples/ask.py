"""Ask a service: `/ask <question>` (or any text) answers "Thinking…" at once, asks an HTTP
service (ASK_URL: it takes `{"question": "..."}` and answers `{"answer": "..."}` — a language
model behind a small proxy, a shop's API), and replies with its answer when it comes.

The call is `ctx.call("ask", question=...)`: stored with the step and run after it commits, so the
webhook is answered at once however slow the service (Telegram re-delivers after its timeout;
a language model may take 30 s), a re-delivered message asks nothing twice, and a failed call is
tried again (4 attempts, 5 s, 20 s and 80 s apart) before `@failed` says so.

Plug it in with BOT_FLOW=examples.ask:flow and ASK_URL=https://...; ASK_TIMEOUT (seconds, 60)
bounds one attempt.
"""

from __future__ import annotations

import os
from typing import Any

from portabot import CallFailed, Context, Flow, Message, State, command, failed, returned, text

TIMEOUT = float(os.environ.get("ASK_TIMEOUT", "60"))
MAX_QUESTION = 2000


async def ask(question: str) -> str:
    """POST the question to ASK_URL; the answer's text. A 4xx is the service refusing this
    question (no retry); anything else that fails is tried again."""
    import aiohttp

    url = os.environ.get("ASK_URL")
    if not url:
        raise CallFailed("ASK_URL is not set")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"question": question}) as response,
    ):
        if 400 <= response.status < 500:
            raise CallFailed(f"the service refused the question ({response.status})")
        response.raise_for_status()
        body: Any = await response.json(content_type=None)
    answer = body.get("answer") if isinstance(body, dict) else None
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("the service's answer has no text")
    return answer


class Asking(State):
    @command("ask", help="ask the service", args="<question>")
    def command(self, ctx: Context, message: Message) -> None:
        self.question(ctx, message.args)

    @text()
    def typed(self, ctx: Context, message: Message) -> None:
        self.question(ctx, message.text)

    def question(self, ctx: Context, question: str) -> None:
        question = question.strip()
        if not question:
            ctx.reply("Ask me something: /ask <question>")
            return
        if len(question) > MAX_QUESTION:
            ctx.reply(f"Please ask in at most {MAX_QUESTION} characters.")
            return
        ctx.reply("Thinking…")
        ctx.call("ask", question=question)

    @returned("ask")
    def answered(self, ctx: Context, message: Message) -> None:
        ctx.reply(str(message.result))

    @failed("ask")
    def down(self, ctx: Context, message: Message) -> None:
        ctx.reply("Sorry, I could not get an answer just now. Please ask again later.")


flow = Flow([Asking], name="ask")
flow.service("ask", timeout=TIMEOUT)(ask)
