"""The passphrase gate: a private bot lets a new person in once they send BOT_PASSPHRASE, as a
feature any flow includes: `Flow(..., features=[Passphrase()])`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portabot.conversation.engine import START, Context, State, Target
from portabot.features import Feature
from portabot.messages import UNSENT_KINDS, Kind, Message

if TYPE_CHECKING:
    from portabot.settings import Settings


class Locked(State):
    """A new person who has not yet sent the passphrase: nothing else of the flow applies."""

    name = "locked"
    flow_wide = False

    def __init__(self, gate: Passphrase) -> None:
        self.gate = gate

    def handle(self, ctx: Context, message: Message) -> Target:
        if message.kind in UNSENT_KINDS:  # not from the person: neither let in nor told
            return None
        phrase = self.gate.phrase
        if phrase is None or phrase in message.text.casefold():
            return START
        if message.kind is not Kind.LEFT:
            ctx.reply("Hello! This bot is private. Send the passphrase to start.")
        return None

    def leave(self, ctx: Context) -> None:
        commands = ctx.flow.help(ctx.flow.start)
        ctx.reply("You're in, welcome!" + (f"\n\nCommands:\n{commands}" if commands else ""))


class Passphrase(Feature):
    """New people start locked while a passphrase is set (`phrase`, else BOT_PASSPHRASE); it is
    found anywhere in a message, in any case. Without one, everyone is in."""

    name = "passphrase"

    def __init__(self, phrase: str | None = None) -> None:
        self.given = phrase
        self.phrase = phrase.casefold() if phrase else None
        self.locked = Locked(self)
        # Always a state of the flow, so that people still locked when the passphrase is removed
        # are let in by their next message rather than starting over.
        self.states = (self.locked,)
        self.entry = self.locked if self.phrase else None

    def configure(self, settings: Settings) -> None:
        if self.given is None:
            secret = settings.bot_passphrase
            self.phrase = secret.get_secret_value().casefold() if secret is not None else None
            self.entry = self.locked if self.phrase else None
