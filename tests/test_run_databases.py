"""Each test run on a database of its own: created on the test server, named after the run;
what a killed run left is dropped once it is old, and nothing else is."""

from __future__ import annotations

import os
import time
from typing import Any

from tests.conftest import POSTGRES_SERVER_URL, STALE_AFTER, RunDatabases, query, run


async def _on_server(runs: RunDatabases, *statements: str) -> set[str]:
    """Run `statements` on the server; returns the names of its databases afterwards."""
    connection: Any = await runs._maintenance()
    try:
        for statement in statements:
            await connection.execute(statement)
        return {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
    finally:
        await connection.close()


def test_this_run_uses_a_database_of_its_own(empty_postgres: str) -> None:
    [row] = query(empty_postgres, "SELECT current_database() AS name")
    base = RunDatabases(POSTGRES_SERVER_URL).base
    assert row["name"].startswith(f"{base}_") and row["name"].endswith(f"_{os.getpid()}_tests")


def test_a_killed_runs_database_is_dropped_once_old(empty_postgres: str) -> None:
    runs = RunDatabases(POSTGRES_SERVER_URL)
    long_ago = int(time.time()) - STALE_AFTER - 60
    old = f"{runs.base}_{long_ago}_4242_tests"
    recent = f"{runs.base}_{int(time.time()) - 60}_4243_tests"  # a run that may still be going
    not_ours = f"{runs.base}_{long_ago}_kept"
    run(_on_server(runs, *(f'CREATE DATABASE "{name}"' for name in (old, recent, not_ours))))
    try:
        run(runs.create("probe"))
        found = run(_on_server(runs))
        assert old not in found and {recent, not_ours, f"{runs.prefix}_probe"} <= found
    finally:
        runs.created += [recent, not_ours, old]
        run(runs.drop_all())
    assert not {old, recent, not_ours, f"{runs.prefix}_probe"} & run(_on_server(runs))
