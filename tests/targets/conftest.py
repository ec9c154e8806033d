"""Fixtures of the targets' tests: a Lambda container with the environment the template gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BOT_USERNAME, SECRET, TOKEN
from tests.servers import FakeTelegram
from tests.targets.lambda_runtime import Container


@pytest.fixture
def lambda_environment(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    empty_postgres: str,
    fake_telegram: FakeTelegram,
) -> dict[str, str]:
    """What the template gives the function, plus what Lambda sets in every container."""
    monkeypatch.chdir(tmp_path)  # Lambda's working directory holds no .env
    values = {
        "AWS_LAMBDA_FUNCTION_NAME": "portabot",
        "DATABASE_URL": empty_postgres,
        "TELEGRAM_TOKEN": TOKEN,
        "TELEGRAM_SECRET": SECRET,
        "TELEGRAM_API_URL": fake_telegram.url,
        "TELEGRAM_BOT_USERNAME": BOT_USERNAME,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("VK_TOKEN", "VK_GROUP_ID", "SESSION_SECRET", "BOT_PASSPHRASE", "BOT_FLOW"):
        monkeypatch.delenv(name, raising=False)
    # Set, then removed: the handler's default is then undone after the test.
    monkeypatch.setenv("DATABASE_POOL_SIZE", "4")
    monkeypatch.delenv("DATABASE_POOL_SIZE")
    return values


@pytest.fixture
def container(lambda_environment: dict[str, str]) -> Iterator[Container]:
    started = Container()
    yield started
    started.close()
