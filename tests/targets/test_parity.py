"""One scenario, the same replies through every entry point: the ASGI app called directly, the
Procfile's `web:` command line under honcho, the Lambda handler fed each event shape, and the
gunicorn command line of the systemd unit's ExecStart."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from portabot.app import create_app
from portabot.testing.fakes import FakeTelegram, free_port, wait_until_healthy
from tests.conftest import SECRET, TOKEN, make_settings, telegram_update
from tests.storage.test_tls import behind_tls
from tests.targets.lambda_runtime import SHAPES, Answer, Container, request
from tests.targets.test_heroku import heroku_environment, honcho
from tests.targets.test_vps import run_like_systemd

SESSION_SECRET = "parity-session-secret"
EXPECTED = [
    "Your code is valid for 10 min. Send this from another platform:\n/in <code>",
    "Linked! Your platforms: telegram, web.",
    "Linked platforms: telegram, web.",
    "Linked platforms: telegram, web.",
]


class Entry(Protocol):
    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request; the entry keeps the web chat's cookie as a browser would."""


def scenario(entry: Entry) -> list[str]:
    """The linking flow: the web chat asks for a code, Telegram redeems it, both ask /me."""
    replies: list[str] = []

    def web(text: str) -> None:
        body = json.dumps({"text": text}).encode()
        status, answer = entry.post("/webhooks/web", body, {"content-type": "application/json"})
        assert status == 200, answer
        replies.extend(json.loads(answer)["texts"])

    def telegram(update_id: int, text: str) -> None:
        body = json.dumps(telegram_update(update_id, text, user_id=77)).encode()
        headers = {"content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET}
        status, answer = entry.post("/webhooks/telegram", body, headers)
        assert status == 200, answer
        replies.append(json.loads(answer)["text"])

    web("/bind")
    code = replies[-1].rsplit(" ", 1)[-1]
    telegram(1, f"/in {code}")
    telegram(2, "/me")
    web("/me")
    return [re.sub(r"/in [a-z-]+$", "/in <code>", reply) for reply in replies]


class HttpEntry:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        response = self.client.post(path, content=body, headers=headers)
        return response.status_code, response.content


class AsgiEntry:
    """The app called in-process, on one event loop, the way any ASGI server calls it."""

    def __init__(self, settings_url: str, api_url: str) -> None:
        settings = make_settings(
            database_url=settings_url,
            telegram_token=TOKEN,
            telegram_secret=SECRET,
            telegram_api_url=api_url,
            session_secret=SESSION_SECRET,
        )
        self.app = create_app(settings)
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://portabot"
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        response = self.loop.run_until_complete(
            self.client.post(path, content=body, headers=headers)
        )
        return response.status_code, response.content

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.app.state.bot.close())
        self.loop.close()


class LambdaEntry:
    def __init__(self, container: Container, shape: str) -> None:
        self.container = container
        self.shape = shape
        self.cookies: list[str] = []

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        event = request(self.shape, "POST", path, body, headers, self.cookies)
        answer = Answer.of(self.container.invoke(event))
        if answer.cookies:
            self.cookies[:] = [cookie.split(";")[0] for cookie in answer.cookies]
        return answer.status, answer.body


def served(process: subprocess.Popen[str], port: int) -> Iterator[HttpEntry]:
    """Wait for a server process to answer /healthz, hand it out, then stop it with SIGTERM."""
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_healthy(f"http://127.0.0.1:{port}", process)
            yield HttpEntry(client)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def server_environment(url: str, api_url: str, port: int) -> dict[str, str]:
    return heroku_environment(
        PORT=str(port),
        DATABASE_URL=url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=api_url,
        SESSION_SECRET=SESSION_SECRET,
    )


def test_asgi_app_directly(empty_postgres: str, fake_telegram: FakeTelegram) -> None:
    entry = AsgiEntry(empty_postgres, fake_telegram.url)
    try:
        assert scenario(entry) == EXPECTED
    finally:
        entry.close()


def test_procfile_web_command(
    empty_postgres: str, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    port = free_port()
    # On a dyno a URL without sslmode requires TLS, as Heroku Postgres does.
    with behind_tls(empty_postgres, tmp_path) as url:
        web = honcho("start", "web", env=server_environment(url, fake_telegram.url, port))
        for entry in served(web, port):
            assert scenario(entry) == EXPECTED


@pytest.mark.parametrize("shape", SHAPES)
def test_lambda_handler(container: Container, shape: str) -> None:
    assert scenario(LambdaEntry(container, shape)) == EXPECTED


def test_systemd_units_exec_start(
    tmp_path: Path, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    settings = {
        "PORT": str(free_port()),
        "DATABASE_URL": empty_postgres,
        "TELEGRAM_TOKEN": TOKEN,
        "TELEGRAM_SECRET": SECRET,
        "TELEGRAM_API_URL": fake_telegram.url,
        "SESSION_SECRET": SESSION_SECRET,
    }
    with run_like_systemd(tmp_path, settings) as service:
        assert scenario(HttpEntry(service.client)) == EXPECTED
    assert service.returncode == 0
