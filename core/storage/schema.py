"""The check a server makes before its first use of the database: is the schema the one this
code needs? Without SQLAlchemy or Alembic (Lambda's package has neither), by the revision alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from portabot.storage.database import Database, Query, is_connection_lost

if TYPE_CHECKING:
    import sqlalchemy as sa

    from portabot.features import Feature

log = logging.getLogger("portabot.storage")

SCHEMA_REVISION = "0013"
"""The newest migration's revision, which this code needs (a test holds it to Alembic's head)."""
NOT_MIGRATED = "the database is not migrated: run portabot migrate"

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

    def __init__(self, db: Database, features: Sequence[Feature] = ()) -> None:
        self.db = db
        self.features = tuple(features)
        self.current = False
        self._reported = False

    async def ensure(self) -> None:
        if self.current:
            return
        try:
            # Features' tables (SQLAlchemy's) only on SQLite: Lambda's package serves without it.
            sqlite = self.db.dialect == "sqlite"
            tables = feature_tables(self.features) if sqlite else ()
            current = await schema_is_current(self.db, tables)
        except Exception:
            return  # unreachable: the request finds out, and says so, as any other would
        if not current:
            if self.db.dialect != "sqlite":
                if not self._reported:  # one line, not one per request
                    log.error("%s", NOT_MIGRATED)
                    self._reported = True
                raise SchemaBehind
            from portabot.storage.migrate import upgrade  # SQLite: never on Lambda

            log.info("migrating the SQLite database %s", self.db.url)
            await asyncio.to_thread(upgrade, self.db.url, tables)
        self.current = True
