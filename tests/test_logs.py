"""No token, secret or passphrase in any log line of a full scenario, at the most verbose level."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from portabot.logs import EVERY, MAX_KINDS, ThrottledLog
from portabot.testing.fakes import FakeTelegram, FakeVk
from tests.conftest import (
    SECRET,
    TOKEN,
    VK_GROUP,
    VK_SECRET,
    VK_TOKEN,
    post_telegram,
    post_vk,
    say_web,
    telegram_update,
    vk_event,
)
from tests.test_cli import portabot_serve

PASSPHRASE = "correct-horse-battery"
SESSION_SECRET = "session-secret-for-cookies"


def test_secrets_never_reach_the_logs(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_vk: FakeVk
) -> None:
    with portabot_serve(
        tmp_path,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        VK_TOKEN=VK_TOKEN,
        VK_GROUP_ID=str(VK_GROUP),
        VK_SECRET=VK_SECRET,
        VK_API_URL=fake_vk.url,
        BOT_PASSPHRASE=PASSPHRASE,
        SESSION_SECRET=SESSION_SECRET,
        LOG_LEVEL="DEBUG",
    ) as served:
        bot = served.client
        say_web(bot, PASSPHRASE)
        code = say_web(bot, "/bind")[0].splitlines()[-1]
        post_telegram(bot, telegram_update(1, f"the passphrase is {PASSPHRASE}"))
        post_telegram(bot, telegram_update(2, code))
        post_telegram(bot, telegram_update(3, "/me"), secret="wrong")
        post_telegram(bot, telegram_update(4, "/me"), secret=None)
        bot.post(
            "/webhooks/telegram", content=b"{bad", headers={"Content-Type": "application/json"}
        )
        bot.post("/webhooks/web", json={"text": 1})
        post_vk(bot, vk_event("v1", PASSPHRASE))
        post_vk(bot, vk_event("v2", "/me", secret="wrong"))
        fake_vk.fail_next(code=5, message="User authorization failed")
        post_vk(bot, vk_event("v3", "/me"))
    output = served.output
    assert "POST /webhooks/telegram" in output  # the access log was on
    assert "wrong x-telegram-bot-api-secret-token" in output  # and so were our warnings
    assert "stays in the outbox: VK messages.send" in output
    for secret in (
        TOKEN,
        TOKEN.split(":")[1],
        SECRET,
        PASSPHRASE,
        SESSION_SECRET,
        VK_TOKEN,
        VK_SECRET,
    ):
        assert secret not in output


def test_a_flood_of_bad_deliveries_logs_a_line_per_reason_every_few_seconds(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    with portabot_serve(
        tmp_path,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        LOG_LEVEL="WARNING",  # no access log: its 1,000 lines would fill the unread pipe
    ) as served:
        started = time.monotonic()
        for n in range(1000):
            response = post_telegram(served.client, telegram_update(n), secret="wrong")
            assert response.status_code == 403
        elapsed = time.monotonic() - started
    refusals = [line for line in served.output.splitlines() if "403 wrong x-telegram" in line]
    assert 1 <= len(refusals) <= 1 + elapsed / EVERY, refusals


def test_a_count_of_the_lines_left_out_comes_with_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("portabot.test"), every=5, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="portabot.test"):
        for second in range(12):  # 100 a second, of two kinds
            now[0] = float(second)
            for n in range(100):
                kind = "wrong secret" if n % 2 else "not JSON"
                throttled.warning(kind, "telegram webhook: 4xx %s", kind)
    assert [r.getMessage() for r in caplog.records] == [
        "telegram webhook: 4xx not JSON",
        "telegram webhook: 4xx wrong secret",
        "telegram webhook: 4xx not JSON (and 249 more in the last 5 s)",
        "telegram webhook: 4xx wrong secret (and 249 more in the last 5 s)",
        "telegram webhook: 4xx not JSON (and 249 more in the last 5 s)",
        "telegram webhook: 4xx wrong secret (and 249 more in the last 5 s)",
    ]


def test_reasons_a_stranger_makes_up_cannot_grow_the_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttled = ThrottledLog(logging.getLogger("portabot.test"), every=5, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="portabot.test"):
        for n in range(10_000):
            throttled.warning(f"reason {n}", "vk webhook: 400 reason %d", n)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"vk webhook: 400 reason {n}" for n in range(MAX_KINDS + 1)]
    assert len(throttled._kinds) == MAX_KINDS + 1  # the last shared by every later kind


def test_a_client_gone_mid_body_is_a_debug_line(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    with portabot_serve(
        tmp_path,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        LOG_LEVEL="DEBUG",
    ) as served:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", served.port)) as half_sent:
                half_sent.sendall(
                    b"POST /webhooks/telegram HTTP/1.1\r\nHost: bot\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
                    b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b'\r\n\r\n{"upd'
                )
        assert served.client.get("/healthz").status_code == 200
    output = served.output
    assert output.count("telegram webhook: the client left before its body was read") == 3
    assert "ERROR" not in output and "Traceback" not in output
