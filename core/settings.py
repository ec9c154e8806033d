"""Configuration from the environment (and an optional `.env`), with secrets kept as SecretStr.

`Settings` is a plain pydantic model: `Settings(**values)` holds what it is given and the
defaults, nothing else; `load_settings()` reads the environment into one. pydantic-settings would
do that reading, but importing it took a tenth of a Lambda container's cold start (about 60 ms)
for what `environment_values` does in a few lines."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from portabot.conversation.engine import MAX_STATE_BYTES

TELEGRAM_API = "https://api.telegram.org"
VK_API = "https://api.vk.com/method"
VK_API_VERSION = "5.199"
DEFAULT_FLOW = "portabot.builtin:build"
DEFAULT_DATABASE_URL = "sqlite:///portabot.db"
SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
VK_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9]{1,50}$")
API_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{16,256}")
"""`API_TOKEN`: long enough not to guess, and what an Authorization header carries as it is."""
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
MIN_KEEP_DAYS = 1.0
"""Telegram re-delivers an update for up to a day: an update id forgotten sooner could let a
late copy be processed twice."""
BODY_TIMEOUT_SECONDS = 10.0
"""How long a request's body may take to arrive after its headers: Telegram and VK send theirs at
once from data centres, and 10 s carries the largest body taken (1 MiB) at 100 KB/s, a slow
mobile link; a client sending a byte at a time is cut off there (408)."""


TICK_SECONDS = 15.0
"""How often a server runs what is due: a timer fires within this of its time (the outbox's
retries wait 10 s and more, so sooner would mostly find nothing)."""
MIN_TICK_SECONDS = 1.0
"""Each run asks the database what is due: more often than this is load for nothing."""


class ConfigurationError(Exception):
    """Configuration that cannot work; the message is one line and holds no secret."""


def normalise_database_url(url: str) -> str:
    """Accept what hosts hand out: Heroku's `postgres://`, libpq's `sslmode=`, driver suffixes.
    A PostgreSQL URL is checked as `postgres_connection` reads it, so that a URL that cannot
    work fails here, in one line, and not on every request."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg", "postgres+asyncpg"):
        query = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            # asyncpg (and SQLAlchemy's dialect for it) take libpq's sslmode values as `ssl`.
            query.append(("ssl" if key == "sslmode" else key, value))
        url = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
        try:
            postgres_connection(url, environ={})
        except DatabaseUrlError as exc:
            raise ValueError(exc.problem) from None
        return url
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite" + url[len(scheme) :]
    raise ValueError(
        f"DATABASE_URL must start with sqlite:// or postgresql:// (got {scheme or 'no'} scheme)"
    )


SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
"""Query-string keys whose values are secrets (libpq reads a password from either place)."""


def obscure_url(url: str) -> str:
    """The URL with its passwords replaced (the netloc's, and `?password=` and `?sslpassword=`),
    fit for logs and output."""
    password = urlsplit(url).password
    head, question, query = url.partition("?")  # edited in place: nothing else changes
    if password is not None:
        head = head.replace(f":{password}@", ":********@", 1)
    query = "&".join(
        f"{piece.partition('=')[0]}=********"
        if unquote_plus(piece.partition("=")[0]) in SECRET_QUERY_KEYS
        else piece
        for piece in query.split("&")
    )
    return head + question + query


