"""Outside calls (issue 15): `ctx.call` runs a registered service after the step commits, once per
update however often it is delivered; what it returns comes back as an update of its own kind
(Kind.RETURNED), a failure after retries as Kind.FAILED. The service here is a real HTTP server on
loopback that counts what it is asked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.ask import flow as ask_flow
from portabot import Context, Flow, FlowError, Message, ReplyError, State, command, returned
from portabot.bot import Bot
from portabot.calls import ATTEMPTS
from portabot.jobs import LEASE, run_due
from portabot.settings import Settings
from portabot.storage.jobs import claim_jobs
from portabot.testing import Harness
from portabot.testing.fakes import FakeTelegram, serve
from tests.conftest import BotFactory, post_telegram, query, run, telegram_update
from tests.test_runner import wait_for


@dataclass
class AskService:
    """The outside service: answers `{"answer": QUESTION?}`, or fails as told."""

    url: str = ""
    status: int = 200
    delay: float = 0.0
    questions: list[str] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def ask(request: Request) -> Response:
            body = await request.json()
            self.questions.append(body["question"])
            if self.delay:
                await asyncio.sleep(self.delay)  # a slow model, not a wait for the test
            self.answered.set()
            if self.status != 200:
                return JSONResponse({"error": "down"}, status_code=self.status)
            return JSONResponse({"answer": f"{body['question']}? 42."})

        return Starlette(routes=[Route("/ask", ask, methods=["POST"])])


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[AskService]:
    found = AskService()
    with serve(found.app()) as url:
        found.url = f"{url}/ask"
        monkeypatch.setenv("ASK_URL", found.url)  # the example reads its environment
        yield found


def test_a_question_is_answered_after_thinking(service: AskService) -> None:
    with Harness(ask_flow) as bot:
        ann = bot.person("telegram")
        assert ann.say("/ask the meaning of life") == ["Thinking…"]
        assert service.questions == []  # nothing is called inside the step
        assert bot.tick() == ["the meaning of life? 42."]
        assert service.questions == ["the meaning of life"]
        assert bot.tick() == []


def test_a_service_that_is_down_is_retried_then_the_flow_says_so(service: AskService) -> None:
    service.status = 503
    with Harness(ask_flow) as bot:
        ann = bot.person("vk")
        ann.say("why")
        assert bot.tick() == []  # the first attempt failed: the next in 5 s
        assert bot.advance(4) == []
        assert bot.advance(1) == []
        assert bot.advance(20) == []
        assert len(service.questions) == 3
        assert bot.advance(80) == [
            "Sorry, I could not get an answer just now. Please ask again later."
        ]
        assert service.questions == ["why"] * 4
        assert bot.advance(3600) == []


def test_a_service_that_refuses_the_question_fails_at_once(service: AskService) -> None:
    service.status = 400
    with Harness(ask_flow) as bot:
        bot.person("telegram").say("/ask something rude")
        assert bot.tick() == ["Sorry, I could not get an answer just now. Please ask again later."]
        assert len(service.questions) == 1


class Asking(State):
    @command("ask")
    def ask(self, ctx: Context, message: Message) -> None:
        ctx.call("compute", n=int(message.args or 0))

    @command("unknown")
    def unknown(self, ctx: Context, message: Message) -> None:
        ctx.call("nowhere")

    @command("bad")
    def bad(self, ctx: Context, message: Message) -> None:
        ctx.call("compute", n=object())

    @returned("compute")
    def computed(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"= {message.result}")


class Plain(State):
    pass


@command("other")
def call_other(ctx: Context, message: Message) -> None:
    ctx.call("other")


async def compute(n: int) -> Any:
    if n == 0:
        return {"not json": {1, 2}}
    if n < 0:
        raise RuntimeError("negative")
    return n * 2


def test_what_a_service_returns_and_raises_reaches_the_flow() -> None:
    flow = Flow([Asking], services={"compute": compute})
    with Harness(flow) as bot:
        ann = bot.person("telegram")
        ann.say("/ask 21")
        assert bot.tick() == ["= 42"]
        ann.say("/ask 0")  # a result JSON cannot hold: no retry helps; no @failed: the default
        assert bot.tick() == [flow.failure_text]
        ann.say("/ask -1")
        replies = [bot.tick(), bot.advance(5), bot.advance(20), bot.advance(80)]
        assert replies == [[], [], [], [flow.failure_text]]


def test_calls_asked_for_wrongly_fail_the_step_naming_what() -> None:
    flow = Flow([Asking], services={"compute": compute})
    with Harness(flow) as bot:
        ann = bot.person("telegram")
        with pytest.raises(FlowError, match="no service 'nowhere'"):
            ann.say("/unknown")
        with pytest.raises(ReplyError, match=r"the arguments of 'compute'\['n'\]"):
            ann.say("/bad")
    lonely = Flow([Plain], routes=[call_other], services={"other": compute})
    with Harness(lonely) as bot, pytest.raises(FlowError, match="nothing answers service 'other'"):
        bot.person("telegram").say("/other")
    with pytest.raises(FlowError, match="an `async def`"):
        Flow([Asking], services={"sync": lambda: 1})  # type: ignore[dict-item,return-value]


def test_a_question_delivered_three_times_at_once_is_asked_once(
    start_bot: BotFactory,
    fake_telegram: FakeTelegram,
    settings: Settings,
    database_url: str,
    service: AskService,
) -> None:
    """Telegram re-delivers (the first copy was slow to answer): three copies at once store one
    call; the runners call the service once and the answer is sent once."""
    client: httpx.Client = start_bot(ask_flow)
    update = telegram_update(701, "/ask the weather", user_id=1001)
    threads = [threading.Thread(target=post_telegram, args=(client, update)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert query(database_url, "SELECT count(*) AS n FROM jobs") == [{"n": 1}]
    assert service.questions == []
    run(_run_due_twice(settings))
    assert service.questions == ["the weather"]
    answers = [m.text for m in fake_telegram.messages(1001) if m.text == "the weather? 42."]
    assert answers == ["the weather? 42."]
    run(_run_due_twice(settings))
    assert service.questions == ["the weather"]
    assert query(database_url, "SELECT count(*) AS n FROM jobs") == [{"n": 0}]


async def _run_due_twice(settings: Settings) -> None:
    bots = [Bot(settings, ask_flow), Bot(settings, ask_flow)]
    try:
        await asyncio.gather(*(run_due(bot) for bot in bots))
    finally:
        for bot in bots:
            await bot.close()


def test_a_call_whose_runner_keeps_dying_comes_to_an_end(service: AskService) -> None:
    """Runners that claim the call and die during it (a Lambda invocation timing out) each use
    an attempt: after the last, the flow hears that it failed, and the service was not asked
    again."""
    with Harness(ask_flow) as bot:
        bot.person("telegram").say("/ask anyone?")
        for _ in range(ATTEMPTS):
            [job] = bot.run(claim_jobs(bot.bot.db, bot.now, LEASE, 10))  # and then it dies
            bot.now += LEASE
        assert bot.tick() == ["Sorry, I could not get an answer just now. Please ask again later."]
        assert service.questions == []
        assert job.name == "ask"


def test_the_webhook_is_answered_before_a_slow_service_answers(
    start_bot: BotFactory, fake_telegram: FakeTelegram, service: AskService
) -> None:
    """The service takes 20 s (a language model): the webhook answers "Thinking…" at once in
    its response, and the server runs the call right after (its runner poked, not its next
    tick an hour away); the answer arrives when the service gives it."""
    service.delay = 20.0
    client: httpx.Client = start_bot(ask_flow, tick_seconds=3600)
    response = post_telegram(client, telegram_update(801, "/ask what now", user_id=1001))
    assert response.status_code == 200
    assert response.json()["text"] == "Thinking…"
    assert not service.answered.is_set()  # answered before the service did
    wait_for("the service asked", lambda: service.questions == ["what now"])
    wait_for(
        "the answer sent",
        lambda: any(m.text == "what now? 42." for m in fake_telegram.messages(1001)),
        timeout=60,
    )
    assert service.questions == ["what now"]
