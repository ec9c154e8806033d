"""What `portabot check` finds: missing or wrong configuration, for any host or for one target."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator

from core.settings import ConfigurationError, Settings, obscure_url

Finding = tuple[bool | None, str]
"""(True: fine, None: worth knowing, False: a problem) and what to say."""

TARGETS = ("heroku", "lambda", "vps")
DEFAULT_INSTANCES = {"heroku": 1, "lambda": 10, "vps": 1}
"""Web dynos, Lambda's reserved concurrency (the SAM template's default), machines."""
DEFAULT_MAX_CONNECTIONS = {"heroku": 20, "lambda": 100, "vps": 100}
"""Heroku Postgres Essential-0's limit; PostgreSQL's own default (max_connections) elsewhere."""
DEFAULT_WORKERS = 2
"""gunicorn workers when WEB_CONCURRENCY is unset (both gunicorn.conf.py files)."""
TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]{30,}$")


def configuration(
    settings: Settings,
    target: str | None = None,
    *,
    instances: int | None = None,
    max_connections: int | None = None,
) -> Iterator[Finding]:
    yield database(settings)
    yield flow(settings)
    yield from platforms(settings)
    if settings.bot_passphrase is None:
        yield None, "BOT_PASSPHRASE unset: anyone may use the bot"
    if settings.session_secret is None:
        yield None, "SESSION_SECRET unset: the web chat uses one kept in the database"
    if target is not None:
        yield from hosting(settings, target, instances, max_connections)


def database(settings: Settings) -> Finding:
    from core.storage.database import Database, Query, is_connection_lost

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


def flow(settings: Settings) -> Finding:
    from core.conversation.loader import load_flow

    try:
        load_flow(settings)
    except ConfigurationError as exc:
        return False, str(exc)
    return True, f"flow {settings.bot_flow}"


def platforms(settings: Settings) -> Iterator[Finding]:
    from core.app import platform_channels
    from core.channels.base import ApiError
    from core.outbound import call_now

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
    settings: Settings, target: str, instances: int | None, max_connections: int | None
) -> Iterator[Finding]:
    """What one host needs: the database kind, and connections against the database's limit."""
    instances = instances or DEFAULT_INSTANCES[target]
    limit = max_connections or DEFAULT_MAX_CONNECTIONS[target]
    if settings.is_sqlite:
        if target == "vps":
            yield None, "SQLite: fine on one machine; use PostgreSQL to run on several"
            return
        yield False, f"{target} needs PostgreSQL: its disk does not keep a SQLite file"
        return
    if target == "lambda":
        processes, per_process = instances, 1  # one request at a time per container
        who = f"{instances} concurrent Lambda containers × 1 connection"
        if "ssl=" not in settings.database_url:
            yield None, "DATABASE_URL has no sslmode: add ?sslmode=require for a server online"
    else:
        workers = int(os.environ.get("WEB_CONCURRENCY") or DEFAULT_WORKERS)
        processes, per_process = instances * workers, settings.database_pool_size
        unit = "web dyno" if target == "heroku" else "machine"
        plural = "" if instances == 1 else "s"
        who = f"{instances} {unit}{plural} × {workers} workers × DATABASE_POOL_SIZE {per_process}"
    needed = processes * per_process + 1  # and one for `portabot migrate` or a console
    verdict = needed <= limit
    yield (
        verdict,
        f"{who} + 1 = {needed} connections of the database's {limit}"
        + ("" if verdict else ": lower WEB_CONCURRENCY, DATABASE_POOL_SIZE or the instances"),
    )


def describe(exc: BaseException) -> str:
    """An exception as one short line (drivers' messages name hosts, never passwords)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
