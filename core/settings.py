"""Configuration from the environment (and an optional `.env`), with secrets kept as SecretStr."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TELEGRAM_API = "https://api.telegram.org"
VK_API = "https://api.vk.com/method"
VK_API_VERSION = "5.199"
DEFAULT_FLOW = "core.conversation.linking:build"
DEFAULT_DATABASE_URL = "sqlite:///portabot.db"
SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
VK_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9]{1,50}$")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
MIN_KEEP_DAYS = 1.0
"""Telegram re-delivers an update for up to a day: an update id forgotten sooner could let a
late copy be processed twice."""


class ConfigurationError(Exception):
    """Configuration that cannot work; the message is one line and holds no secret."""


def normalise_database_url(url: str) -> str:
    """Accept what hosts hand out: Heroku's `postgres://`, libpq's `sslmode=`, driver suffixes."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg", "postgres+asyncpg"):
        query = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            # asyncpg (and SQLAlchemy's dialect for it) take libpq's sslmode values as `ssl`.
            query.append(("ssl" if key == "sslmode" else key, value))
        return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite" + url[len(scheme) :]
    raise ValueError(
        f"DATABASE_URL must start with sqlite:// or postgresql:// (got {scheme or 'no'} scheme)"
    )


def obscure_url(url: str) -> str:
    """The URL with its password replaced, fit for logs and output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=4, ge=1, le=100)
    outbox_retry_seconds: float = Field(default=60.0, ge=0)
    order_window_ms: int = Field(default=0, ge=0, le=5000)
    keep_updates_days: float = Field(default=7.0, ge=MIN_KEEP_DAYS, le=36500)
    telegram_token: SecretStr | None = None
    telegram_secret: SecretStr | None = None
    telegram_api_url: str = TELEGRAM_API
    telegram_bot_username: str | None = None
    vk_token: SecretStr | None = None
    vk_group_id: int | None = Field(default=None, gt=0)
    vk_secret: SecretStr | None = None
    vk_confirmation: str | None = None
    vk_api_url: str = VK_API
    vk_api_version: str = VK_API_VERSION
    bot_flow: str = DEFAULT_FLOW
    bot_passphrase: SecretStr | None = None
    session_secret: SecretStr | None = None
    public_url: str | None = None
    log_level: str = "INFO"
    bot_name: str = "portabot"
    # The web chat and link codes against strangers (README: "The web chat", "Linking").
    web_chat: bool = True
    web_chat_per_address: int = Field(default=20, ge=1, le=100_000)
    """Messages a minute the web chat takes from one address (an IPv6 /64 counts as one)."""
    web_chat_total: int = Field(default=120, ge=1, le=1_000_000)
    """Messages a minute the web chat takes from all addresses together."""
    web_chat_new_per_address: int = Field(default=10, ge=1, le=100_000)
    """New visitors (people) an hour the web chat makes for one address."""
    web_chat_new_total: int = Field(default=100, ge=1, le=1_000_000)
    """New visitors an hour the web chat makes in all: with WEB_CHAT_KEEP_DAYS, the bound on
    the web-only people a flood can leave in the database."""
    web_chat_keep_days: float = Field(default=30.0, ge=1, le=400)
    """A web visitor's cookie lasts this long after their last message, and `portabot maintain`
    forgets a web-only person idle this long."""
    link_code_guesses: int = Field(default=30, ge=1, le=100_000)
    """Wrong link codes a 10-minute window takes from everyone together."""

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("telegram_api_url", "vk_api_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("telegram_bot_username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        return value.strip().lstrip("@") or None if value else None

    @field_validator("telegram_secret")
    @classmethod
    def _telegram_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not SECRET_SHAPE.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @field_validator("vk_secret")
    @classmethod
    def _vk_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not VK_SECRET_SHAPE.match(value.get_secret_value()):
            raise ValueError("must be 1-50 letters and digits (VK's rule)")
        return value

    @field_validator("bot_flow")
    @classmethod
    def _bot_flow(cls, value: str) -> str:
        module, _, attribute = value.strip().partition(":")
        if not module or not attribute:
            raise ValueError("must be package.module:attribute")
        return f"{module}:{attribute}"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator(
        "telegram_token",
        "telegram_secret",
        "vk_token",
        "vk_secret",
        "vk_confirmation",
        "vk_group_id",
        "bot_passphrase",
        "session_secret",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None

    @property
    def vk_enabled(self) -> bool:
        return self.vk_token is not None and self.vk_group_id is not None

    def telegram_webhook_secret(self) -> str | None:
        """TELEGRAM_SECRET, or one derived from the token so that a token alone is enough."""
        return _secret_or_derived(self.telegram_secret, self.telegram_token, "telegram webhook")

    def vk_callback_secret(self) -> str | None:
        """VK_SECRET, or one derived from the token (VK takes at most 50 letters and digits)."""
        return _secret_or_derived(self.vk_secret, self.vk_token, "vk callback", length=40)


def _secret_or_derived(
    given: SecretStr | None, token: SecretStr | None, purpose: str, length: int = 64
) -> str | None:
    if given is not None:
        return given.get_secret_value()
    if token is None:
        return None
    key = token.get_secret_value().encode()
    return hmac.new(key, f"portabot {purpose}".encode(), hashlib.sha256).hexdigest()[:length]


def load_settings() -> Settings:
    """Settings from the environment; bad values become one ConfigurationError line."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"bad configuration: {problems}") from None
    refuse_lost_storage(settings)
    return settings


HOST_MARKERS = {"heroku": "DYNO", "lambda": "AWS_LAMBDA_FUNCTION_NAME"}
"""An environment variable each host sets in every process it runs."""

LOST_SQLITE = {
    "heroku": "a dyno's filesystem is wiped at every restart and deploy: add Heroku Postgres "
    "(heroku addons:create heroku-postgresql:essential-0), which sets DATABASE_URL",
    "lambda": "a Lambda container's disk is gone with the container and not shared between "
    "containers: set DATABASE_URL to a PostgreSQL server",
}


def detect_host(environ: Mapping[str, str] | None = None) -> str | None:
    """heroku or lambda when running there, None elsewhere (a VPS or a laptop)."""
    environ = os.environ if environ is None else environ
    return next((host for host, marker in HOST_MARKERS.items() if marker in environ), None)


def refuse_lost_storage(settings: Settings, host: str | None = None) -> None:
    """SQLite where its file would be lost is a configuration error, not a surprise later."""
    host = host or detect_host()
    if settings.is_sqlite and host in LOST_SQLITE:
        raise ConfigurationError(
            f"DATABASE_URL is SQLite on {host.title()}, but {LOST_SQLITE[host]}"
        )
