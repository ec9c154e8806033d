"""Settings from the environment: URL normalisation, secrets kept out of output, clear errors."""

from __future__ import annotations

import pytest

from portabot import Context, Flow, Message, State, StateError
from portabot.settings import (
    ConfigurationError,
    Settings,
    load_settings,
    obscure_url,
    postgres_connection,
)
from portabot.testing import Harness
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
    with_url = make_settings(database_url="postgres://u:db-pw@h/d?password=query-pw")
    assert "db-pw" not in repr(with_url) and "query-pw" not in str(with_url)
    monkeypatch.setenv("DATABASE_URL", "mysql://root:topsecret@h/d")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert "DATABASE_URL" in str(error.value) and "topsecret" not in str(error.value)
    assert "\n" not in str(error.value)


def test_obscure_url_hides_the_password() -> None:
    assert obscure_url("postgresql://u:pw@h/d") == "postgresql://u:********@h/d"
    assert obscure_url("sqlite:///x.db") == "sqlite:///x.db"


def test_obscure_url_hides_a_password_in_the_query_string() -> None:
    url = "postgresql://u@h/d?sslmode=require&password=s%3Dcret&sslpassword=key-pw&passw=x"
    assert obscure_url(url) == (
        "postgresql://u@h/d?sslmode=require&password=********&sslpassword=********&passw=x"
    )
    assert (
        obscure_url("postgresql://u:a@h/d?pass%77ord=b")
        == "postgresql://u:********@h/d?pass%77ord=********"
    )


def _read(query: str, **environ: str) -> tuple[str, dict[str, object], tuple[str, ...]]:
    connection = postgres_connection(f"postgresql://u@h/d?{query}", environ=environ)
    return connection.dsn.partition("?")[2], connection.connect, connection.notes


@pytest.mark.parametrize(
    ("query", "dsn", "connect"),
    [
        # Neon's: channel_binding must never reach the server as a setting.
        ("sslmode=require&channel_binding=require", "sslmode=require", {}),
        ("ssl=true", "sslmode=require", {}),
        (
            "sslmode=VERIFY-FULL&sslrootcert=/ca.pem",
            "sslrootcert=%2Fca.pem&sslmode=verify-full",
            {},
        ),
        # What asyncpg's DSN parser reads itself stays in the DSN.
        (
            "target_session_attrs=read-write&passfile=/p&krbsrvname=pg",
            "target_session_attrs=read-write&passfile=%2Fp&krbsrvname=pg",
            {},
        ),
        (
            "sslnegotiation=direct&sslcert=c&sslkey=k&sslpassword=pw",
            "sslnegotiation=direct&sslcert=c&sslkey=k&sslpassword=pw",
            {},
        ),
        # Startup parameters as libpq sends them; anything else is a server setting.
        (
            "application_name=bot&options=-c%20geqo%3Doff",
            "application_name=bot&options=-c+geqo%3Doff",
            {},
        ),
        ("fallback_application_name=bot", "application_name=bot", {}),
        ("application_name=a&fallback_application_name=b", "application_name=a", {}),
        ("search_path=bot&statement_timeout=5s", "search_path=bot&statement_timeout=5s", {}),
        ("myapp.tenant=7", "myapp.tenant=7", {}),
        # asyncpg's keywords.
        ("connect_timeout=10", "", {"timeout": 10.0}),
        ("connect_timeout=1", "", {"timeout": 2.0}),  # libpq never waits less than 2 s
        ("connect_timeout=0", "", {"timeout": None}),  # 0: for ever
        ("statement_cache_size=0", "", {"statement_cache_size": 0}),
        # Dropped: what they ask holds anyway, or only tunes the socket.
        ("client_encoding=UTF8&keepalives=1&keepalives_idle=30&tcp_user_timeout=9", "", {}),
        ("client_encoding=utf-8&gssencmode=disable&sslsni=1&sslcompression=0", "", {}),
        ("client_encoding=unicode&sslcertmode=allow&load_balance_hosts=disable", "", {}),
        ("sslmode=require&", "sslmode=require", {}),
    ],
)
def test_libpq_options_become_what_asyncpg_takes(
    query: str, dsn: str, connect: dict[str, object]
) -> None:
    assert _read(query)[:2] == (dsn, connect)


