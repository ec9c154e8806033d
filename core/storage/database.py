"""The database handle: connects lazily on first use, keeps the connection, runs transactions."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from databases import Database as _Databases
from databases.core import Connection, Transaction

from core.storage.sqlite import GroupCommit

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


async def _keep_session(connection: Any) -> None:
    """What the pool does to a connection given back, beyond rolling back an open transaction:
    nothing. Ours keep no session state (no LISTEN, SET or session-level advisory lock), and
    asyncpg's default reset query would be one more round trip per transaction."""


class Database:
    """One `databases.Database` per process, created on the first request that needs it."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.pool_size = pool_size
        self._database: _Databases | None = None
        self._connecting: asyncio.Lock | None = None
        # SQLite takes one writer at a time: transactions take turns on one connection (where
        # `databases` would open one, and a thread, for each) and share COMMITs.
        self._sqlite_writer: GroupCommit | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _options(self) -> dict[str, Any]:
        if self.dialect == "sqlite":
            return {"timeout": SQLITE_BUSY_TIMEOUT}
        options: dict[str, Any] = {"reset": _keep_session}
        query = sa.engine.make_url(self.url).query
        if "min_size" not in query and "max_size" not in query:
            options.update(min_size=1, max_size=self.pool_size)
        return options

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
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
        if self._database is not None:
            database, self._database = self._database, None
            await database.disconnect()

    async def ping(self) -> None:
        database = await self.connected()
        await database.fetch_val("SELECT 1")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        if self.dialect == "sqlite":
            await self.connected()
            if self._sqlite_writer is None:
                self._sqlite_writer = GroupCommit(self._sqlite_connect)
            async with self._sqlite_writer.transaction() as conn:
                yield conn
            return
        conn, transaction = await self._begin()
        try:
            yield conn
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()

    async def _sqlite_connect(self) -> Connection:
        database = await self.connected()
        connection = Connection(database, database._backend)
        await connection.__aenter__()  # held until close()
        return connection

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Connection]:
        """A connection outside any transaction: each statement commits by itself (one round trip
        where a transaction would take three). On SQLite, the writer's connection and turn."""
        if self.dialect == "sqlite":
            async with self.transaction() as conn:
                yield conn
            return
        database = await self.connected()
        async with database.connection() as conn:
            yield conn

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

    async def fetch_row(
        self, conn: Connection, statement: Prepared, **params: Any
    ) -> Sequence[Any] | None:
        """The first row of a prepared statement's result, as a tuple-like row."""
        sql, names = statement.compiled(self.dialect)
        args = [params[name] for name in names]
        raw = conn.raw_connection
        if self.dialect == "sqlite":
            rows = await raw.execute_fetchall(sql, args)
            return rows[0] if rows else None
        row: Sequence[Any] | None = await raw.fetchrow(sql, *args)
        return row

    async def run(self, conn: Connection, statement: Prepared, **params: Any) -> None:
        sql, names = statement.compiled(self.dialect)
        args = [params[name] for name in names]
        raw = conn.raw_connection
        if self.dialect == "sqlite":
            await raw.execute(sql, args)
        else:
            await raw.execute(sql, *args)

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that knows ON CONFLICT in this database's dialect."""
        # Imported here: a PostgreSQL deployment need not load SQLite's dialect, and vice versa.
        dialect = importlib.import_module(f"sqlalchemy.dialects.{self.dialect}")
        return dialect.insert(table)


class Prepared:
    """A statement on the path of every update, compiled once per dialect and run on the driver's
    own connection (asyncpg then keeps it prepared): `databases` compiles SQLAlchemy statements on
    every call, which was a third of an update's time."""

    __slots__ = ("_compiled", "_statements")

    def __init__(
        self, statement: sa.ClauseElement | None = None, **by_dialect: sa.ClauseElement
    ) -> None:
        every = {} if statement is None else {"postgresql": statement, "sqlite": statement}
        self._statements = {**every, **by_dialect}
        self._compiled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def compiled(self, dialect: str) -> tuple[str, tuple[str, ...]]:
        """The SQL text in the driver's parameter style and the parameters' names in order."""
        found = self._compiled.get(dialect)
        if found is None:
            compiled = self._statements[dialect].compile(dialect=_DIALECTS[dialect]())
            assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
            found = (str(compiled), tuple(compiled.positiontup or ()))
            self._compiled[dialect] = found
        return found


def _postgresql_dialect() -> sa.Dialect:
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    return dialect()  # type: ignore[no-untyped-call]  # $1, $2 … as asyncpg takes them


def _sqlite_dialect() -> sa.Dialect:
    from sqlalchemy.dialects.sqlite.pysqlite import dialect

    return dialect(paramstyle="qmark")


_DIALECTS = {"postgresql": _postgresql_dialect, "sqlite": _sqlite_dialect}
