"""The migrations build exactly the schema the code's tables describe, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from core.storage.migrate import alembic_url, head_revision, upgrade
from core.storage.tables import metadata
from tests.conftest import query
from tests.servers import run


async def differences(url: str) -> list[object]:
    engine = create_async_engine(alembic_url(url))

    def compare(connection: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


def test_the_migrated_schema_matches_the_tables(database_url: str) -> None:
    assert run(differences(database_url)) == []


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    assert upgrade(database_url) == upgrade(database_url) == head_revision() == "0007"


def test_sqlite_uses_wal(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        assert query(database_url, "SELECT * FROM pragma_journal_mode")[0]["journal_mode"] == "wal"


def test_the_migration_url_keeps_only_tls_of_the_options() -> None:
    neon = "postgresql://u:p@ep-x.neon.tech/db?ssl=require&channel_binding=require&max_size=3"
    assert alembic_url(neon) == "postgresql+asyncpg://u:p@ep-x.neon.tech/db?ssl=require"
