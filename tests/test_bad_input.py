"""Bad input on every webhook: a clear 4xx (or 200 where re-delivery cannot help), never a 500,
nothing stored, one log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import SECRET, post_telegram, query, telegram_update

TELEGRAM_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
JSON = {"Content-Type": "application/json"}
MiB = 1024 * 1024

BAD_BODIES = [
    pytest.param(b"{not json", 400, id="malformed-json"),
    pytest.param(b"\xff\xfe{}", 400, id="not-utf8"),
    pytest.param(b"[1, 2]", 400, id="not-an-object"),
    pytest.param(b'"text"', 400, id="a-string"),
    pytest.param(b"{}", 400, id="no-update-id"),
    pytest.param(b'{"update_id": "12"}', 400, id="update-id-string"),
    pytest.param(b'{"update_id": 1, "message": "hi"}', 400, id="message-string"),
    pytest.param(
        json.dumps(
            {"update_id": 1, "message": {"message_id": 1, "chat": {}, "text": "x"}}
        ).encode(),
        400,
        id="chat-without-id",
    ),
    pytest.param(
        json.dumps(
            {**telegram_update(1), "message": {**telegram_update(1)["message"], "text": 5}}
        ).encode(),
        400,
        id="text-a-number",
    ),
]


def nothing_stored(url: str) -> bool:
    return all(
        query(url, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 0
        for table in ("updates", "people", "accounts", "outbox")
    )


@pytest.mark.parametrize(("body", "status"), BAD_BODIES)
def test_bad_telegram_bodies(
    bot: httpx.Client, database_url: str, body: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="portabot"):
        response = bot.post("/webhooks/telegram", content=body, headers=TELEGRAM_HEADERS)
    assert response.status_code == status
    assert response.json()["error"]
    assert nothing_stored(database_url)
    assert len([r for r in caplog.records if r.name.startswith("portabot")]) == 1


@pytest.mark.parametrize("path", ["/webhooks/telegram", "/webhooks/web"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
def test_wrong_content_type(
    bot: httpx.Client, database_url: str, path: str, content_type: str
) -> None:
    headers = {**TELEGRAM_HEADERS, "Content-Type": content_type}
    response = bot.post(path, content=b'{"update_id": 1}', headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert nothing_stored(database_url)


@pytest.mark.parametrize("path", ["/webhooks/telegram", "/webhooks/web"])
def test_a_body_over_the_limit_is_refused(bot: httpx.Client, database_url: str, path: str) -> None:
    padding = "x" * MiB
    body = json.dumps({**telegram_update(1, "hi"), "padding": padding}).encode()
    response = bot.post(path, content=body, headers=TELEGRAM_HEADERS)
    assert response.status_code == 413
    assert nothing_stored(database_url)


def test_a_streamed_body_over_the_limit_is_refused_without_a_length(
    bot: httpx.Client, database_url: str
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"update_id": 1, "padding": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = bot.post("/webhooks/telegram", content=chunks(), headers=TELEGRAM_HEADERS)
    assert response.status_code == 413
    assert nothing_stored(database_url)


def test_very_long_and_odd_text_is_handled(bot: httpx.Client, database_url: str) -> None:
    for update_id, text in enumerate(
        [
            "x" * 100_000,
            "\x00nul",
            "\ud800 lone surrogate",
            "emoji 🦊 and ёжик",
            "/in " + "a" * 5000,
        ],
        start=1,
    ):
        response = post_telegram(bot, telegram_update(update_id, text))
        assert response.status_code == 200, (text[:20], response.text)
    assert len(query(database_url, "SELECT update_id FROM updates")) == 5


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"{}", 422, id="no-text"),
        pytest.param(b'{"text": 5}', 422, id="text-a-number"),
        pytest.param(b'{"text": "hi", "extra": 1}', 422, id="unknown-field"),
        pytest.param(json.dumps({"text": "x" * 5000}).encode(), 422, id="text-too-long"),
        pytest.param(b'{"text": "hi", "id": ""}', 422, id="empty-id"),
        pytest.param(b"nope", 400, id="malformed-json"),
    ],
)
def test_bad_web_chat_bodies(
    bot: httpx.Client, database_url: str, body: bytes, status: int
) -> None:
    response = bot.post("/webhooks/web", content=body, headers=JSON)
    assert response.status_code == status
    assert response.json()["error"]
    assert nothing_stored(database_url)


def test_unknown_channel_and_wrong_method(bot: httpx.Client) -> None:
    assert bot.post("/webhooks/icq", json={}).status_code == 404
    assert bot.get("/webhooks/telegram").status_code == 405
