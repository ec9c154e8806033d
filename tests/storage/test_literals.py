"""Values written into SQL as literals (the save that carries its COMMIT in one round trip) come
back from PostgreSQL exactly as they were: no text can end its literal early, no number's sign
can make a comment with what stands before it, and nothing a value holds runs as a statement."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portabot.storage.database import Database, Query, Statement, literal
from tests.conftest import run

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
        "UPDATE people SET data = $q$it's$q$ WHERE id = (3)"
    )


def test_numbers_are_parenthesised_so_a_sign_cannot_make_a_comment() -> None:
    # Unparenthesised, `5 - -7` would be fine but `5 --7` a comment to the end of the line.
    difference = Query("SELECT 5 - :a, 1.5 - :b")
    assert difference.with_values("postgresql", {"a": -7, "b": -0.25}) == (
        "SELECT 5 - (-7), 1.5 - (-0.25)"
    )
    assert literal(-(10**30)) == f"({-(10**30)})" and literal(1e-05) == "(1e-05)"


@pytest.mark.parametrize(
    "text",
    [
        "SELECT :a -- the answer",
        "SELECT :a /* the answer */",
        "SELECT 5 -:a",  # a negative value would make `--`
        "SELECT ':a'",  # a literal inside a literal
        'SELECT :a AS "x"',
        "SELECT $$:a$$",
    ],
)
def test_a_statement_for_literals_that_could_be_turned_is_refused(text: str) -> None:
    query = Query(text)
    with pytest.raises(ValueError, match="a statement that takes literals may not contain"):
        query.with_values("postgresql", {"a": 1})
    with pytest.raises(ValueError):  # every time, not only the first
        query.with_values("postgresql", {"a": 1})
    # Prepared, the same text is fine: the values never enter it.
    assert query.compiled("postgresql")[0].startswith("SELECT ")


def test_the_shipped_statements_for_literals_are_accepted() -> None:
    from portabot.messages import Conversation, Delivery, Update
    from portabot.storage.people import saving
    from portabot.storage.replies import remembering

    update = Update("telegram", "1", None)
    for query, params in (
        saving(-1, Conversation("s", {"n": -1}), -1.5),
        remembering(update, [Delivery("telegram", "-9", "--\n/*", "1:0")], -1.5),
    ):
        assert "(-1" in query.with_values("postgresql", params)


HOSTILE = [
    "\n; DELETE FROM canary;\n",
    "\n;DELETE FROM canary --",
    "*/; DELETE FROM canary; /*",
    "$q$); DELETE FROM canary; --",
    "'); DELETE FROM canary; --",
    "-",
    "\n",
    "--",
]
numbers = (
    st.integers(-(2**30) + 1, 2**30 - 1)  # the difference of two fits an integer
    | st.sampled_from([-1, -5, -(2**40), -(2**61), -0.5, -1e-05, -1e300])  # bigint past 2**31
    | st.floats(allow_nan=False, allow_infinity=False)
)
texts = st.sampled_from(HOSTILE) | st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
)
INSERT = Query("INSERT INTO literal_rows (k, n, s) VALUES (:k, :n, :s)")
NEGATED = Query("INSERT INTO literal_rows (k, n, s) VALUES (:k, 0 - :n, :s)")
DIFFERENCE = Query("INSERT INTO literal_rows (k, n, s) VALUES (:k, :n - :m, :s)")
ROWS = Query("SELECT k, n, s FROM literal_rows ORDER BY k")
CANARY = Query("SELECT count(*) FROM canary")


def _exact(value: float | int) -> Decimal:
    return Decimal(repr(value))


async def _commit_with(url: str, statements: list[Statement]) -> tuple[list[tuple[Any, ...]], int]:
    database = Database(f"{url}?max_size=1")  # one connection: the temporary tables stay
    try:
        async with database.transaction() as conn:
            await conn.execute(
                Query("CREATE TEMPORARY TABLE literal_rows (k int, n numeric, s text)")
            )
            await conn.execute(Query("CREATE TEMPORARY TABLE canary (alive bool)"))
            await conn.execute(Query("INSERT INTO canary VALUES (TRUE)"))
            await conn.commit_with(*statements)
        async with database.transaction() as conn:
            rows = [(row["k"], row["n"], row["s"]) for row in await conn.fetch_all(ROWS)]
            return rows, int(await conn.fetch_val(CANARY))
    finally:
        await database.close()


@pytest.mark.postgres
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([INSERT, NEGATED, DIFFERENCE]), numbers, numbers, texts),
        min_size=1,
        max_size=4,
    )
)
def test_statements_committed_with_literals_store_exactly_their_values(
    postgres_url: str, rows: list[tuple[Query, float, float, str]]
) -> None:
    """Adjacent negative numbers and text with newlines and comment marks, several statements in
    one message (the simple query protocol runs every statement it is given): each row holds its
    values, and nothing else ran."""
    statements: list[Statement] = []
    expected = []
    with localcontext(prec=2000):  # numeric's arithmetic is exact; so is this
        for k, (query, n, m, s) in enumerate(rows):
            statements.append((query, {"k": k, "n": n, "m": m, "s": s}))
            value = {INSERT: _exact(n), NEGATED: -_exact(n), DIFFERENCE: _exact(n) - _exact(m)}
            expected.append((k, value[query], s))
    stored, canaries = run(_commit_with(postgres_url, statements))
    assert stored == expected and canaries == 1


async def _select(url: str, sql: str) -> tuple[Any, ...]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(sql)
        return tuple(row)
    finally:
        await connection.close()


@pytest.mark.postgres
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=numbers, b=numbers, text=texts)
def test_a_literal_right_after_a_minus_is_still_its_value(
    postgres_url: str, a: float, b: float, text: str
) -> None:
    """The shape a Query for literals may not have (`-:a`), written by hand: a negative number's
    sign beside the `-` must not become `--`, which would hide the rest of the line until a
    newline in the text, and let that text's next line run as SQL."""
    sql = f"SELECT 0 -{literal(a)} -{literal(b)}, {literal(text)}, {literal(a)}-{literal(b)}"
    with localcontext(prec=2000):
        expected = (-_exact(a) - _exact(b), text, _exact(a) - _exact(b))
    assert run(_select(postgres_url, sql)) == expected
