"""The built-in flow: a passphrase to get in, then linking one person's accounts across
platforms."""

from __future__ import annotations

import math
from typing import Any

from portabot.conversation.engine import Context, Conversation, Flow, State
from portabot.features.linking import Linking
from portabot.features.linking.codes import CODE_LIFETIME, normalise_code
from portabot.features.linking.effects import (
    IssueLinkCode,
    LinkCodeIssued,
    Linked,
    RedeemLinkCode,
    Refusal,
    RevokeLinkCodes,
)
from portabot.features.linking.effects import (
    LinkingResult as EffectResult,
)
from portabot.messages import Kind, Message
from portabot.settings import Settings

MAX_WRONG_CODES = 5
"""Wrong `/in` codes a person may send within CODE_LIFETIME before `/in` is refused for a while."""

HELP = """Commands:
/bind – get a code to link an account on another platform
/in <code> – link this account with the one that sent /bind
/me – the platforms linked to you
/cancel – stop linking
/help – this list"""

REFUSALS = {
    Refusal.UNKNOWN: "That code is not valid: it may be mistyped, used or cancelled.",
    Refusal.EXPIRED: "That code has expired. Send /bind again to get a new one.",
    Refusal.SAME_PERSON: "These accounts are linked already.",
    Refusal.SAME_PLATFORM: (
        "Send the code from another platform: both accounts are on the same one, "
        "or you have an account there linked already."
    ),
}


def platform_list(platforms: tuple[str, ...]) -> str:
    return ", ".join(sorted(platforms))


def forget_code(data: dict[str, Any]) -> None:
    data.pop("code", None)
    data.pop("code_expires", None)


class Locked(State):
    """A new person who has not yet sent the passphrase."""

    name = "locked"

    def __init__(self, passphrase: str | None) -> None:
        self.passphrase = passphrase.casefold() if passphrase else None

    async def handle(self, ctx: Context, message: Message) -> str | None:
        if self.passphrase is None or self.passphrase in message.text.casefold():
            return "idle"
        if message.kind is Kind.LEFT:
            return None
        ctx.reply("Hello! This bot is private. Send the passphrase to start.")
        return None

    async def leave(self, ctx: Context) -> None:
        ctx.reply("You're in, welcome!\n\n" + HELP)


class Member(State):
    """A person who is in: the commands that work whatever they are doing."""

    async def handle(self, ctx: Context, message: Message) -> str | None:
        if message.kind is Kind.JOINED:
            ctx.reply("Hello! Send /help to see what I can do.")
            return None
        if message.kind is not Kind.COMMAND:
            return await self.text(ctx, message)
        command, args = message.command, message.args
        if command in ("start", "help"):
            ctx.reply(HELP)
        elif command == "me":
            ctx.reply(f"Linked platforms: {platform_list(ctx.platforms)}.")
        elif command == "bind":
            ctx.request(IssueLinkCode())
        elif command == "in":
            return self.redeem(ctx, args)
        elif command == "cancel":
            return await self.cancel(ctx)
        else:
            ctx.reply(f"Unknown command /{command}. Send /help for the list.")
        return None

    async def text(self, ctx: Context, message: Message) -> str | None:
        if message.kind is Kind.TEXT:
            ctx.reply("Send /help to see what I can do.")
        return None

    async def cancel(self, ctx: Context) -> str | None:
        ctx.reply("Nothing to cancel.")
        return None

    def redeem(self, ctx: Context, args: str) -> str | None:
        code = normalise_code(args)
        if not code:
            ctx.reply("Send the code with the command: /in <code>")
            return None
        recent = [t for t in ctx.data.get("wrong_codes", []) if ctx.now - t < CODE_LIFETIME]
        ctx.data["wrong_codes"] = recent
        if len(recent) >= MAX_WRONG_CODES:
            wait = int(CODE_LIFETIME - (ctx.now - min(recent))) // 60 + 1
            ctx.reply(f"Too many wrong codes. Try again in {wait} min.")
            return None
        ctx.request(RedeemLinkCode(code))
        return None

    async def resume(self, ctx: Context, result: EffectResult) -> str | None:
        if isinstance(result, LinkCodeIssued):
            ctx.data["code"] = result.code
            ctx.data["code_expires"] = result.expires_at
            minutes = int(result.expires_at - ctx.now + 59) // 60
            ctx.reply(
                f"Your code is valid for {minutes} min. Send this from another platform:\n"
                f"/in {result.code}"
            )
            return "binding"
        if isinstance(result, Linked):
            forget_code(ctx.data)
            ctx.reply(f"Linked! Your platforms: {platform_list(result.platforms)}.")
            return "idle"
        if result.reason is Refusal.TOO_MANY:
            minutes = max(1, math.ceil(result.retry_after / 60))
            ctx.reply(
                "Too many wrong codes have been sent to this bot lately, so it takes none for "
                f"now. Try again in {minutes} min."
            )
            return None
        if result.reason in (Refusal.UNKNOWN, Refusal.EXPIRED):
            ctx.data.setdefault("wrong_codes", []).append(ctx.now)
        ctx.reply(REFUSALS[result.reason])
        return None


class Idle(Member):
    name = "idle"


class Binding(Member):
    """Waiting for the code issued by /bind to be sent from another platform."""

    name = "binding"

    async def text(self, ctx: Context, message: Message) -> str | None:
        if ctx.now >= ctx.data.get("code_expires", 0):
            forget_code(ctx.data)
            ctx.reply("Your code has expired. Send /bind for a new one.")
            return "idle"
        if message.kind is Kind.TEXT:
            ctx.reply(
                f"Waiting for /in {ctx.data.get('code', '<code>')} from another platform. "
                "Send /cancel to stop."
            )
        return None

    async def cancel(self, ctx: Context) -> str | None:
        ctx.request(RevokeLinkCodes())
        forget_code(ctx.data)
        ctx.reply("Linking cancelled.")
        return "idle"


class LinkingFlow(Flow):
    def __init__(self, passphrase: str | None = None) -> None:
        states = [Locked(passphrase), Idle(), Binding()]
        super().__init__(states, initial="locked", features=[Linking()])
        self.passphrase = passphrase

    def initial_state(self) -> str:
        return "locked" if self.passphrase else "idle"

    def merge(self, kept: Conversation, absorbed: Conversation) -> Conversation:
        data: dict[str, Any] = {**absorbed.data, **kept.data}
        forget_code(data)
        data.pop("wrong_codes", None)
        return Conversation("idle", data)


def build(settings: Settings) -> LinkingFlow:
    passphrase = settings.bot_passphrase
    return LinkingFlow(passphrase.get_secret_value() if passphrase is not None else None)
