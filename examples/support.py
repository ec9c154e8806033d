"""A support desk: a person opens tickets, lists and closes them, from any platform they link.

The tickets live in a table of their own (`support_tickets`), numbered by the database, not in
the person's state: a state is read and written on every message and has a size limit, while a
desk's tickets only grow. The `Tickets` feature owns that table: the effects that open, list and
close tickets (run inside the update's transaction, so a re-delivered message opens nothing
twice), the merge that moves the tickets when two people link their accounts, and the purge of
long-closed tickets. The flow around it is the conversation: commands, text and button presses
routed by decorators, and the effects' results coming back to flow-wide `@result` routes.

The list of tickets carries a "Close #N" button for each (the first ten: a keyboard every
platform shows holds ten). A press's payload is untrusted, as typed text is: `close:N` asks the
same effect as `/close N`, which closes only an open ticket of the person pressing.

An operator answers through `POST /api/events` (API_TOKEN set): `python -m examples.support
open` lists the open tickets with their owners' person ids (from DATABASE_URL), and the event
`{"to": <person id>, "name": "answer", "data": {"ticket": N, "text": "..."}, "id": "<unique>"}`
tells the owner "Answer to ticket #N: ..." on every platform they linked. The `AnswerTicket`
effect checks that N is an open ticket of that person; another is answered to nobody (logged),
and the event is still acknowledged.

Plug it in with BOT_FLOW=examples.support:flow (run from the repository's root); `portabot
migrate` creates the table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portabot import (
    Button,
    Conn,
    Context,
    Database,
    Effect,
    EffectRun,
    Feature,
    Flow,
    Kind,
    Linking,
    Message,
    Query,
    State,
    Target,
    command,
    event,
    handles,
    press,
    result,
    text,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger("examples.support")

MAX_OPEN = 20
"""Open tickets one person may have: a stranger can't fill the table by opening more."""
MAX_TEXT = 1000
"""The longest description, in characters."""
SHOWN = 100
"""How much of each description /tickets shows, so that the list fits in one message."""
BUTTONS = 10
"""Close buttons under the list: the most a keyboard on every platform holds."""
CLOSED_KEPT = 30 * 86_400.0
"""Closed tickets are kept a month, then `portabot maintain` deletes them: opening and closing
in a loop is not a way to grow the table without end."""

# The feature: the table, its effects and their results, the storage behind them.


@dataclass(frozen=True, slots=True)
class TicketOpened:
    number: int


@dataclass(frozen=True, slots=True)
class TooManyOpen:
    limit: int


@dataclass(frozen=True, slots=True)
class Ticket:
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class OpenTickets:
    tickets: tuple[Ticket, ...]


@dataclass(frozen=True, slots=True)
class TicketClosed:
    number: int


@dataclass(frozen=True, slots=True)
class NoSuchTicket:
    number: int


@dataclass(frozen=True, slots=True)
class OpenTicket(Effect[TicketOpened | TooManyOpen]):
    """Open a ticket for this person, unless they have MAX_OPEN open already."""

    text: str


@dataclass(frozen=True, slots=True)
class ListTickets(Effect[OpenTickets]):
    """This person's open tickets, oldest first."""


@dataclass(frozen=True, slots=True)
class CloseTicket(Effect[TicketClosed | NoSuchTicket]):
    """Close one of this person's open tickets (another person's number is not found)."""

    number: int


@dataclass(frozen=True, slots=True)
class TicketAnswered:
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class NotAnswered:
    number: int


@dataclass(frozen=True, slots=True)
class AnswerTicket(Effect[TicketAnswered | NotAnswered]):
    """An operator's answer to one of this person's open tickets (another is not answered)."""

    number: int
    text: str


_IS_OPEN = Query(
    "SELECT number FROM support_tickets"
    " WHERE number = :number AND person_id = :person_id AND closed_at IS NULL"
)
_ALL_OPEN = Query(
    "SELECT number, person_id, text FROM support_tickets WHERE closed_at IS NULL ORDER BY number"
)
_COUNT_OPEN = Query(
    "SELECT count(*) FROM support_tickets WHERE person_id = :person_id AND closed_at IS NULL"
)
_OPEN = Query(
    "INSERT INTO support_tickets (person_id, text, opened_at)"
    " VALUES (:person_id, :text, :now) RETURNING number"
)
_LIST = Query(
    "SELECT number, text FROM support_tickets"
    " WHERE person_id = :person_id AND closed_at IS NULL ORDER BY number"
)
_CLOSE = Query(
    "UPDATE support_tickets SET closed_at = :now"
    " WHERE number = :number AND person_id = :person_id AND closed_at IS NULL RETURNING number"
)
_MOVE = Query("UPDATE support_tickets SET person_id = :kept WHERE person_id = :absorbed")
_PURGE = Query("DELETE FROM support_tickets WHERE closed_at < :before RETURNING 1")


