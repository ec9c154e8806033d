"""Alembic migrations, run by `portabot migrate` (and by `portabot serve` on SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from portabot.settings import postgres_connection

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine


def migration_engine(url: str) -> AsyncEngine:
    """The engine Alembic migrates through. On PostgreSQL it connects exactly as serving does
    (`postgres_connection`): one reading of the URL, so a URL that migrates also serves."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return create_async_engine(parsed.set(drivername="sqlite+aiosqlite"))
    import asyncpg

    connection = postgres_connection(url, pool_size=1)

    async def connect() -> Any:
        return await asyncpg.connect(connection.dsn, **connection.connect)

    # SQLAlchemy keeps prepared statements of its own: none where asyncpg is told to keep none
    # (an old PgBouncer). `async_creator` would drop that option; this is its documented form.
    cache = connection.connect.get("statement_cache_size", 100)

    def adapted() -> Any:
        dbapi: Any = engine.sync_engine.dialect.dbapi
        return dbapi.connect(async_creator_fn=connect, prepared_statement_cache_size=cache)

    engine = create_async_engine("postgresql+asyncpg://", creator=adapted)
    return engine


def _config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("portabot.storage").joinpath("migrations")))
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str | None:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def upgrade(url: str, tables: Sequence[sa.Table] = ()) -> str | None:
    """Bring the schema to the newest revision, then create the `tables` that are missing (the
    flow's features' own); returns the revision."""
    from alembic import command

    if url.startswith("sqlite"):
        _use_wal(url)
    command.upgrade(_config(url), "head")
    if tables:
        asyncio.run(_create_missing(url, tables))
    return head_revision()


async def _create_missing(url: str, tables: Sequence[sa.Table]) -> None:
    """A feature's table is created once; changing it later takes a migration of its own."""
    engine = migration_engine(url)
    try:
        async with engine.begin() as conn:
            for table in tables:
                await conn.run_sync(table.create, checkfirst=True)
    finally:
        await engine.dispose()


def _use_wal(url: str) -> None:
    # WAL lets readers go on while one writer commits; the mode is kept in the file itself.
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
