"""The databases a run uses: the PostgreSQL bench database emptied and migrated afresh (created
when missing), a new SQLite file migrated, each with `portabot migrate` as a deployment runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.processes import ROOT, BenchError, bench_environment

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test_bench"
POSTGRES_URL_VARIABLE = "PORTABOT_BENCH_POSTGRES_URL"


def postgres_url() -> str:
    return os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)


def obscured(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def with_address(url: str, host: str, port: int) -> str:
    """The same database reached at another address (our counting proxy)."""
    return sa.engine.make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


def address(url: str) -> tuple[str, int]:
    parsed = sa.engine.make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


async def connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)


async def _reset(url: str) -> str:
    import asyncpg

    try:
        connection = await connect(url)
    except asyncpg.InvalidCatalogNameError:
        name = sa.engine.make_url(url).database
        maintenance = await connect(
            sa.engine.make_url(url).set(database="postgres").render_as_string(hide_password=False)
        )
        try:
            await maintenance.execute(f'CREATE DATABASE "{name}"')
        finally:
            await maintenance.close()
        connection = await connect(url)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        version: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return version


def migrate(url: str) -> None:
    # `portabot migrate` of the checkout the bench is in (cwd), whatever the venv installed.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from portabot.cli import main; sys.exit(main())",
            "migrate",
        ],
        cwd=ROOT,
        env=bench_environment(DATABASE_URL=url),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f"portabot migrate failed on {obscured(url)}: {done.stderr[-300:]}")


def fresh_postgres(url: str) -> str:
    """Empty the bench database (creating it if needed) and migrate it; returns the server's
    version."""
    try:
        version = asyncio.run(_reset(url))
    except (OSError, Exception) as exc:
        raise BenchError(f"PostgreSQL at {obscured(url)} unavailable: {exc}") from None
    migrate(url)
    return version


def fresh_sqlite(directory: Path, name: str) -> str:
    path = directory / f"{name}.db"
    for leftover in directory.glob(f"{name}.db*"):
        leftover.unlink()
    url = f"sqlite:///{path}"
    migrate(url)
    return url


def postgres_version(url: str) -> str | None:
    async def ask() -> str:
        connection = await connect(url)
        try:
            version: str = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
        return version

    try:
        return asyncio.run(ask())
    except (OSError, Exception):
        return None
