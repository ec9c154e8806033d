"""Values written into SQL as literals (the save that carries its COMMIT in one round trip) come
back from PostgreSQL exactly as they were: no text can end its literal early."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.storage.database import Query, literal
from tests.servers import run

TRICKY = ["", "'", "''", "\\", "$", "$$", "$q$", "x$q", "$q", "q$", "$q$q$", "a'); DROP TABLE x;--"]


@pytest.fixture
def echo(postgres_url: str) -> Callable[[Any], Any]:
    """The value PostgreSQL reads from the value's literal, in a statement of the form the save
    that carries its COMMIT uses."""

    async def ask(value: Any) -> Any:
        import asyncpg

        connection = await asyncpg.connect(postgres_url)
        try:
            sql = Query("SELECT :value").with_values("postgresql", {"value": value})
            return await connection.fetchval(sql)
        finally:
            await connection.close()

    return lambda value: run(ask(value))


@pytest.mark.postgres
@pytest.mark.parametrize("text", TRICKY)
def test_text_that_looks_like_a_quote_or_its_tag(echo: Callable[[Any], Any], text: str) -> None:
    assert echo(text) == text


@pytest.mark.postgres
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"])))
def test_any_text(echo: Callable[[Any], Any], text: str) -> None:
    assert echo(text) == text


@pytest.mark.postgres
@pytest.mark.parametrize("value", [None, True, False, 0, -7, 2**62, 1.5, 1795484400.123456])
def test_other_values(echo: Callable[[Any], Any], value: Any) -> None:
    # A float's shortest repr reads back as the same double (PostgreSQL reads it as numeric,
    # and numeric to double precision, as when it is stored, rounds to the nearest).
    back = echo(value)
    assert (float(back) if isinstance(value, float) else back) == value


def test_what_has_no_literal_is_refused() -> None:
    for value in (float("nan"), float("inf"), "a\x00b", b"bytes", object()):
        with pytest.raises(ValueError, match="no SQL literal"):
            literal(value)


def test_a_save_and_its_commit_travel_together() -> None:
    save = Query("UPDATE people SET data = :data WHERE id = :id")
    assert save.with_values("postgresql", {"data": "it's", "id": 3}) == (
        "UPDATE people SET data = $q$it's$q$ WHERE id = 3"
    )
