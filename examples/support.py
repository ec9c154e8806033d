"""A support desk in a few states: a person opens tickets and sees them from any platform.

Plug it in with BOT_FLOW=examples.support:flow (run from the repository's root).
"""

from __future__ import annotations

from typing import Any

from portabot.conversation.engine import Context, Flow, State, Target
from portabot.messages import Conversation, Kind, Message

HELP = """Support desk:
/ticket <problem> – open a ticket (or /ticket alone, then describe it)
/tickets – your open tickets
/close <number> – close one
/help – this list"""
MAX_OPEN = 20


def open_tickets(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in data.get("tickets", []) if t["open"]]


def add_ticket(ctx: Context, text: str) -> None:
    tickets = ctx.data.setdefault("tickets", [])
    number = len(tickets) + 1
    tickets.append({"number": number, "text": text[:1000], "opened": ctx.now, "open": True})
    ctx.reply(f"Ticket #{number} is open. We will answer here; /tickets lists yours.")


class Desk(State):
    name = "desk"

    async def handle(self, ctx: Context, message: Message) -> Target:
        if message.kind is not Kind.COMMAND:
            if message.kind is Kind.TEXT:
                ctx.reply("Send /ticket <problem> to open a ticket, or /help.")
            return None
        if message.command in ("start", "help"):
            ctx.reply(HELP)
        elif message.command == "ticket":
            if len(open_tickets(ctx.data)) >= MAX_OPEN:
                ctx.reply(f"You have {MAX_OPEN} open tickets; close one first.")
            elif message.args:
                add_ticket(ctx, message.args)
            else:
                ctx.reply("Describe the problem in one message (or /cancel).")
                return Describing
        elif message.command == "tickets":
            tickets = open_tickets(ctx.data)
            lines = [f"#{t['number']}: {t['text']}" for t in tickets]
            ctx.reply("\n".join(lines) if lines else "You have no open tickets.")
        elif message.command == "close":
            number = message.args.lstrip("#")
            ticket = next((t for t in open_tickets(ctx.data) if str(t["number"]) == number), None)
            if ticket is None:
                ctx.reply("No open ticket with that number; /tickets lists yours.")
            else:
                ticket["open"] = False
                ctx.reply(f"Ticket #{ticket['number']} is closed.")
        else:
            ctx.reply("Unknown command. Send /help for the list.")
        return None


class Describing(State):
    """The next text message becomes the ticket."""

    name = "describing"

    async def handle(self, ctx: Context, message: Message) -> Target:
        if message.kind is Kind.COMMAND and message.command == "cancel":
            ctx.reply("No ticket opened.")
            return Desk
        if message.kind is not Kind.TEXT or not message.text:
            ctx.reply("Describe the problem in one message, or send /cancel.")
            return None
        add_ticket(ctx, message.text)
        return Desk


class SupportFlow(Flow):
    def __init__(self) -> None:
        super().__init__([Desk, Describing])

    def merge(self, kept: Conversation, absorbed: Conversation) -> Conversation:
        # One person with two accounts: both lists of tickets, numbered again in order.
        tickets = sorted(
            kept.data.get("tickets", []) + absorbed.data.get("tickets", []),
            key=lambda t: t["opened"],
        )
        renumbered = [{**t, "number": n} for n, t in enumerate(tickets, start=1)]
        return Conversation("desk", {**absorbed.data, **kept.data, "tickets": renumbered})


flow = SupportFlow()