class Tickets(Feature):
    """The desk's storage: `support_tickets`, one row a ticket, numbered by the database."""

    name = "tickets"

    # The person is locked for the update, so two messages can't both pass the count.
    @handles(OpenTicket)
    async def open(self, run: EffectRun, effect: OpenTicket) -> TicketOpened | TooManyOpen:
        if await run.conn.fetch_val(_COUNT_OPEN, person_id=run.person.id) >= MAX_OPEN:
            return TooManyOpen(MAX_OPEN)
        number = await run.conn.fetch_val(
            _OPEN, person_id=run.person.id, text=effect.text, now=run.now
        )
        return TicketOpened(number)

    @handles(ListTickets)
    async def list(self, run: EffectRun, effect: ListTickets) -> OpenTickets:
        rows = await run.conn.fetch_all(_LIST, person_id=run.person.id)
        return OpenTickets(tuple(Ticket(row["number"], row["text"]) for row in rows))

    @handles(CloseTicket)
    async def close(self, run: EffectRun, effect: CloseTicket) -> TicketClosed | NoSuchTicket:
        closed = await run.conn.fetch_val(
            _CLOSE, number=effect.number, person_id=run.person.id, now=run.now
        )
        return NoSuchTicket(effect.number) if closed is None else TicketClosed(closed)

    @handles(AnswerTicket)
    async def answer(self, run: EffectRun, effect: AnswerTicket) -> TicketAnswered | NotAnswered:
        found = await run.conn.fetch_val(_IS_OPEN, number=effect.number, person_id=run.person.id)
        if found is None:
            return NotAnswered(effect.number)
        return TicketAnswered(found, effect.text)

    @property
    def tables(self) -> Sequence[sa.Table]:
        # SQLAlchemy only when migrate asks: the Lambda package serves without it.
        import sqlalchemy as sa

        table = sa.Table(
            "support_tickets",
            sa.MetaData(),
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("person_id", sa.BigInteger, nullable=False, index=True),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("opened_at", sa.Float, nullable=False),
            sa.Column("closed_at", sa.Float, nullable=True),
            # A number is never given again, even once its ticket is purged.
            sqlite_autoincrement=True,
        )
        return (table,)

    async def merge(self, conn: Conn, kept: int, absorbed: int) -> None:
        """One person with two accounts: all the tickets are theirs (their numbers stay)."""
        await conn.execute(_MOVE, kept=kept, absorbed=absorbed)

    async def purge(self, db: Database, now: float) -> str:
        async with db.transaction() as conn:
            deleted = len(await conn.fetch_all(_PURGE, before=now - CLOSED_KEPT))
        return f"support tickets: {deleted} deleted (closed more than 30 days ago)"


# The conversation.

TICKETS = "tickets"
"""The payload of the button that lists the tickets, as /tickets does."""
CANCEL = "ticket:cancel"
"""The payload of the button that opens no ticket, as /cancel does while describing one."""


def request_ticket(ctx: Context, description: str) -> bool:
    """Ask for the ticket to be opened, if the description fits; whether it was asked."""
    if len(description) > MAX_TEXT:
        ctx.reply(f"Please describe it in at most {MAX_TEXT} characters ({len(description)} now).")
        return False
    ctx.request(OpenTicket(description))
    return True


class Desk(State):
    name = "desk"

    @command("ticket", args="<problem>", help="open a ticket (or /ticket alone, then describe it)")
    def ticket(self, ctx: Context, message: Message) -> Target:
        if not message.args:
            ctx.reply(
                "Describe the problem in one message (or /cancel).",
                buttons=[Button("Cancel", CANCEL)],
            )
            return Describing
        request_ticket(ctx, message.args)
        return None

    @text()
    def chat(self, ctx: Context, message: Message) -> None:
        ctx.reply("Send /ticket <problem> to open a ticket, or /help.")

    def handle(self, ctx: Context, message: Message) -> None:
        if message.kind is Kind.PRESS:  # an old button, or a payload no button of ours has
            ctx.reply("That button does nothing now; /tickets lists your open tickets.")


class Describing(State):
    """The next text message becomes the ticket."""

    name = "describing"

    @command("cancel", help="open no ticket")
    @press(CANCEL)
    def cancel(self, ctx: Context, message: Message) -> type[Desk]:
        ctx.reply("No ticket opened.", edit=True)
        return Desk

    @text()
    def described(self, ctx: Context, message: Message) -> Target:
        return Desk if request_ticket(ctx, message.text) else None

    def handle(self, ctx: Context, message: Message) -> None:
        if message.kind is not Kind.EVENT:  # an event the desk has no route for: no one asked
            ctx.reply("Describe the problem in one message, or send /cancel.")


# Flow-wide: in every state, after the state's own routes.


@command("help", "start", help="this list")
def show_help(ctx: Context, message: Message) -> None:
    ctx.reply(f"Support desk:\n{ctx.flow.help(ctx.state)}", buttons=[Button("My tickets", TICKETS)])


@command("tickets", help="your open tickets")
@press(TICKETS)
def tickets(ctx: Context, message: Message) -> None:
    ctx.request(ListTickets())


