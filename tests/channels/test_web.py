"""The web chat: a signed HttpOnly cookie names the person; the same pipeline as every channel.
The cookie is `__Host-` prefixed over HTTPS, signed with HMAC-SHA256 and a time, and lasts
WEB_CHAT_KEEP_DAYS after the visitor's last message."""

from __future__ import annotations

import hashlib
import time

import httpx
from itsdangerous import Signer, TimestampSigner

from portabot.channels.web import COOKIE, SALT, SECURE_COOKIE
from tests.conftest import BotFactory, query, say_web

HTTPS = {"X-Forwarded-Proto": "https"}
"""As behind Caddy, Heroku's router or a Lambda Function URL: the visitor used HTTPS."""
THIRTY_DAYS = 30 * 86_400


class SignedAt(TimestampSigner):
    """Signs as the app does, at a chosen time."""

    def __init__(self, at: float) -> None:
        super().__init__("test-session-secret", salt=SALT, digest_method=hashlib.sha256)
        self.at = at

    def get_timestamp(self) -> int:
        return int(self.at)


def test_the_cookie_is_signed_httponly_and_keeps_the_person(
    bot: httpx.Client, database_url: str
) -> None:
    response = bot.post("/webhooks/web", json={"text": "/me"})
    assert response.json()["texts"] == ["Linked platforms: web."]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # PUBLIC_URL is not https here: browsers refuse __Host-
    assert f"Max-Age={THIRTY_DAYS}" in cookie and "Path=/" in cookie
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


def test_the_cookie_is_host_prefixed_and_secure_behind_https(start_bot: BotFactory) -> None:
    bot = start_bot(public_url="https://bot.example.com")
    cookie = bot.post("/webhooks/web", json={"text": "hi"}).headers["set-cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE}=") and "Secure" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie


def test_the_cookie_is_host_prefixed_when_the_request_came_over_https(
    bot: httpx.Client, database_url: str
) -> None:
    response = bot.post("/webhooks/web", json={"text": "/bind"}, headers=HTTPS)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE}=") and "Secure" in cookie and "Domain" not in cookie
    # The visitor is known by the prefixed cookie (sent by hand: httpx keeps a Secure cookie
    # from an http:// server to itself).
    visitor = response.cookies[SECURE_COOKIE]
    bot.cookies.clear()
    again = bot.post(
        "/webhooks/web",
        json={"text": "hello"},
        headers={**HTTPS, "Cookie": f"{SECURE_COOKIE}={visitor}"},
    )
    assert again.json()["texts"][0].startswith("Waiting for /in ")
    # Over HTTPS an unprefixed cookie, which a subdomain could have set, names nobody.
    fresh = bot.post(
        "/webhooks/web", json={"text": "hello"}, headers={**HTTPS, "Cookie": f"{COOKIE}={visitor}"}
    )
    assert fresh.json()["texts"] == ["Send /help to see what I can do."]
    assert len(query(database_url, "SELECT id FROM people")) == 2


def with_cookie(bot: httpx.Client, value: str, text: str) -> httpx.Response:
    bot.cookies.clear()
    return bot.post("/webhooks/web", json={"text": text}, headers={"Cookie": f"{COOKIE}={value}"})


def test_the_cookie_is_signed_with_a_time_and_renewed_with_every_answer(
    bot: httpx.Client, database_url: str
) -> None:
    say_web(bot, "/bind")
    [account] = query(database_url, "SELECT user_id FROM accounts")
    visitor = account["user_id"]
    # Signed 29 days ago: still the visitor, and the answer signs it again from now.
    signed = SignedAt(time.time() - THIRTY_DAYS + 86_400).sign(visitor).decode()
    response = with_cookie(bot, signed, "hello")
    assert response.json()["texts"][0].startswith("Waiting for /in ")
    renewed = response.cookies[COOKIE]
    assert renewed.count(".") == 2 and renewed != signed  # value.time.signature
    now = TimestampSigner("test-session-secret", salt=SALT, digest_method=hashlib.sha256)
    assert now.unsign(renewed, max_age=60) == visitor.encode()
    # Signed longer ago than WEB_CHAT_KEEP_DAYS: a new visitor.
    signed = SignedAt(time.time() - THIRTY_DAYS - 60).sign(visitor).decode()
    assert with_cookie(bot, signed, "hello").json()["texts"] == ["Send /help to see what I can do."]
    assert len(query(database_url, "SELECT id FROM people")) == 2


def test_a_cookie_from_before_hmac_sha256_is_a_new_visitor(
    bot: httpx.Client, database_url: str
) -> None:
    say_web(bot, "/bind")
    [account] = query(database_url, "SELECT user_id FROM accounts")
    old = Signer("test-session-secret", salt="portabot web chat")  # HMAC-SHA1, no time
    answer = with_cookie(bot, old.sign(account["user_id"]).decode(), "hello")
    assert answer.json()["texts"] == ["Send /help to see what I can do."]
    assert len(query(database_url, "SELECT id FROM people")) == 2


def test_a_retried_message_with_the_same_id_is_processed_once(
    bot: httpx.Client, database_url: str
) -> None:
    first = bot.post("/webhooks/web", json={"text": "/bind", "id": "msg-1"})
    again = bot.post("/webhooks/web", json={"text": "/bind", "id": "msg-1"})
    assert "/in " in first.json()["texts"][0]
    assert again.json()["texts"] == []
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
