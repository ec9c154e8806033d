"""The built-in bot (the default BOT_FLOW): the passphrase gate and linking, and the few answers
around them."""

from __future__ import annotations

from portabot.conversation.engine import Context, Flow, State
from portabot.conversation.routing import command, on, press
from portabot.features.linking import BIND, CANCEL, ME, Binding, Linking
from portabot.features.passphrase import Passphrase
from portabot.messages import ATTACHMENT_KINDS, Kind, Message
from portabot.replies import Button
from portabot.settings import Settings


class Idle(State):
    """A person who is in and doing nothing in particular."""

    @on(Kind.TEXT)
    def chat(self, ctx: Context, message: Message) -> None:
        ctx.reply("Send /help to see what I can do.")

    def handle(self, ctx: Context, message: Message) -> None:
        # Here, not a flow-wide @press(): that would come before the features' own presses.
        if message.kind is Kind.PRESS:  # a payload no button of ours carries now
            ctx.reply("That button does nothing now. Send /help to see what I can do.")
        elif message.kind in ATTACHMENT_KINDS:  # a photo, a sticker, a location, …
            ctx.reply("Send /help to see what I can do.")


HELP = "help"
"""The payload of a button that shows the help (a press of it is /help)."""


@command("help", "start", help="this list")
@press(HELP)
def show_help(ctx: Context, message: Message) -> None:
    """The commands, and buttons for what they do: linking another account (or, while a code
    waits, cancelling it) and the linked platforms."""
    if isinstance(ctx.state, Binding):
        first = Button("Cancel linking", CANCEL)
    else:
        first = Button("Link another account", BIND)
    ctx.reply(
        "Commands:\n" + ctx.flow.help(ctx.state),
        buttons=[[first, Button("My platforms", ME)]],
    )


@command("cancel", help="stop linking")
@press(CANCEL)
def cancel(ctx: Context, message: Message) -> None:
    """Nothing is being linked (Binding's own /cancel and Cancel come first)."""
    ctx.reply("Nothing to cancel.")


@command()
def unknown(ctx: Context, message: Message) -> None:
    ctx.reply(f"Unknown command /{message.command}. Send /help for the list.")


@on(Kind.JOINED)
def joined(ctx: Context, message: Message) -> None:
    ctx.reply("Hello! Send /help to see what I can do.")


def make(passphrase: str | None = None) -> Flow:
    """The built-in flow; the passphrase comes from BOT_PASSPHRASE unless given."""
    return Flow(
        [Idle],
        routes=[show_help, cancel, unknown, joined],
        features=[Passphrase(passphrase), Linking()],
        name="portabot",
    )


def build(settings: Settings) -> Flow:
    """BOT_FLOW's default (load_flow configures it with the settings)."""
    return make()