def test_dropped_options_are_noted_with_the_reason() -> None:
    _, _, notes = _read("sslmode=require&channel_binding=require&keepalives=1")
    assert notes == (
        "channel_binding=require dropped (channel binding is not enforced: asyncpg "
        "authenticates with SCRAM, over TLS as sslmode says, without it)",
        "keepalives=1 dropped (a socket option asyncpg does not set: the system's defaults apply)",
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("client_encoding=LATIN1", "client_encoding must be UTF8"),
        ("client_encoding=win1251", "client_encoding must be UTF8"),
        ("max_size=abc", "max_size must be a whole number (got 'abc')"),
        ("max_size=0", "max_size must be at least 1 (got 0)"),
        ("min_size=-1", "min_size must be at least 0"),
        ("statement_cache_size=x", "statement_cache_size must be a whole number"),
        ("connect_timeout=soon", "connect_timeout must be a whole number"),
        ("sslmode=maybe", "sslmode must be one of disable, allow, prefer, require, verify-ca"),
        ("target_session_attrs=primary-ish", "target_session_attrs must be one of any, primary"),
        ("sslnegotiation=tls", "sslnegotiation must be one of postgres, direct"),
        ("channel_binding=always", "channel_binding=always is not supported"),
        ("gssencmode=require", "gssencmode=require is not supported (asyncpg does not encrypt"),
        ("hostaddr=10.0.0.1", "hostaddr is not supported: asyncpg has no hostaddr"),
        ("require_auth=scram-sha-256", "require_auth is not supported"),
        ("requiressl=1", "requiressl is not supported: libpq's old spelling: use sslmode=require"),
        ("sslcrldir=/crl", "sslcrldir is not supported"),
        ("replication=database", "replication is not supported"),
        ("pgbouncer=true", "use statement_cache_size=0"),
        ("sslmode", "query string must be key=value pairs"),
        ("ssl-mode=require", "'ssl-mode' is neither a libpq option nor a server setting's name"),
    ],
)
def test_options_that_cannot_work_are_refused_in_one_line(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        _read(query)
    assert str(error.value).startswith("DATABASE_URL: ") and message in str(error.value)
    assert "\n" not in str(error.value)
    # Refused as the settings load too: before anything connects.
    with pytest.raises(ValueError, match="database_url"):
        make_settings(database_url=f"postgres://u:pw@h/d?{query}")


def test_the_refusal_never_shows_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:hunter2@h/d?password=hunter3&max_size=x")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert "max_size must be a whole number" in str(error.value)
    assert "hunter" not in str(error.value) and "\n" not in str(error.value)


def test_on_heroku_a_url_without_sslmode_requires_tls() -> None:
    heroku = postgres_connection("postgres://u:p@h:5432/d", environ={"DYNO": "web.1"})
    assert heroku.dsn == "postgresql://u:p@h:5432/d?sslmode=require"
    assert heroku.sslmode == "require" and heroku.tls_by_default
    said = postgres_connection("postgres://u:p@h/d?sslmode=verify-full", environ={"DYNO": "web.1"})
    assert said.sslmode == "verify-full" and not said.tls_by_default
    pgsslmode = postgres_connection(
        "postgres://u:p@h/d", environ={"DYNO": "w", "PGSSLMODE": "disable"}
    )
    assert pgsslmode.sslmode == "disable" and not pgsslmode.tls_by_default
    with pytest.raises(ConfigurationError, match="PGSSLMODE must be one of disable"):
        postgres_connection("postgres://u:p@h/d", environ={"PGSSLMODE": "on"})
    elsewhere = postgres_connection("postgres://u:p@h/d", environ={})
    assert elsewhere.sslmode is None and elsewhere.dsn == "postgresql://u:p@h/d"


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
    settings = load_settings()
    assert settings.bot_passphrase is not None
    assert settings.bot_passphrase.get_secret_value() == "from-dotenv"
    assert settings.log_level == "DEBUG"
    assert settings.public_url == "https://bot.example.com"
    assert settings.telegram_enabled


def test_the_environment_wins_over_dotenv_in_any_case(tmp_path: pytest.TempPathFactory) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("LOG_LEVEL=debug\nBOT_NAME=from dotenv\nNOT_A_SETTING=x\n")
    settings = load_settings({"log_level": "error", "Tick_Seconds": "0"}, env_file)
    assert (settings.log_level, settings.bot_name, settings.tick_seconds) == (
        "ERROR",
        "from dotenv",
        0,
    )
    assert load_settings({}, env_file=None).bot_name == "portabot"  # no file: the defaults


def test_json_settings_are_read_from_the_environment_and_refused_in_one_line() -> None:
    hosts = '{"https://img.example/": "http://127.0.0.1:9/"}'
    settings = load_settings({"VK_IMAGE_HOSTS": hosts, "ACCESS_LOG": "off"}, env_file=None)
    assert settings.vk_image_hosts == {"https://img.example/": "http://127.0.0.1:9/"}
    assert settings.access_log is False
    with pytest.raises(ConfigurationError) as error:
        load_settings({"VK_IMAGE_HOSTS": "{not json"}, env_file=None)
    assert (
        str(error.value) == "bad configuration: VK_IMAGE_HOSTS: Value error, must be a JSON object"
    )


def test_blank_secrets_count_as_unset() -> None:
    settings = make_settings(telegram_token="  ", bot_passphrase="")
    assert settings.telegram_token is None and settings.bot_passphrase is None


@pytest.mark.parametrize(
    ("value", "bound"),
    [("1023", "greater than or equal to 1024"), ("16777217", "less than or equal to 16777216")],
)
def test_state_max_bytes_outside_1_kib_to_16_mib_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, bound: str
) -> None:
    monkeypatch.setenv("STATE_MAX_BYTES", value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value) == f"bad configuration: STATE_MAX_BYTES: Input should be {bound}"
    assert make_settings(state_max_bytes=1024).state_max_bytes == 1024
    assert make_settings(state_max_bytes=16 * 1024 * 1024).state_max_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0.5", "Value error, must be 0 (off) or at least 1 second"),
        ("-1", "Input should be greater than or equal to 0"),
        ("3601", "Input should be less than or equal to 3600"),
        ("soon", "Input should be a valid number, unable to parse string as a number"),
    ],
)
def test_tick_seconds_is_0_or_1_to_3600_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("TICK_SECONDS", value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value) == f"bad configuration: TICK_SECONDS: {problem}"


