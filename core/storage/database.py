"""The database handle: connects lazily on first use, keeps the connection, runs transactions."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from databases import Database as _Databases
from databases.core import Connection, Transaction

SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for another process's transaction before failing."""


def is_connection_lost(exc: BaseException) -> bool:
    """A dead or refused connection, as opposed to a problem with what we asked."""
    if isinstance(exc, OSError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "PostgresConnectionError",  # SQLSTATE class 08
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "OperatorInterventionError",  # 57P01 and friends: terminated by the server
            "CannotConnectNowError",
        }
    )


class Database:
    """One `databases.Database` per process, created on the first request that needs it."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.pool_size = pool_size
        self._database: _Databases | None = None
        self._connecting: asyncio.Lock | None = None
        # SQLite takes one writer at a time; waiting here is cheaper than its busy-wait loop.
        self._sqlite_writer: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _options(self) -> dict[str, Any]:
        if self.dialect == "sqlite":
            return {"timeout": SQLITE_BUSY_TIMEOUT}
        options = sa.engine.make_url(self.url).query
        if "min_size" in options or "max_size" in options:
            return {}
        return {"min_size": 1, "max_size": self.pool_size}

    async def connected(self) -> _Databases:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A connection belongs to the loop that made it; a host that runs each request on a
            # new loop (none of ours does) gets a new connection rather than a broken one.
            self._database = self._connecting = self._sqlite_writer = None
            self._loop = loop
        if self._database is not None:
            return self._database
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._database is None:
                database = _Databases(self.url, **self._options())
                await database.connect()
                self._database = database
        return self._database

    async def close(self) -> None:
        if self._database is not None:
            database, self._database = self._database, None
            await database.disconnect()

    async def ping(self) -> None:
        database = await self.connected()
        await database.fetch_val("SELECT 1")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        if self.dialect == "sqlite":
            database = await self.connected()
            if self._sqlite_writer is None:
                self._sqlite_writer = asyncio.Lock()
            async with self._sqlite_writer, database.connection() as conn, conn.transaction():
                yield conn
            return
        conn, transaction = await self._begin()
        try:
            yield conn
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()

    async def _begin(self) -> tuple[Connection, Transaction]:
        """A connection with a transaction started. A server restart, or a Lambda container
        frozen long enough for its socket to die, shows first here: then every pooled connection
        is replaced and BEGIN is tried once more (nothing of ours has run yet)."""
        for attempt in (1, 2):
            database = await self.connected()
            conn = database.connection()
            transaction = conn.transaction()
            try:
                await transaction.start()  # takes the connection from the pool, then BEGIN
            except Exception as exc:
                while conn._connection_counter:  # give back what start() took
                    await conn.__aexit__(None, None, None)
                if attempt == 2 or not is_connection_lost(exc):
                    raise
                pool = getattr(database._backend, "_pool", None)
                if pool is not None:
                    await pool.expire_connections()
                continue
            return conn, transaction
        raise AssertionError("unreachable")

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that knows ON CONFLICT in this database's dialect."""
        # Imported here: a PostgreSQL deployment need not load SQLite's dialect, and vice versa.
        dialect = importlib.import_module(f"sqlalchemy.dialects.{self.dialect}")
        return dialect.insert(table)
