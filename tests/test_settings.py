"""Settings from the environment: URL normalisation, secrets kept out of output, clear errors."""

from __future__ import annotations

import pytest

from core.settings import ConfigurationError, Settings, load_settings, obscure_url
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example.com:5432/d1", "postgresql://u:p@db.example.com:5432/d1"),
        ("postgres://u:p@h/d?sslmode=require", "postgresql://u:p@h/d?ssl=require"),
        ("postgresql+asyncpg://u@h/d", "postgresql://u@h/d"),
        ("sqlite:///portabot.db", "sqlite:///portabot.db"),
        ("sqlite+aiosqlite:////var/lib/bot.db", "sqlite:////var/lib/bot.db"),
    ],
)
def test_database_urls_are_normalised(given: str, expected: str) -> None:
    assert make_settings(database_url=given).database_url == expected


def test_default_is_a_sqlite_file_in_the_working_directory() -> None:
    settings = make_settings()
    assert settings.database_url == "sqlite:///portabot.db" and settings.is_sqlite


def test_secrets_never_show_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(
        telegram_token="1:SECRET-TOKEN", bot_passphrase="hunter2", session_secret="cookie-key"
    )
    assert "SECRET-TOKEN" not in repr(settings) and "hunter2" not in str(settings)
    monkeypatch.setenv("DATABASE_URL", "mysql://root:topsecret@h/d")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert "DATABASE_URL" in str(error.value) and "topsecret" not in str(error.value)
    assert "\n" not in str(error.value)


def test_obscure_url_hides_the_password() -> None:
    assert obscure_url("postgresql://u:pw@h/d") == "postgresql://u:********@h/d"
    assert obscure_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_webhook_secret_is_derived_from_the_token_when_unset() -> None:
    derived = make_settings(telegram_token="1:abc").telegram_webhook_secret()
    assert derived and derived == make_settings(telegram_token="1:abc").telegram_webhook_secret()
    assert derived != make_settings(telegram_token="1:abd").telegram_webhook_secret()
    assert (
        make_settings(telegram_token="1:abc", telegram_secret="s").telegram_webhook_secret() == "s"
    )
    assert make_settings().telegram_webhook_secret() is None


def test_telegram_secret_must_be_what_telegram_accepts() -> None:
    with pytest.raises(ValueError, match=r"TELEGRAM_SECRET|telegram_secret"):
        make_settings(telegram_token="1:abc", telegram_secret="has spaces!")


def test_values_come_from_the_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    (tmp_path / ".env").write_text("BOT_PASSPHRASE=from-dotenv\nLOG_LEVEL=debug\n")  # type: ignore[operator]
    monkeypatch.setenv("TELEGRAM_TOKEN", "1:from-env")
    monkeypatch.setenv("PUBLIC_URL", "https://bot.example.com/")
    settings = Settings()
    assert settings.bot_passphrase is not None
    assert settings.bot_passphrase.get_secret_value() == "from-dotenv"
    assert settings.log_level == "DEBUG"
    assert settings.public_url == "https://bot.example.com"
    assert settings.telegram_enabled


def test_blank_secrets_count_as_unset() -> None:
    settings = make_settings(telegram_token="  ", bot_passphrase="")
    assert settings.telegram_token is None and settings.bot_passphrase is None
