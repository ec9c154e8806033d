"""What a stranger's traffic can make the web chat store: floods of 32 clients without cookies,
from one address and from many, get 429s once past the limits (held in the database, so across
workers), and the people they leave stay within the documented bound. The client address is the
one the proxy in front of each target saw, whatever the client wrote in X-Forwarded-For."""

from __future__ import annotations

import json
import math
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from mangum.adapter import HANDLERS
from mangum.types import LambdaConfig
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from portabot.channels.web import client_address
from portabot.testing.fakes import free_port, wait_until_healthy
from tests.conftest import BotFactory, query, run, say_web
from tests.storage.test_tls import behind_tls
from tests.targets.lambda_runtime import EVENTS, SHAPES, LambdaContext
from tests.test_cli import environment

ROOT = Path(__file__).resolve().parents[1]
FORGED = "6.6.6.6"


# The client address on each target.


def test_on_heroku_the_routers_entry_counts_not_the_clients() -> None:
    # The client sent "X-Forwarded-For: 6.6.6.6"; Heroku's router appended the address it saw.
    # uvicorn, trusting every peer there (forwarded_allow_ips "*"), made the forged one the client.
    config = runpy.run_path(str(ROOT / "targets/heroku/gunicorn.conf.py"))
    scope = through_uvicorn(config["forwarded_allow_ips"], "10.1.2.3", [f"{FORGED}, 203.0.113.7"])
    assert scope["client"][0] == FORGED
    assert client_address(scope, "heroku") == "203.0.113.7"
    # Two X-Forwarded-For headers are one list; the router's entry is still the last.
    scope = through_uvicorn("*", "10.1.2.3", [FORGED, "203.0.113.8"])
    assert client_address(scope, "heroku") == "203.0.113.8"


def test_on_a_vps_the_address_is_caddys_and_only_loopback_is_believed() -> None:
    config = runpy.run_path(str(ROOT / "targets/vps/gunicorn.conf.py"))
    trusted = config["forwarded_allow_ips"]
    # Caddy (2.5 and later) ignores a client's X-Forwarded-For and sends the address it saw.
    assert client_address(through_uvicorn(trusted, "127.0.0.1", ["198.51.100.4"]), None) == (
        "198.51.100.4"
    )
    # Had it appended instead, uvicorn takes the last entry that is not a trusted proxy.
    scope = through_uvicorn(trusted, "::1", [f"{FORGED}, 198.51.100.5"])
    assert client_address(scope, None) == "198.51.100.5"
    # Anyone reaching the server past Caddy is believed about nothing.
    assert client_address(through_uvicorn(trusted, "203.0.113.9", [FORGED]), None) == (
        "203.0.113.9"
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_on_lambda_the_address_is_the_request_contexts(shape: str) -> None:
    event = json.loads((EVENTS / f"{shape}.json").read_text())
    real = event_address(event)
    forge(event)
    scope = through_mangum(event)
    assert client_address(scope, "lambda") == real != FORGED


def test_an_ipv6_subscriber_is_one_address_and_odd_values_are_kept_short() -> None:
    def address(client: str) -> str:
        return client_address({"headers": [], "client": (client, 0)}, None)

    assert (
        address("2001:db8:1:2:3:4:5:6") == address("2001:db8:1:2:ffff::1") == ("2001:db8:1:2::/64")
    )
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:198.51.100.1") == "198.51.100.1"
    assert address("x" * 500) == "x" * 60
    assert client_address({"headers": []}, None) == "unknown"


def through_uvicorn(trusted: str, peer: str, forwarded_for: list[str]) -> Scope:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded_for]
    scope = {"type": "http", "client": (peer, 4321), "headers": headers, "scheme": "http"}

    async def nothing() -> Any:
        return {}

    async def ignore(message: Any) -> None:
        pass

    run(ProxyHeadersMiddleware(app, trusted)(scope, nothing, ignore))  # type: ignore[arg-type]
    return seen[0]


def event_address(event: dict[str, Any]) -> str:
    context = event.get("requestContext", {})
    if "http" in context:
        return str(context["http"]["sourceIp"])
    if "identity" in context:
        return str(context["identity"]["sourceIp"])
    return str(event["headers"]["x-forwarded-for"]).rpartition(",")[2].strip()  # an ALB