class DatabaseUrlError(ConfigurationError):
    """A DATABASE_URL option that cannot work; `problem` says which and why, without a secret."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"DATABASE_URL: {problem}")
        self.problem = problem


@dataclass(frozen=True)
class PostgresConnection:
    """A PostgreSQL DATABASE_URL as asyncpg takes it: `asyncpg.connect(dsn, **connect)`, and
    `create_pool(dsn, **connect, **pool)`. Serving, `portabot migrate` and `check` all use it."""

    dsn: str
    connect: dict[str, Any]
    pool: dict[str, int]
    sslmode: str | None
    """The TLS mode it connects with; None is asyncpg's default, `prefer` (TLS if offered)."""
    tls_by_default: bool
    """sslmode=require was added because the host (Heroku) asks for TLS and the URL said nothing."""
    notes: tuple[str, ...]
    """Options the URL carries that asyncpg does not take, dropped, each with the reason."""


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_BY_DEFAULT = {"heroku": "require"}
"""Heroku Postgres takes TLS connections only (and Heroku's advice is sslmode=require), while
asyncpg's default, `prefer`, would go on without TLS if the other end offered none."""

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$")
"""What a key asyncpg passes on to the server as a setting (`search_path`, `myapp.tenant`) looks
like; libpq's parameters that asyncpg reads itself (host, port, dbname, user, password, passfile,
service, sslcert, sslkey, sslpassword, sslrootcert, sslcrl, ssl_min_protocol_version,
ssl_max_protocol_version, krbsrvname, gsslib: asyncpg/connect_utils.py) stay in the DSN too, as
do application_name and options, which both send in the startup message."""

_CHOICES = {
    "sslnegotiation": ("postgres", "direct"),
    "target_session_attrs": (
        *("any", "primary", "standby", "prefer-standby", "read-write", "read-only"),
    ),
}
"""Keys asyncpg reads from the DSN whose wrong value would fail every connection."""

_DROPPED = {
    "channel_binding": (
        ("disable", "prefer", "require"),
        "channel binding is not enforced: asyncpg authenticates with SCRAM, over TLS as "
        "sslmode says, without it",
    ),
    "gssencmode": (("disable", "prefer"), "asyncpg does not encrypt with GSSAPI"),
    "sslcertmode": (("allow",), "asyncpg sends sslcert when one is given, as `allow` does"),
    "load_balance_hosts": (("disable",), "asyncpg tries the hosts in order, as `disable` does"),
    "gssdelegation": (("0",), "asyncpg does not delegate GSSAPI credentials"),
    "sslsni": (None, "asyncpg always sends the server name in TLS"),
    "sslcompression": (None, "TLS compression is off in libpq too (OpenSSL disables it)"),
    **{
        key: (None, "a socket option asyncpg does not set: the system's defaults apply")
        for key in (
            *("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"),
            "tcp_user_timeout",
        )
    },
}
"""libpq parameters asyncpg does not take, dropped when what they ask for holds anyway (or is
only tuning): (the values that may be dropped, None for any; why)."""

_REFUSED = {
    "hostaddr": "asyncpg has no hostaddr: put the address in the URL's host",
    "require_auth": "asyncpg cannot restrict the authentication methods: remove it",
    "requiressl": "libpq's old spelling: use sslmode=require",
    "sslcrldir": "asyncpg reads a revocation list from sslcrl (a file) only",
    "sslkeylogfile": "asyncpg cannot log TLS keys: remove it",
    "requirepeer": "asyncpg cannot check a Unix socket's peer: remove it",
    "replication": "portabot needs an ordinary connection, not a replication one",
    "min_protocol_version": "asyncpg speaks protocol 3.0 only: remove it",
    "max_protocol_version": "asyncpg speaks protocol 3.0 only: remove it",
    **{
        key: "asyncpg cannot authenticate with OAuth: use a password"
        for key in ("oauth_issuer", "oauth_client_id", "oauth_client_secret", "oauth_scope")
    },
    "scram_client_key": "asyncpg takes a password, not SCRAM keys",
    "scram_server_key": "asyncpg takes a password, not SCRAM keys",
    # Prisma's URL options, not libpq's: a URL copied from a Prisma project carries them.
    "pgbouncer": "Prisma's option: behind PgBouncer in transaction mode use statement_cache_size=0",
    "connection_limit": "Prisma's option: use max_size (or DATABASE_POOL_SIZE)",
    "schema": "Prisma's option: use search_path=NAME",
    "sslaccept": "Prisma's option: use sslmode",
}
"""Options asyncpg cannot honour and whose loss would change what the connection is or proves."""

_UTF8 = frozenset({"utf8", "unicode"})


