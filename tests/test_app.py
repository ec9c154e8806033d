"""The app itself: health check, home page, and `portabot.app:app` built from the environment."""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import pytest

from portabot.testing.fakes import free_port
from tests.conftest import (
    BOT_USERNAME,
    VK_GROUP,
    BotFactory,
    make_settings,
    post_telegram,
    telegram_update,
)


def test_healthz_when_the_database_answers(bot: httpx.Client) -> None:
    response = bot.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["channels"] == ["telegram", "vk", "web"]


def test_healthz_when_the_database_is_down(start_bot: BotFactory) -> None:
    bot = start_bot(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    response = bot.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


@pytest.mark.parametrize("session_secret", ["configured", None])
def test_an_update_is_not_acknowledged_when_the_database_is_down(
    start_bot: BotFactory, session_secret: str | None
) -> None:
    bot = start_bot(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        session_secret=session_secret,
    )
    web = bot.post("/webhooks/web", json={"text": "hi"})
    assert web.status_code == 503 and "retry" in web.json()["error"]
    telegram = post_telegram(bot, telegram_update(1, "/help"))
    assert telegram.status_code == 503


def test_the_home_page_links_to_the_bot_and_has_a_chat_box(bot: httpx.Client) -> None:
    page = bot.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"https://t.me/{BOT_USERNAME}" in page.text
    assert f"https://vk.com/club{VK_GROUP}" in page.text
    assert 'id="chat"' in page.text and "webhooks/web" in page.text


def test_the_home_page_without_other_platforms(start_bot: BotFactory) -> None:
    page = start_bot(telegram_token=None, vk_group_id=None).get("/")
    assert "t.me" not in page.text and "vk.com" not in page.text
    assert "Chat with it right here" in page.text


def test_module_app_is_built_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_TOKEN", "1:abc")
    module = importlib.reload(importlib.import_module("portabot.app"))
    app = module.app
    assert app is module.app  # built once
    assert sorted(app.state.bot.channels) == ["telegram", "web"]
    assert app.state.bot.settings.database_url == make_settings().database_url