def forge(event: dict[str, Any]) -> None:
    """The client sent its own X-Forwarded-For: AWS appends the address it saw to it."""
    for headers in (event.get("headers"), event.get("multiValueHeaders")):
        if headers is None:
            continue
        for name in list(headers):
            if name.lower() == "x-forwarded-for":
                value = headers[name]
                if isinstance(value, list):
                    headers[name] = [f"{FORGED}, {v}" for v in value]
                else:
                    headers[name] = f"{FORGED}, {value}"


def through_mangum(event: dict[str, Any]) -> Scope:
    """The scope Mangum's handler for the event makes (the adapter itself would leave an event
    loop open in the test's thread)."""
    config = LambdaConfig(api_gateway_base_path="/", text_mime_types=[], exclude_headers=[])
    context = LambdaContext()
    [handler] = [h for h in HANDLERS if h.infer(event, context, config)]  # type: ignore[arg-type]
    return handler(event, context, config).scope


# Floods against a real server on loopback: the test's uvicorn believes X-Forwarded-For from
# loopback, as a VPS's gunicorn believes Caddy's, so each client can be given its address.

FLOOD = 32
"""Concurrent clients, as in the issue's measurement."""


def windows(started: float, ended: float, seconds: float) -> int:
    """How many fixed windows a run touched (a bound holds per window)."""
    return int(ended // seconds - started // seconds) + 1


def flood(
    url: str, posts: int, address: Callable[[int], str], *, cookies: bool = False
) -> list[httpx.Response]:
    """`posts` messages from FLOOD concurrent clients, the i-th post from `address(i)`; without
    cookies every post is a new visitor."""

    def client(k: int) -> list[httpx.Response]:
        answers = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(k, posts, FLOOD):
                if not cookies:
                    http.cookies.clear()
                answers.append(
                    http.post(
                        "/webhooks/web",
                        json={"text": "hello"},
                        headers={"X-Forwarded-For": address(i)},
                    )
                )
        return answers

    with ThreadPoolExecutor(FLOOD) as pool:
        return [answer for answers in pool.map(client, range(FLOOD)) for answer in answers]


def web_people(url: str) -> int:
    sql = "SELECT count(*) AS n FROM people JOIN accounts ON accounts.person_id = people.id"
    return int(query(url, f"{sql} WHERE accounts.platform = 'web'")[0]["n"])


MINUTE_LIMITS = ("too many messages from your address", "the web chat is busy")
"""The limits counted by the minute: a request over one of those and an hourly one is told the
longer wait, which in the last minute of an hour is the minute's."""


def check_refusals(answers: list[httpx.Response], reason: str) -> None:
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "no 429 at all"
    for answer in refused:
        wait = int(answer.headers["retry-after"])
        assert 1 <= wait <= 3600 and answer.json()["retry_after"] == wait
        error = answer.json()["error"]
        assert error.startswith(reason) or (wait <= 60 and error.startswith(MINUTE_LIMITS))
    assert {a.status_code for a in answers} <= {200, 429}


def test_a_flood_from_one_address_makes_at_most_its_hourly_new_visitors(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot()  # the defaults: 10 new visitors an hour from one address
    started = time.time()
    answers = flood(str(bot.base_url), 200, lambda i: "198.51.100.1")
    bound = 10 * windows(started, time.time(), 3600)
    accepted = sum(a.status_code == 200 for a in answers)
    assert 0 < accepted <= bound
    assert web_people(database_url) == accepted  # a refused visitor left nothing behind
    check_refusals(answers, "too many new visitors from your address")
    # Another address is not held up by this one's flood.
    other = bot.post(
        "/webhooks/web", json={"text": "/me"}, headers={"X-Forwarded-For": "192.0.2.1"}
    )
    assert other.json()["texts"] == ["Linked platforms: web."]


def test_a_flood_from_many_addresses_makes_at_most_the_hourly_total(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot(web_chat_new_total=50)
    started = time.time()
    answers = flood(str(bot.base_url), 320, lambda i: f"198.51.{i % 64}.{i % 251}")
    bound = 50 * windows(started, time.time(), 3600)
    accepted = sum(a.status_code == 200 for a in answers)
    assert 0 < accepted <= bound
    assert web_people(database_url) == accepted
    check_refusals(answers, "the web chat has had too many new visitors")


def test_a_visitor_who_keeps_writing_is_slowed_down_and_the_total_holds(
    start_bot: BotFactory, database_url: str
) -> None:
    bot = start_bot(web_chat_per_address=5, web_chat_total=40)
    started = time.time()
    sent = 0
    while True:  # until refused: a minute's window may end during the test
        sent += 1
        response = bot.post("/webhooks/web", json={"text": "hi"})
        if response.status_code == 429:
            break
        assert response.status_code == 200 and sent <= 5 * windows(started, time.time(), 60)
    assert response.json()["error"].startswith("too many messages from your address: try again in")
    assert web_people(database_url) == 1
    # Visitors who have their cookies, each at its own address: together held to the total.
    started = time.time()
    answers = flood(str(bot.base_url), 128, lambda i: f"203.0.113.{i % FLOOD}", cookies=True)
    assert sum(a.status_code == 200 for a in answers) <= 40 * windows(started, time.time(), 60)
    check_refusals(answers, "the web chat is busy")


def test_other_channels_never_touch_the_limits(bot: httpx.Client, database_url: str) -> None:
    from tests.conftest import post_telegram, post_vk, telegram_update, vk_event

    assert post_telegram(bot, telegram_update(1, "/me")).status_code == 200
    assert post_vk(bot, vk_event("e1", "/me")).text == "ok"
    assert query(database_url, "SELECT key FROM limits") == []
    say_web(bot, "/me")
    assert sorted(r["key"] for r in query(database_url, "SELECT key FROM limits")) == [
        "web",
        "web-new",
        "web-new:127.0.0.1",
        "web:127.0.0.1",
    ]


def test_web_chat_off_removes_the_chat(start_bot: BotFactory) -> None:
    bot = start_bot(web_chat=False)
    response = bot.post("/webhooks/web", json={"text": "hi"})
    assert response.status_code == 404 and "error" in response.json()
    home = bot.get("/").text
    assert "The web chat is off on this bot." in home and '<form id="chat">' not in home
    assert "webhooks/web" in home  # the script stays, and does nothing without the form
    on = start_bot().get("/").text
    assert '<form id="chat">' in on and "web chat is off" not in on


# On Heroku, through the Procfile's gunicorn and its configuration, with two workers.


@pytest.fixture
def heroku_web(empty_postgres: str, tmp_path: Path) -> Iterator[httpx.Client]:
    port = free_port()
    with behind_tls(empty_postgres, tmp_path) as url:  # a dyno requires TLS without sslmode
        env = environment(
            DYNO="web.1",
            PORT=str(port),
            WEB_CONCURRENCY="2",
            DATABASE_URL=url,
            SESSION_SECRET="heroku-session-secret",
        )
        command = [sys.executable, "-m", "gunicorn", "--config", "targets/heroku/gunicorn.conf.py"]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                wait_until_healthy(f"http://127.0.0.1:{port}", process)
                yield client
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)


def test_on_heroku_a_forged_forwarded_for_does_not_escape_the_limit(
    heroku_web: httpx.Client, empty_postgres: str
) -> None:
    started = time.time()
    # Each post forges a different first entry; the router's (last) entry is the same.
    answers = flood(str(heroku_web.base_url), 96, lambda i: f"10.{i % 250}.0.1, 198.51.100.9")
    accepted = sum(a.status_code == 200 for a in answers)
    assert 0 < accepted <= 10 * windows(started, time.time(), 3600)
    assert web_people(empty_postgres) == accepted
    check_refusals(answers, "too many new visitors from your address")
    keys = {row["key"] for row in query(empty_postgres, "SELECT key FROM limits")}
    assert "web-new:198.51.100.9" in keys and not any(key.startswith("web:10.") for key in keys)


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    from portabot.channels.web import slow_down
    from portabot.storage.limits import Limit

    response = slow_down(Limit("web:192.0.2.1", 20, 60), 0.2)
    assert response.headers["retry-after"] == "1" and response.status_code == 429
    assert math.isclose(json.loads(bytes(response.body))["retry_after"], 1)