def postgres_connection(
    url: str, *, pool_size: int = 4, environ: Mapping[str, str] | None = None
) -> PostgresConnection:
    """Read a PostgreSQL URL as libpq would, into what asyncpg takes. `environ` (the process's
    by default) tells the host, and so the TLS default, and may hold PGSSLMODE."""
    parts = urlsplit(url)
    environ = os.environ if environ is None else environ
    if any(piece and "=" not in piece for piece in parts.query.split("&")):
        raise DatabaseUrlError("its query string must be key=value pairs joined by &")
    # libpq and asyncpg both take a repeated key's last value.
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    kept: list[tuple[str, str]] = []
    connect: dict[str, Any] = {}
    pool = {"min_size": 1, "max_size": pool_size}
    notes: list[str] = []
    sslmode: str | None = None
    for key, value in options.items():
        if key in ("ssl", "sslmode"):
            sslmode = {"true": "require", "false": "disable"}.get(value.lower(), value.lower())
            if sslmode not in SSLMODES:
                raise DatabaseUrlError(f"{key} must be one of {', '.join(SSLMODES)}")
        elif key in ("min_size", "max_size"):
            pool[key] = _whole_number(key, value, least=0 if key == "min_size" else 1)
        elif key == "statement_cache_size":
            connect[key] = _whole_number(key, value, least=0)
        elif key == "connect_timeout":
            seconds = _whole_number(key, value, least=None)
            # libpq: 0 or less waits for ever, and it never waits less than 2 s.
            connect["timeout"] = None if seconds <= 0 else float(max(seconds, 2))
        elif key == "client_encoding":
            if value.lower().replace("-", "").replace("_", "") not in _UTF8:
                raise DatabaseUrlError(
                    f"client_encoding must be UTF8: asyncpg reads and writes text as UTF-8 only"
                    f" (got {value[:20]!r})"
                )
            notes.append(f"client_encoding={value[:20]} dropped (asyncpg always uses UTF8)")
        elif key == "fallback_application_name":
            if "application_name" not in options:
                kept.append(("application_name", value))
        elif key in _REFUSED:
            raise DatabaseUrlError(f"{key} is not supported: {_REFUSED[key]}")
        elif key in _DROPPED:
            allowed, why = _DROPPED[key]
            if allowed is not None and value.lower() not in allowed:
                raise DatabaseUrlError(
                    f"{key}={value[:20]} is not supported ({why}); use {' or '.join(allowed)}"
                )
            notes.append(f"{key}={value[:20]} dropped ({why})")
        else:
            choices = _CHOICES.get(key)
            if choices is not None and value not in choices:
                raise DatabaseUrlError(f"{key} must be one of {', '.join(choices)}")
            if not _SETTING_NAME.match(key):
                raise DatabaseUrlError(
                    f"{key[:40]!r} is neither a libpq option nor a server setting's name"
                )
            kept.append((key, value))
    pool["min_size"] = min(pool["min_size"], pool["max_size"])
    tls_by_default = False
    if sslmode is None:
        sslmode = environ.get("PGSSLMODE") or None  # libpq's default, and asyncpg's
        if sslmode is not None and sslmode not in SSLMODES:
            raise DatabaseUrlError(f"PGSSLMODE must be one of {', '.join(SSLMODES)}")
        default = TLS_BY_DEFAULT.get(detect_host(environ) or "")
        if sslmode is None and default is not None:
            sslmode, tls_by_default = default, True
    if sslmode is not None:
        kept.append(("sslmode", sslmode))
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), ""))
    return PostgresConnection(dsn, connect, pool, sslmode, tls_by_default, tuple(notes))


