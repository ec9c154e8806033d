"""No token, secret or passphrase in any log line of a full scenario, at the most verbose level."""

from __future__ import annotations

from pathlib import Path

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
from tests.servers import FakeTelegram, FakeVk
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
