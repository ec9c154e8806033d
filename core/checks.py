"""What `portabot check` finds: missing or wrong configuration, for any host or for one target."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator

from portabot.capacity import (
    DEFAULT_CLOCK_DYNOS,
    DEFAULT_INSTANCES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SCHEDULER_DYNOS,
    DEFAULT_WORKER_DYNOS,
    DEFAULT_WORKERS,
    connections,
)
from portabot.settings import (
    HOST_MARKERS,
    ConfigurationError,
    PostgresConnection,
    Settings,
    obscure_url,
    postgres_connection,
)

Finding = tuple[bool | None, str]
"""(True: fine, None: worth knowing, False: a problem) and what to say."""

TARGETS = ("heroku", "lambda", "vps")
TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]{30,}$")


def configuration(
    settings: Settings,
    target: str | None = None,
    *,
    instances: int | None = None,
    max_connections: int | None = None,
    worker_dynos: int | None = None,
    scheduler_dynos: int | None = None,
    clock_dynos: int | None = None,
) -> Iterator[Finding]:
    yield database(settings)
    if not settings.is_sqlite:
        for note in postgres_connection(settings.database_url).notes:
            yield None, f"DATABASE_URL's {note}"
    yield from flow(settings)
    yield from platforms(settings)
    if settings.bot_passphrase is None:
        yield None, "BOT_PASSPHRASE unset: anyone may use the bot"
    if settings.session_secret is None:
        yield None, "SESSION_SECRET unset: the web chat uses one kept in the database"
    if target is not None:
        yield from hosting(
            settings, target, instances, max_connections, worker_dynos, scheduler_dynos, clock_dynos
        )


def database(settings: Settings) -> Finding:
    from portabot.storage.database import Database, Query, is_connection_lost

    where = obscure_url(settings.database_url)

    async def revision() -> str | None:
        db = Database(settings.database_url, pool_size=1)
        try:
            async with db.autocommit() as conn:
                try:
                    found = await conn.fetch_val(Query("SELECT version_num FROM alembic_version"))
                except Exception as exc:
                    if is_connection_lost(exc):
                        raise
                    return None
            return str(found)
        finally:
            await db.close()

    try:
        found = asyncio.run(revision())
    except Exception as exc:
        return False, f"database {where} unreachable: {describe(exc)}"
    if found is None:
        return False, f"database {where} has no schema: run `portabot migrate`"
    return True, f"database {where} reachable, schema at revision {found}"


def flow(settings: Settings) -> Iterator[Finding]:
    """The flow built as a server builds it (a typo in a state's name fails here), its features'
    own findings, and a passphrase that nothing would ask for."""
    from portabot.conversation.loader import flow_summary, load_flow
    from portabot.features.passphrase import Passphrase

    try:
        built = load_flow(settings)
    except ConfigurationError as exc:
        yield False, str(exc)
        return
    except Exception as exc:  # the flow's own error as it is built, e.g. an unknown state
        yield False, f"BOT_FLOW {settings.bot_flow} cannot be built: {describe(exc)}"
        return
    yield True, flow_summary(settings, built)
    if settings.bot_passphrase is not None and built.feature(Passphrase) is None:
        yield False, "BOT_PASSPHRASE is set but the flow has no Passphrase feature: anyone gets in"
    for feature in built.features:
        for problem in feature.problems(settings):
            yield False, f"{feature.name or type(feature).__name__}: {problem}"


def platforms(settings: Settings) -> Iterator[Finding]:
    from portabot.channels import platform_channels
    from portabot.channels.base import ApiError
    from portabot.outbound import call_now

    if settings.telegram_token is None:
        yield None, "Telegram is off: set TELEGRAM_TOKEN to turn it on"
    elif not TOKEN_SHAPE.match(settings.telegram_token.get_secret_value()):
        yield False, "TELEGRAM_TOKEN does not look like a bot token (digits:letters)"
    else:
        if settings.telegram_secret is None:
            yield None, "TELEGRAM_SECRET unset: the webhook secret is derived from the token"
        if not settings.telegram_bot_username:
            yield None, "TELEGRAM_BOT_USERNAME unset: the home page cannot link to the bot"
    if settings.vk_token is None:
        yield None, "VK is off: set VK_TOKEN and VK_GROUP_ID to turn it on"
    elif settings.vk_group_id is None:
        yield False, "VK_TOKEN is set but VK_GROUP_ID is not: VK stays off"
    else:
        if settings.vk_secret is None:
            yield None, "VK_SECRET unset: the Callback API secret is derived from the token"
        if settings.vk_confirmation is None:
            yield None, "VK_CONFIRMATION unset: the confirmation code is asked of VK when needed"
    channels = platform_channels(settings)
    for channel in channels:
        try:
            yield True, call_now(channel.whoami)
        except ApiError as exc:
            yield False, f"{channel.platform.upper()}_TOKEN was refused: {exc}"
    if channels and not (settings.public_url or "").startswith("https://"):
        yield False, "PUBLIC_URL must be the bot's https:// address for the platforms' webhooks"


def hosting(
    settings: Settings,
    target: str,
    instances: int | None,
    max_connections: int | None,
    worker_dynos: int | None = None,
    scheduler_dynos: int | None = None,
    clock_dynos: int | None = None,
) -> Iterator[Finding]:
    """What one host needs: the database kind, TLS, and connections against the database's limit."""
    instances = DEFAULT_INSTANCES[target] if instances is None else instances
    limit = max_connections or DEFAULT_MAX_CONNECTIONS[target]
    if settings.is_sqlite:
        if target == "vps":
            yield None, "SQLite: fine on one machine; use PostgreSQL to run on several"
            return
        yield False, f"{target} needs PostgreSQL: its disk does not keep a SQLite file"
        return
    # The URL as that host's processes will read it (its marker set, PGSSLMODE as here).
    there = {HOST_MARKERS[target]: "check"} if target in HOST_MARKERS else {}
    if "PGSSLMODE" in os.environ:
        there["PGSSLMODE"] = os.environ["PGSSLMODE"]
    connection = postgres_connection(
        settings.database_url, pool_size=settings.database_pool_size, environ=there
    )
    yield from tls(connection, target)
    workers = int(os.environ.get("WEB_CONCURRENCY") or DEFAULT_WORKERS)
    opened = connections(
        target,
        instances,
        workers=workers,
        pool=settings.database_pool_size,
        worker_dynos=DEFAULT_WORKER_DYNOS if worker_dynos is None else worker_dynos,
        scheduler_dynos=DEFAULT_SCHEDULER_DYNOS if scheduler_dynos is None else scheduler_dynos,
        clock_dynos=DEFAULT_CLOCK_DYNOS if clock_dynos is None else clock_dynos,
    )
    verdict = opened.needed <= limit
    advice = "WEB_CONCURRENCY, DATABASE_POOL_SIZE or the " + (
        "dynos" if target == "heroku" else "instances"
    )
    yield verdict, opened.sentence(limit) + ("" if verdict else f": lower {advice}")


def tls(connection: PostgresConnection, target: str) -> Iterator[Finding]:
    """Whether the host's connections will be encrypted, and what it would take."""
    if connection.tls_by_default:
        yield (
            True,
            (
                f"DATABASE_URL has no sslmode: on {target.title()} portabot connects with "
                f"sslmode={connection.sslmode} (TLS or no connection), as Heroku Postgres asks"
            ),
        )
    elif target == "heroku" and connection.sslmode == "disable":
        yield (
            False,
            "DATABASE_URL says sslmode=disable: Heroku Postgres refuses connections without TLS",
        )
    elif target == "heroku" and connection.sslmode in ("allow", "prefer"):
        yield (
            None,
            (
                f"DATABASE_URL says sslmode={connection.sslmode}: a connection may go unencrypted; "
                "Heroku advises sslmode=require"
            ),
        )
    elif target == "lambda" and connection.sslmode is None:
        yield None, "DATABASE_URL has no sslmode: add ?sslmode=require for a server online"


def describe(exc: BaseException) -> str:
    """An exception as one short line (drivers' messages name hosts, never passwords)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
