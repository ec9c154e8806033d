"""Alembic migrations, run by `portabot migrate` (and by `portabot serve` on SQLite)."""

from __future__ import annotations

import sqlite3
from importlib.resources import files
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_url(url: str) -> str:
    """The database URL with the async driver Alembic's engine uses, minus pool options."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    # Only TLS matters to the migration; other options (pool sizes, libpq's channel_binding that
    # Neon's URLs carry) are not asyncpg.connect() arguments.
    query = {k: v for k, v in parsed.query.items() if k == "ssl"}
    return parsed.set(drivername="postgresql+asyncpg", query=query).render_as_string(
        hide_password=False
    )


def _config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("core.storage").joinpath("migrations")))
    if url is not None:
        config.attributes["url"] = alembic_url(url)
    return config


def head_revision() -> str | None:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def upgrade(url: str) -> str | None:
    """Bring the schema to the newest revision; returns that revision."""
    from alembic import command

    if url.startswith("sqlite"):
        _use_wal(url)
    command.upgrade(_config(url), "head")
    return head_revision()


def _use_wal(url: str) -> None:
    # WAL lets readers go on while one writer commits; the mode is kept in the file itself.
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
