"""The migrations build exactly the schema the code's tables describe, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portabot.builtin import make
from portabot.storage.migrate import head_revision, migration_engine, upgrade
from portabot.storage.tables import metadata
from tests.conftest import query, run


def schema() -> sa.MetaData:
    """The core's tables and the built-in features' (whose tables the first migrations made)."""
    combined = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(combined)
    for feature in make().features:
        for table in feature.tables:
            table.to_metadata(combined)
    return combined


async def differences(url: str) -> list[object]:
    engine = migration_engine(url)

    def compare(connection: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), schema()))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


def test_the_migrated_schema_matches_the_tables(database_url: str) -> None:
    assert run(differences(database_url)) == []


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    assert upgrade(database_url) == upgrade(database_url) == head_revision() == "0013"


def test_sqlite_uses_wal(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        assert query(database_url, "SELECT * FROM pragma_journal_mode")[0]["journal_mode"] == "wal"