def test_tick_seconds_is_15_by_default_and_0_turns_it_off() -> None:
    assert make_settings().tick_seconds == 15
    assert make_settings(tick_seconds="0").tick_seconds == 0  # off
    assert make_settings(tick_seconds="1").tick_seconds == 1


class Keeping(State):
    """Keeps what it is told: a state that grows as big as a message makes it."""

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.data["kept"] = message.text
        ctx.reply("Kept.")


def keeping(settings: Settings) -> Flow:
    """BOT_FLOW=tests.test_settings:keeping (a fresh flow each time it is loaded)."""
    return Flow([Keeping])


FLOW = "tests.test_settings:keeping"


@pytest.mark.parametrize("loaded", [True, False])
def test_the_bot_holds_a_persons_state_to_state_max_bytes(loaded: bool) -> None:
    """Whether BOT_FLOW names the flow or the harness is given it, the setting reaches it."""
    flow = None if loaded else keeping(make_settings())
    with Harness(flow, bot_flow=FLOW, state_max_bytes=1024) as bot:
        assert bot.bot.flow.max_state_bytes == 1024
        ann = bot.person("web")
        assert ann.say("x" * 1000) == ["Kept."]
        with pytest.raises(StateError, match=r"1111 bytes as JSON, over STATE_MAX_BYTES \(1024\)"):
            ann.say("y" * 1100)
        assert ann.conversation.data == {"kept": "x" * 1000}  # the step failed, nothing kept