def _whole_number(key: str, value: str, *, least: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise DatabaseUrlError(f"{key} must be a whole number (got {value[:20]!r})") from None
    if least is not None and number < least:
        raise DatabaseUrlError(f"{key} must be at least {least} (got {number})")
    return number


ENV_FILE = ".env"
"""The file in the working directory whose variables count where the environment has none."""


class Settings(BaseModel):
    """Each field is the environment variable of its name in capitals (`load_settings`)."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True, validate_default=True)

    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)  # may hold a password
    database_pool_size: int = Field(default=4, ge=1, le=100)
    outbox_retry_seconds: float = Field(default=60.0, ge=0)
    tick_seconds: float = Field(default=TICK_SECONDS, ge=0, le=3600)
    """How often a running server runs what is due by itself (core/runner.py); 0: never (an
    outside scheduler's `portabot tick` still does)."""
    send_pacing: bool = True
    """SEND_PACING=off sends through the APIs without pacing them to the platforms' rate limits
    (for an API that has none: a load test's fake)."""
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
    vk_image_hosts: dict[str, str] = Field(default_factory=dict)
    """Where VK's replies fetch their images from instead of the URL's own host, by URL prefix:
    VK_IMAGE_HOSTS='{"https://img.example/": "http://images.internal/"}' (an image host your
    servers reach by another name; the tests' ImageServer). Empty: each URL as it is."""
    bot_flow: str = DEFAULT_FLOW
    bot_passphrase: SecretStr | None = None
    session_secret: SecretStr | None = None
    api_token: SecretStr | None = None
    """The bearer token of `POST /api/events` (at least 16 characters, no spaces); unset: the
    endpoint does not exist (404)."""
    public_url: str | None = None
    log_level: str = "INFO"
    access_log: bool | None = None
    """A line for each request from the server: `portabot serve` writes them unless off; under
    gunicorn (Heroku, a VPS) only when on, since Heroku's router and Caddy write one already."""
    bot_name: str = "portabot"
    body_timeout_seconds: float = Field(default=BODY_TIMEOUT_SECONDS, gt=0, le=300)
    costs_page: bool = True
    """COSTS_PAGE=off removes /costs and /api/costs (404) and the home page's link."""
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
    state_max_bytes: int = Field(default=MAX_STATE_BYTES, ge=1024, le=16 * 1024 * 1024)
    """The largest a person's state (`ctx.data` as JSON) may be; a step leaving it bigger fails.
    For flows that did not pass `max_state_bytes` themselves (Flow.configure)."""
    """Wrong link codes a 10-minute window takes from everyone together."""

    @field_validator("tick_seconds")
    @classmethod
    def _tick_seconds(cls, value: float) -> float:
        if 0 < value < MIN_TICK_SECONDS:
            raise ValueError(f"must be 0 (off) or at least {MIN_TICK_SECONDS:g} second")
        return value

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

    @field_validator("api_token")
    @classmethod
    def _api_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not API_TOKEN_SHAPE.fullmatch(value.get_secret_value()):
            raise ValueError("must be 16 to 256 visible ASCII characters (no spaces)")
        return value

    @field_validator("vk_secret")
    @classmethod
    def _vk_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not VK_SECRET_SHAPE.match(value.get_secret_value()):
            raise ValueError("must be 1-50 letters and digits (VK's rule)")
        return value

    @field_validator("vk_image_hosts", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        """From the environment a JSON object, as `{"https://a/": "http://b/"}`."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("must be a JSON object") from None

    @field_validator("vk_image_hosts")
    @classmethod
    def _image_hosts(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, local in value.items():
            for url in (prefix, local):
                if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                    raise ValueError(f"maps http(s) URL prefixes to http(s) URLs (got {url!r:.60})")
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
        "api_token",
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


def environment_values(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ENV_FILE
) -> dict[str, str]:
    """The settings' raw values by field name: each field's variable, in any case (`LOG_LEVEL`,
    `log_level`), from `environ` (the process's by default), else from `env_file` if it exists
    (python-dotenv reads it, imported only then)."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        found.update(_fields_of(dotenv_values(env_file)))
    found.update(_fields_of(environ))
    return found


def _fields_of(variables: Mapping[str, str | None]) -> dict[str, str]:
    fields = Settings.model_fields
    return {
        name.lower(): value
        for name, value in variables.items()
        if value is not None and name.lower() in fields
    }


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ENV_FILE
) -> Settings:
    """Settings from the environment (`environment_values`); bad values become one
    ConfigurationError line."""
    try:
        settings = Settings.model_validate(environment_values(environ, env_file))
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
