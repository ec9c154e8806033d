"""The web chat: a signed HttpOnly cookie names the person; the same pipeline as every channel."""

from __future__ import annotations

import httpx

from core.channels.web import COOKIE
from tests.conftest import BotFactory, query, say_web


def test_the_cookie_is_signed_httponly_and_keeps_the_person(
    bot: httpx.Client, database_url: str
) -> None:
    response = bot.post("/webhooks/web", json={"text": "/me"})
    assert response.json() == {"replies": ["Linked platforms: web."]}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # PUBLIC_URL is not https here
    say_web(bot, "/bind")
    say_web(bot, "hello")
    assert len(query(database_url, "SELECT id FROM people")) == 1


def test_a_forged_cookie_gets_a_new_person(bot: httpx.Client, database_url: str) -> None:
    say_web(bot, "/me")
    visitor = bot.cookies[COOKIE].split(".")[0]
    bot.cookies.set(COOKIE, f"{visitor}.forged-signature")
    say_web(bot, "/me")
    accounts = query(database_url, "SELECT user_id FROM accounts")
    assert len(accounts) == 2 and visitor in {a["user_id"] for a in accounts}


def test_the_cookie_is_secure_behind_https(start_bot: BotFactory) -> None:
    bot = start_bot(public_url="https://bot.example.com")
    assert "Secure" in bot.post("/webhooks/web", json={"text": "hi"}).headers["set-cookie"]


def test_the_cookie_is_secure_when_the_request_came_over_https(bot: httpx.Client) -> None:
    # As behind Caddy, or a Lambda Function URL: the proxy says the visitor used HTTPS.
    response = bot.post(
        "/webhooks/web", json={"text": "hi"}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in response.headers["set-cookie"]


def test_a_retried_message_with_the_same_id_is_processed_once(
    bot: httpx.Client, database_url: str
) -> None:
    first = bot.post("/webhooks/web", json={"text": "/bind", "id": "msg-1"})
    again = bot.post("/webhooks/web", json={"text": "/bind", "id": "msg-1"})
    assert "/in " in first.json()["replies"][0]
    assert again.json() == {"replies": []}
    assert len(query(database_url, "SELECT code FROM link_codes")) == 1


def test_the_session_secret_is_made_once_and_kept_in_the_database(
    start_bot: BotFactory, database_url: str
) -> None:
    first = start_bot(session_secret=None)
    say_web(first, "/bind")
    stored = query(database_url, "SELECT value FROM secrets WHERE name = 'session'")
    assert len(stored) == 1 and len(stored[0]["value"]) >= 32
    # Another worker (a second app on the same database) accepts the same cookie.
    second = start_bot(session_secret=None)
    second.cookies = first.cookies
    assert say_web(second, "hello")[0].startswith("Waiting for /in ")
