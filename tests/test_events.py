"""Events from outside (issue 15): `POST /api/events` with API_TOKEN delivers an event to a
person's flow as an update of its own (platform "api", the caller's id), so a repeated id is
acknowledged and processed once; the support desk answers a ticket through it on every platform
the person linked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.support import Tickets, flow
from portabot import Context, Flow, Kind, Message, Passphrase, State, event
from portabot.storage.migrate import upgrade
from portabot.testing import Harness
from portabot.testing.fakes import FakeTelegram, FakeVk
from tests.conftest import BotFactory, query, say_web
from tests.test_cli import environment
from tests.test_linking import code_from, telegram_says, vk_says
from tests.test_notify import ANN_TELEGRAM, ANN_VK, person_id, telegram_texts, vk_texts

API_TOKEN = "test-api-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent
BOB_TELEGRAM = 2002


def post_event(bot: httpx.Client, body: Any, token: str | None = API_TOKEN) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return bot.post("/api/events", json=body, headers=headers)


def api_updates(database_url: str) -> int:
    rows = query(database_url, "SELECT count(*) AS n FROM updates WHERE platform = 'api'")
    return int(rows[0]["n"])


@pytest.fixture
def desk(database_url: str, start_bot: BotFactory) -> httpx.Client:
    upgrade(database_url, Tickets().tables)
    if database_url.startswith("postgresql"):
        query(database_url, "TRUNCATE support_tickets RESTART IDENTITY")
    return start_bot(flow, api_token=API_TOKEN)


def ann_on_two_platforms(
    bot: httpx.Client, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> int:
    """Ann links VK and Telegram and opens ticket #1 on Telegram; returns her person id. The
    fakes forget what they sent until then."""
    code = code_from(vk_says(bot, fake_vk, "link-1", "/bind", user_id=ANN_VK))
    assert "Linked!" in telegram_says(bot, 9001, f"/in {code}", user_id=ANN_TELEGRAM)
    opened = telegram_says(bot, 9002, "/ticket The printer is on fire", user_id=ANN_TELEGRAM)
    assert opened.startswith("Ticket #1 is open"), opened
    fake_vk.reset()
    fake_telegram.reset()
    person = person_id(database_url, "telegram", ANN_TELEGRAM)
    assert person == person_id(database_url, "vk", ANN_VK)
    return person


ANSWER = "Answer to ticket #1: Unplug it, then plug it in again."


def answer(to: Any, event_id: str, ticket: int = 1) -> dict[str, Any]:
    text = "Unplug it, then plug it in again."
    return {"to": to, "name": "answer", "data": {"ticket": ticket, "text": text}, "id": event_id}


def test_without_api_token_the_endpoint_does_not_exist(start_bot: BotFactory) -> None:
    bot = start_bot()
    response = post_event(bot, answer(1, "e1"))
    assert response.status_code == 404
    assert "API_TOKEN" in response.json()["error"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing Authorization"),
        ("wrong-token-0123456789", "wrong token"),
        (API_TOKEN[:-1], "wrong token"),
    ],
)
def test_a_missing_or_wrong_token_is_refused_and_nothing_stored(
    desk: httpx.Client,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    token: str | None,
    reason: str,
) -> None:
    response = post_event(desk, answer(1, "e1"), token=token)
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert api_updates(database_url) == 0
    assert API_TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_a_token_in_another_scheme_is_refused(desk: httpx.Client) -> None:
    headers = {"Authorization": f"Basic {API_TOKEN}"}
    response = desk.post("/api/events", json=answer(1, "e1"), headers=headers)
    assert response.status_code == 401
    assert "not Bearer" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ([], 422, "body"),
        ({"name": "answer", "id": "e1"}, 422, "to: required"),
        ({"to": 1, "id": "e1"}, 422, "name: required"),
        ({"to": 1, "name": "answer"}, 422, "id: required"),
        ({"to": 1, "name": "Answer Now", "id": "e1"}, 422, "name:"),
        ({"to": 1, "name": "answer", "data": [1], "id": "e1"}, 422, "data:"),
        ({"to": 1, "name": "answer", "id": "x" * 65}, 422, "id:"),
        ({"to": 1, "name": "answer", "id": "has space"}, 422, "id:"),
        ({"to": 1, "name": "answer", "id": 7}, 422, "id:"),
        ({"to": 0, "name": "answer", "id": "e1"}, 422, "to:"),
        ({"to": True, "name": "answer", "id": "e1"}, 422, "to:"),
        ({"to": "slack:1", "name": "answer", "id": "e1"}, 422, "to:"),
        ({"to": "telegram:", "name": "answer", "id": "e1"}, 422, "to:"),
        ({"to": 1, "name": "answer", "id": "e1", "extra": 1}, 422, "not a field"),
    ],
)
def test_bad_bodies_get_a_reason_naming_the_field(
    desk: httpx.Client, database_url: str, body: Any, status: int, field: str
) -> None:
    response = post_event(desk, body)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]
    assert api_updates(database_url) == 0


def test_bodies_that_are_not_json_or_too_big_are_refused(desk: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    assert desk.post("/api/events", content=b"{", headers=headers).status_code == 400
    text = {**headers, "Content-Type": "text/plain"}
    assert desk.post("/api/events", content=b"{}", headers=text).status_code == 415
    big = answer(1, "e1") | {"data": {"text": "x" * 70_000}}
    response = post_event(desk, big)
    assert response.status_code == 413
    assert "65536" in response.json()["error"]


def test_an_unknown_account_or_person_is_not_found(desk: httpx.Client, database_url: str) -> None:
    response = post_event(desk, answer("telegram:999", "e1"))
    assert response.status_code == 404
    assert "no account telegram:999" in response.json()["error"]
    response = post_event(desk, answer(424242, "e2"))
    assert response.status_code == 404
    assert response.json()["error"] == "no person 424242"
    assert api_updates(database_url) == 0


def test_an_answer_reaches_the_person_on_both_platforms_once(
    desk: httpx.Client, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    person = ann_on_two_platforms(desk, fake_telegram, fake_vk, database_url)
    response = post_event(desk, answer(person, "answer-1"))
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "duplicate": False}
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [ANSWER]
    assert vk_texts(fake_vk, ANN_VK) == [ANSWER]
    # Addressed by an account, the same person: the same answer under another id.
    response = post_event(desk, answer(f"vk:{ANN_VK}", "answer-2"))
    assert response.json() == {"ok": True, "duplicate": False}
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [ANSWER, ANSWER]
    assert vk_texts(fake_vk, ANN_VK) == [ANSWER, ANSWER]
    # Again with an id seen before: acknowledged, nothing sent.
    response = post_event(desk, answer(person, "answer-1"))
    assert response.json() == {"ok": True, "duplicate": True}
    assert len(telegram_texts(fake_telegram, ANN_TELEGRAM)) == 2
    assert len(vk_texts(fake_vk, ANN_VK)) == 2


def test_the_same_event_three_times_at_once_is_answered_once(
    desk: httpx.Client, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    person = ann_on_two_platforms(desk, fake_telegram, fake_vk, database_url)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}

    async def three() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=desk.base_url, timeout=30) as client:
            posts = (
                client.post("/api/events", json=answer(person, "once"), headers=headers)
                for _ in range(3)
            )
            return list(await asyncio.gather(*posts))

    responses = asyncio.run(three())
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sorted(r.json()["duplicate"] for r in responses) == [False, True, True]
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [ANSWER]
    assert vk_texts(fake_vk, ANN_VK) == [ANSWER]
    assert api_updates(database_url) == 1


def test_an_answer_to_a_ticket_not_the_persons_reaches_no_one(
    desk: httpx.Client, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    person = ann_on_two_platforms(desk, fake_telegram, fake_vk, database_url)
    opened = telegram_says(desk, 9100, "/ticket Bob's own", user_id=BOB_TELEGRAM)
    assert opened.startswith("Ticket #2 is open"), opened
    assert telegram_says(desk, 9003, "/close 1", user_id=ANN_TELEGRAM).startswith("Ticket #1 is")
    fake_telegram.reset()
    for event_id, ticket in (("closed", 1), ("bobs", 2), ("none", 99)):
        response = post_event(desk, answer(person, event_id, ticket=ticket))
        assert response.json() == {"ok": True, "duplicate": False}, event_id
    bad_data = {"to": person, "name": "answer", "data": {"ticket": "1"}, "id": "bad-data"}
    assert post_event(desk, bad_data).json() == {"ok": True, "duplicate": False}
    other = {"to": person, "name": "something-else", "id": "other"}
    assert post_event(desk, other).json() == {"ok": True, "duplicate": False}
    assert fake_telegram.sent() == []
    assert fake_vk.texts() == []
    assert api_updates(database_url) == 5


def test_the_operator_lists_open_tickets_with_their_owners(
    desk: httpx.Client, fake_telegram: FakeTelegram, fake_vk: FakeVk, database_url: str
) -> None:
    person = ann_on_two_platforms(desk, fake_telegram, fake_vk, database_url)
    result = subprocess.run(
        [sys.executable, "-m", "examples.support", "open"],
        cwd=ROOT,
        env=environment(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"#1 person {person}: The printer is on fire\n"


# The flow's side: @event routes and Flow.event, their replies told to the person.


class Quiet(State):
    def handle(self, ctx: Context, message: Message) -> None:
        if message.kind is Kind.EVENT:
            ctx.reply(f"Unrouted event {message.event}")


@event("ping")
def ping(ctx: Context, message: Message) -> None:
    ctx.reply(f"pong {message.data.get('n')}")
    ctx.reply("and a second message")


def test_event_routes_and_their_replies_go_to_the_person(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    events = Flow([Quiet], routes=[ping])

    @events.event()
    def anything(ctx: Context, message: Message) -> None:
        ctx.reply(f"Any event: {message.event}")

    bot = start_bot(events, api_token=API_TOKEN)
    assert telegram_says(bot, 1, "hello", user_id=ANN_TELEGRAM) == ""
    body = {"to": f"telegram:{ANN_TELEGRAM}", "name": "ping", "data": {"n": 3}, "id": "p1"}
    assert post_event(bot, body).json() == {"ok": True, "duplicate": False}
    assert post_event(bot, body | {"name": "other", "id": "p2"}).status_code == 200
    assert telegram_texts(fake_telegram, ANN_TELEGRAM) == [
        "pong 3",
        "and a second message",
        "Any event: other",
    ]
    rows = query(database_url, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
    assert rows[0]["n"] == 0


@event("boom")
def boom(ctx: Context, message: Message) -> None:
    raise RuntimeError("the flow's own bug")


def test_an_event_the_flow_keeps_failing_on_is_given_up_telling_the_person_nothing(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = start_bot(Flow([Quiet], routes=[boom]), api_token=API_TOKEN)
    assert telegram_says(bot, 1, "hello", user_id=ANN_TELEGRAM) == ""
    body = {"to": f"telegram:{ANN_TELEGRAM}", "name": "boom", "id": "b1"}
    # Not acknowledged twice (the caller retries with the same id), then given up.
    assert [post_event(bot, body).status_code for _ in range(2)] == [503, 503]
    given_up = post_event(bot, body)
    assert given_up.status_code == 200
    assert given_up.json()["ok"] is False and "given up" in given_up.json()["error"]
    assert post_event(bot, body).json() == {"ok": True, "duplicate": True}
    assert fake_telegram.sent() == []
    assert query(database_url, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0
    failed = query(database_url, "SELECT platform, update_id FROM failed_updates")
    assert failed == [{"platform": "api", "update_id": "b1"}]


def test_a_refused_token_is_one_log_line(
    desk: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        assert (
            post_event(desk, answer(1, "e1"), token="another-token-0123456789").status_code == 401
        )
    ours = (r for r in caplog.records if r.name.startswith("portabot"))
    lines = [r.getMessage() for r in ours if "401" in r.getMessage()]
    assert lines == ["events: 401 wrong token"]
    assert "another-token" not in caplog.text


def test_the_harness_delivers_events_and_shows_what_they_told() -> None:
    with Harness(flow) as bot:
        ann, ann_vk = bot.person("telegram", 11), bot.person("vk", 22)
        code = ann.say("/bind")[0].rsplit("/in ", 1)[1]
        assert ann_vk.say(f"/in {code}")[0].startswith("Linked!")
        assert ann.say("/ticket The printer")[0].startswith("Ticket #1 is open")
        answered = ann_vk.event("answer", {"ticket": 1, "text": "Fixed."}, id="op-1")
        assert answered == []
        told = "Answer to ticket #1: Fixed."
        assert answered.told == [("telegram", "11", told), ("vk", "22", told)]
        assert ann_vk.redeliver().told == []
        assert ann.event("answer", {"ticket": 2, "text": "Fixed."}).told == []
        with pytest.raises(ValueError, match="event name"):
            ann.event("Not A Name")


def test_an_event_for_someone_not_past_the_passphrase_tells_them_nothing() -> None:
    gated = Flow([Quiet], routes=[ping], features=[Passphrase()])
    with Harness(gated, bot_passphrase="Open Sesame") as bot:
        ann = bot.person("telegram", 11)
        assert ann.say("hello") == ["Hello! This bot is private. Send the passphrase to start."]
        assert ann.event("ping", {"n": 1}).told == []
        assert ann.conversation.state == "locked"
        assert ann.say("open sesame")[0].startswith("You're in")
        assert ann.event("ping", {"n": 2}).told == [
            ("telegram", "11", "pong 2"),
            ("telegram", "11", "and a second message"),
        ]


def test_an_answer_to_a_web_visitor_waits_in_their_inbox(
    desk: httpx.Client, database_url: str
) -> None:
    assert say_web(desk, "/ticket From the page")[0].startswith("Ticket #1 is open")
    visitor = str(query(database_url, "SELECT user_id FROM accounts")[0]["user_id"])
    response = post_event(desk, answer(f"web:{visitor}", "web-1"))
    assert response.json() == {"ok": True, "duplicate": False}
    collected = desk.post("/webhooks/web/inbox", json={})
    assert collected.status_code == 200, collected.text
    assert collected.json()["texts"] == [ANSWER]