@command("close", args="<number>", help="close one")
def close(ctx: Context, message: Message) -> None:
    number = message.args.strip().lstrip("#")
    if not number.isdecimal() or len(number) > 9:
        ctx.reply("Send the ticket's number: /close <number> (/tickets lists yours).")
        return
    ctx.request(CloseTicket(int(number)))


@press(r"close:([0-9]{1,9})")
def close_pressed(ctx: Context, message: Message) -> None:
    """A "Close #N" button: whoever presses it, the effect closes only an open ticket of theirs
    (the payload is untrusted; the answer comes back to `closed` or `not_found`)."""
    ctx.request(CloseTicket(int(ctx.matched[1])))


def pressed(ctx: Context) -> bool:
    """Whether the step answers a press (a notice, and the list edited in place)."""
    return ctx.message is not None and ctx.message.kind is Kind.PRESS


@command()
def unknown(ctx: Context, message: Message) -> None:
    ctx.reply("Unknown command. Send /help for the list.")


@result(TicketOpened)
def opened(ctx: Context, opened: TicketOpened) -> None:
    ctx.reply(f"Ticket #{opened.number} is open. We will answer here; /tickets lists yours.")


@result(TooManyOpen)
def too_many(ctx: Context, refused: TooManyOpen) -> None:
    ctx.reply(f"You have {refused.limit} open tickets; close one first.")


@result(OpenTickets)
def listed(ctx: Context, found: OpenTickets) -> None:
    """The list, with a Close button for each of the first BUTTONS tickets, two to a row; after
    a press it replaces the pressed list."""
    lines = [f"#{t.number}: {shortened(t.text)}" for t in found.tickets]
    if not lines:
        ctx.reply("You have no open tickets.", edit=True)
        return
    if len(lines) > BUTTONS:
        lines.append(f"\nThe buttons close the first {BUTTONS}; /close <number> closes any.")
    shown = [Button(f"Close #{t.number}", f"close:{t.number}") for t in found.tickets[:BUTTONS]]
    rows = [shown[i : i + 2] for i in range(0, len(shown), 2)]
    ctx.reply("\n".join(lines), buttons=rows, edit=True)


@result(TicketClosed)
def closed(ctx: Context, closed: TicketClosed) -> None:
    if pressed(ctx):
        ctx.notice(f"Ticket #{closed.number} is closed.")
        ctx.request(ListTickets())  # the list again, without it
        return
    ctx.reply(f"Ticket #{closed.number} is closed.")


@result(NoSuchTicket)
def not_found(ctx: Context, missing: NoSuchTicket) -> None:
    if pressed(ctx):  # closed already (another device, an old list), or not theirs
        ctx.notice(f"You have no open ticket #{missing.number}.")
        ctx.request(ListTickets())
        return
    ctx.reply(f"You have no open ticket #{missing.number}; /tickets lists yours.")


@event("answer")
def answer(ctx: Context, message: Message) -> None:
    """An operator's answer (`POST /api/events`): `data` is {"ticket": N, "text": "..."},
    untrusted as any input; the effect checks the ticket is this person's and open."""
    number, answer_text = message.data.get("ticket"), message.data.get("text")
    if type(number) is not int or not 0 < number < 2**31:
        log.warning("answer event: data.ticket is not a ticket number: nothing sent")
        return
    if not isinstance(answer_text, str) or not answer_text.strip() or len(answer_text) > MAX_TEXT:
        log.warning("answer to ticket #%d: data.text is not 1 to %d characters", number, MAX_TEXT)
        return
    ctx.request(AnswerTicket(number, answer_text.strip()))


@result(TicketAnswered)
def answered(ctx: Context, answered: TicketAnswered) -> None:
    # The step is an event's: the reply goes to the person on every platform they linked.
    ctx.reply(f"Answer to ticket #{answered.number}: {answered.text}")


@result(NotAnswered)
def not_answered(ctx: Context, refused: NotAnswered) -> None:
    log.warning(
        "answer to ticket #%d: not an open ticket of that person, nothing sent", refused.number
    )


def shortened(description: str) -> str:
    return description if len(description) <= SHOWN else description[: SHOWN - 1] + "…"


flow = Flow(
    [Desk, Describing],
    routes=[
        show_help,
        tickets,
        close,
        close_pressed,
        unknown,
        opened,
        too_many,
        listed,
        closed,
        not_found,
        answer,
        answered,
        not_answered,
    ],
    features=[Linking(), Tickets()],
    name="support",
)


async def open_tickets(database_url: str) -> list[str]:
    """`python -m examples.support open`: one line per open ticket, with its owner's person id."""
    db = Database(database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            rows = await conn.fetch_all(_ALL_OPEN)
    finally:
        await db.close()
    return [f"#{r['number']} person {r['person_id']}: {shortened(r['text'])}" for r in rows]


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["open"]:
        print("usage: python -m examples.support open  (the open tickets, from DATABASE_URL)")
        return 2
    import asyncio

    from portabot.settings import load_settings

    lines = asyncio.run(open_tickets(load_settings().database_url))
    print("\n".join(lines) if lines else "no open tickets")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
