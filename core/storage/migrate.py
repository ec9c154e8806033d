"""Alembic migrations, run by `portabot migrate`; and the check a server makes once, on first use,
that its database has the schema (a SQLite file is migrated then and there)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from portabot.settings import postgres_connection
from portabot.storage.database import Database, Query, is_connection_lost

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

    from portabot.features import Feature

log = logging.getLogger("portabot.storage")

SCHEMA_REVISION = "0008"
"""The newest migration's revision, which this code needs (a test holds it to Alembic's head): a
server compares it with the database's without loading Alembic."""
NOT_MIGRATED = "the database is not migrated: run portabot migrate"


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

    with _migrating(url):
        if url.startswith("sqlite"):
            _use_wal(url)
        command.upgrade(_config(url), "head")
        if tables:
            asyncio.run(_create_missing(url, tables))
    return head_revision()


@contextlib.contextmanager
def _migrating(url: str) -> Iterator[None]:
    """One migration at a time on a SQLite file: the workers of one machine may all start on a
    fresh file at once, and Alembic's SQLite DDL is not transactional. (PostgreSQL is migrated
    by one release step, not by servers.)"""
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    with open(f"{path}.migrating", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


async def _create_missing(url: str, tables: Sequence[sa.Table]) -> None:
    """A feature's table is created once; changing it later takes a migration of its own."""
    engine = migration_engine(url)
    try:
        async with engine.begin() as conn:
            for table in tables:
                await conn.run_sync(table.create, checkfirst=True)
    finally:
        await engine.dispose()


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    if not url.startswith("sqlite"):
        return None
    path = sa.engine.make_url(url).database
    return Path(path) if path and path != ":memory:" else None


def _use_wal(url: str) -> None:
    # WAL lets readers go on while one writer commits; the mode is kept in the file itself.
    path = _sqlite_path(url)
    if path is not None:
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()


_REVISION = Query("SELECT version_num FROM alembic_version")
_TABLE_EXISTS = Query(
    postgresql="SELECT to_regclass(:name) IS NOT NULL",
    sqlite="SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = :name",
)


async def schema_is_current(db: Database, tables: Sequence[sa.Table] = ()) -> bool:
    """Whether the database is at SCHEMA_REVISION and has every one of `tables`. A database
    that cannot be reached raises."""
    async with db.autocommit() as conn:
        try:
            revision = await conn.fetch_val(_REVISION)
        except Exception as exc:
            if is_connection_lost(exc):
                raise
            return False  # no alembic_version: never migrated
        if revision != SCHEMA_REVISION:
            return False
        for table in tables:
            if not await conn.fetch_val(_TABLE_EXISTS, name=table.name):
                return False
    return True


class SchemaBehind(Exception):
    """The database is not migrated (PostgreSQL, which servers do not migrate themselves)."""

    def __init__(self) -> None:
        super().__init__(NOT_MIGRATED)


def feature_tables(features: Sequence[Feature]) -> list[sa.Table]:
    """The tables the flow's features keep, which migrating creates when missing."""
    return [table for feature in features for table in feature.tables]


class Schema:
    """The check a server makes before its first use of the database, until it passes once (then
    nothing is asked again): a SQLite file is brought up to date, idempotently and one process at
    a time; a PostgreSQL database behind raises SchemaBehind, each time, until it is migrated."""

    def __init__(self, db: Database, tables: Sequence[sa.Table] = ()) -> None:
        self.db = db
        self.tables = tuple(tables)
        self.current = False
        self._reported = False

    async def ensure(self) -> None:
        if self.current:
            return
        try:
            current = await schema_is_current(self.db, self.tables)
        except Exception:
            return  # unreachable: the request finds out, and says so, as any other would
        if not current:
            if self.db.dialect != "sqlite":
                if not self._reported:  # one line, not one per request
                    log.error("%s", NOT_MIGRATED)
                    self._reported = True
                raise SchemaBehind
            log.info("migrating the SQLite database %s", _sqlite_path(self.db.url))
            await asyncio.to_thread(upgrade, self.db.url, self.tables)
        self.current = True
