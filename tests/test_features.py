"""A feature of the author's own: an effect carried out by its handler inside the update's
transaction (its own table, numbered by the database), its result back to the flow, its rows
moved when two people become one, its purge step run by `portabot maintain`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from portabot.conversation.engine import Context, Flow, State
from portabot.conversation.loader import load_flow
from portabot.features import Effect, EffectRun, Feature, handles
from portabot.features.linking import Linking
from portabot.features.passphrase import Passphrase
from portabot.messages import Kind, Message
from portabot.storage.database import Conn, Database, Query
from portabot.storage.migrate import upgrade
from tests.conftest import BotFactory, query, say_web

notes = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class NoteAdded:
    number: int
    mine: int


@dataclass(frozen=True)
class AddNote(Effect[NoteAdded]):
    text: str


_ADD = Query("INSERT INTO notes (person_id, text) VALUES (:person_id, :text) RETURNING id")
_MINE = Query("SELECT count(*) FROM notes WHERE person_id = :person_id")
_MOVE = Query("UPDATE notes SET person_id = :kept WHERE person_id = :absorbed")
_EMPTY = Query("DELETE FROM notes WHERE text = '' RETURNING 1")


class Notes(Feature):
    name = "notes"
    tables = (notes,)

    @handles(AddNote)
    async def add(self, run: EffectRun, effect: AddNote) -> NoteAdded:
        number = await run.conn.fetch_val(_ADD, person_id=run.person.id, text=effect.text)
        return NoteAdded(number, await run.conn.fetch_val(_MINE, person_id=run.person.id))

    async def merge(self, conn: Conn, kept: int, absorbed: int) -> None:
        await conn.execute(_MOVE, kept=kept, absorbed=absorbed)

    async def purge(self, db: Database, now: float) -> str:
        async with db.transaction() as conn:
            return f"notes: {len(await conn.fetch_all(_EMPTY))} empty ones deleted"


class Taking(State):
    name = "taking"

    async def handle(self, ctx: Context, message: Message) -> None:
        if message.kind is Kind.TEXT:
            ctx.request(AddNote(message.text))

    async def resume(self, ctx: Context, result: Any) -> None:
        assert isinstance(result, NoteAdded)
        ctx.reply(f"Note #{result.number} kept; you have {result.mine}.")


flow = Flow([Taking()], initial="taking", features=[Notes()])


def test_an_effect_of_the_authors_own_runs_in_the_update_and_answers_the_flow(
    database_url: str, start_bot: BotFactory
) -> None:
    upgrade(database_url, notes_tables())
    bot = start_bot(flow)
    assert say_web(bot, "milk") == ["Note #1 kept; you have 1."]
    assert say_web(bot, "eggs") == ["Note #2 kept; you have 2."]
    rows = rows_of(database_url, "SELECT text FROM notes ORDER BY id")
    assert [row["text"] for row in rows] == ["milk", "eggs"]


def notes_tables() -> list[sa.Table]:
    return [table for feature in flow.features for table in feature.tables]


def rows_of(url: str, sql: str) -> list[dict[str, Any]]:
    if url.startswith("sqlite"):
        import contextlib
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql)]
    return query(url, sql)


def test_an_effect_no_feature_carries_out_is_an_error_naming_it() -> None:
    bare = Flow([Taking()], initial="taking")
    with pytest.raises(LookupError, match="no feature of this flow carries out AddNote"):
        bare.handler_for(AddNote("x"))


def test_two_features_carrying_out_one_effect_fail_when_the_flow_is_built() -> None:
    with pytest.raises(ValueError, match="two features carry out AddNote"):
        Flow([Taking()], initial="taking", features=[Notes(), Notes()])


def test_the_built_in_bot_includes_linking_by_its_feature() -> None:
    from tests.conftest import make_settings

    built = load_flow(make_settings())
    assert [type(feature) for feature in built.features] == [Passphrase, Linking]


def test_a_feature_with_two_handlers_of_one_effect_fails_when_the_flow_is_built() -> None:
    class Twice(Feature):
        @handles(AddNote)
        async def one(self, run: EffectRun, effect: AddNote) -> None: ...

        @handles(AddNote)
        async def other(self, run: EffectRun, effect: AddNote) -> None: ...

    with pytest.raises(ValueError, match="Twice has two handlers of AddNote"):
        Flow([Taking()], features=[Twice()])


def test_handles_takes_effect_types_only() -> None:
    with pytest.raises(TypeError, match="@handles takes Effect subclasses"):
        handles(NoteAdded)  # type: ignore[arg-type]


def test_a_flow_named_by_bot_flow_gets_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_flow configures what it loads: a Passphrase() of the author's flow takes
    BOT_PASSPHRASE (it used to, only in the built-in bot, which configured itself)."""
    import sys

    from tests.conftest import make_settings

    gated = Flow([Taking()], initial="taking", features=[Passphrase()])
    monkeypatch.setattr(sys.modules[__name__], "gated", gated, raising=False)
    loaded = load_flow(make_settings(bot_flow=f"{__name__}:gated", bot_passphrase="sesame"))
    assert loaded is gated and loaded.initial_state() == "locked"
