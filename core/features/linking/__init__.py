"""Linking: one person's accounts across platforms, joined by a one-time code (`/bind` on one,
`/in CODE` on the other), as a feature any flow includes: `Flow(..., features=[Linking()])`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from portabot.conversation.engine import START, Context, State, Target
from portabot.conversation.routing import command, on, press, result
from portabot.features import Effect, EffectHandler, Feature
from portabot.features.linking import storage
from portabot.features.linking.codes import CODE_LIFETIME, normalise_code
from portabot.features.linking.effects import (
    IssueLinkCode,
    LinkCodeIssued,
    Linked,
    LinkRefused,
    RedeemLinkCode,
    Refusal,
    RevokeLinkCodes,
)
from portabot.messages import Kind, Message
from portabot.replies import Button, code

if TYPE_CHECKING:
    import sqlalchemy as sa

    from portabot.storage.database import Conn, Database

MAX_WRONG_CODES = 5
"""Wrong `/in` codes a person may send within CODE_LIFETIME before `/in` is refused for a while."""

REFUSALS = {
    Refusal.UNKNOWN: "That code is not valid: it may be mistyped, used or cancelled.",
    Refusal.EXPIRED: "That code has expired. Send /bind again to get a new one.",
    Refusal.SAME_PERSON: "These accounts are linked already.",
    Refusal.SAME_PLATFORM: (
        "Send the code from another platform: both accounts are on the same one, "
        "or you have an account there linked already."
    ),
}

BIND = "linking:bind"
"""The payload of a button that does what /bind does (`Button("Link another account", BIND)`)."""
CANCEL = "linking:cancel"
"""The payload of a button that does what /cancel does while a code waits (and answers as
/cancel does otherwise: a client may send it any time)."""
ME = "linking:me"
"""The payload of a button that does what /me does."""

_RETURN = "before_bind"
"""The data key of the state a person was in when they sent /bind (where they go back to)."""


def platform_list(platforms: tuple[str, ...]) -> str:
    return ", ".join(sorted(platforms))


CODE_KEY = "code"
"""The data key of a pending link code: a credential (whoever sends it links their account to
this person), so `portabot show` hides it."""


def forget_code(data: dict[str, Any]) -> None:
    data.pop(CODE_KEY, None)
    data.pop("code_expires", None)


def back(ctx: Context) -> Target:
    """The state the person was in before /bind (the flow's start if it is gone)."""
    return ctx.flow.states.get(ctx.data.pop(_RETURN, None) or "") or START


class Binding(State):
    """Waiting for the code issued by /bind to be sent from another platform."""

    name = "binding"

    @on(Kind.TEXT)
    def waiting(self, ctx: Context, message: Message) -> Target:
        if ctx.now >= ctx.data.get("code_expires", 0):
            forget_code(ctx.data)
            ctx.reply("Your code has expired. Send /bind for a new one.")
            return back(ctx)
        ctx.reply(
            f"Waiting for /in {ctx.data.get(CODE_KEY, '<code>')} from another platform. "
            "Send /cancel to stop."
        )
        return None

    @command("cancel", help="stop linking")
    @press(CANCEL)
    def cancel(self, ctx: Context, message: Message) -> Target:
        ctx.request(RevokeLinkCodes())
        forget_code(ctx.data)
        # Pressed, it replaces the message with the button (the code, no longer any use).
        ctx.reply("Linking cancelled.", edit=True)
        return back(ctx)


class Linking(Feature):
    """`/bind`, `/in <code>` and `/me` in every state; a `binding` state while a code waits."""

    name = "linking"

    effects: Mapping[type[Effect[Any]], EffectHandler] = {
        IssueLinkCode: storage.issue,
        RedeemLinkCode: storage.redeem,
        RevokeLinkCodes: storage.revoke,
    }

    def __init__(self) -> None:
        self.states = (Binding(),)

    @property
    def tables(self) -> Sequence[sa.Table]:
        # SQLAlchemy only when migrate or maintain asks: the Lambda package serves without it.
        from portabot.features.linking.tables import link_codes

        return (link_codes,)

    @command("bind", help="get a code to link an account on another platform")
    @press(BIND)
    def bind(self, ctx: Context, message: Message) -> None:
        ctx.request(IssueLinkCode())

    @command("in", args="<code>", help="link this account with the one that sent /bind")
    def redeem(self, ctx: Context, message: Message) -> None:
        code = normalise_code(message.args)
        if not code:
            ctx.reply("Send the code with the command: /in <code>")
            return
        recent = [t for t in ctx.data.get("wrong_codes", []) if ctx.now - t < CODE_LIFETIME]
        ctx.data["wrong_codes"] = recent
        if len(recent) >= MAX_WRONG_CODES:
            wait = int(CODE_LIFETIME - (ctx.now - min(recent))) // 60 + 1
            ctx.reply(f"Too many wrong codes. Try again in {wait} min.")
            return
        ctx.request(RedeemLinkCode(code))

    @command("me", help="the platforms linked to you")
    @press(ME)
    def me(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"Linked platforms: {platform_list(ctx.platforms)}.")

    @press(CANCEL)
    def nothing_to_cancel(self, ctx: Context, message: Message) -> None:
        """A Cancel pressed when no code waits (an old button, or any client's payload): the
        flow's own route for it comes first (the built-in bot's /cancel answer)."""
        ctx.reply("Nothing to cancel: no account is being linked.")

    @result(LinkCodeIssued)
    def issued(self, ctx: Context, issued: LinkCodeIssued) -> type[Binding]:
        if not isinstance(ctx.state, Binding):
            ctx.data[_RETURN] = ctx.state.name
        ctx.data[CODE_KEY] = issued.code
        ctx.data["code_expires"] = issued.expires_at
        minutes = int(issued.expires_at - ctx.now + 59) // 60
        ctx.reply(
            f"Your code is valid for {minutes} min. Send this from another platform:\n",
            code(f"/in {issued.code}"),  # monospace: Telegram copies it with a tap
            buttons=[[Button("Cancel", CANCEL)]],
        )
        return Binding

    @result(Linked)
    def linked(self, ctx: Context, linked: Linked) -> Target:
        forget_code(ctx.data)
        ctx.reply(f"Linked! Your platforms: {platform_list(linked.platforms)}.")
        return back(ctx) if isinstance(ctx.state, Binding) else None

    @result(LinkRefused)
    def refused(self, ctx: Context, refused: LinkRefused) -> None:
        if refused.reason is Refusal.TOO_MANY:
            minutes = max(1, math.ceil(refused.retry_after / 60))
            ctx.reply(
                "Too many wrong codes have been sent to this bot lately, so it takes none for "
                f"now. Try again in {minutes} min."
            )
            return
        if refused.reason in (Refusal.UNKNOWN, Refusal.EXPIRED):
            ctx.data.setdefault("wrong_codes", []).append(ctx.now)
        ctx.reply(REFUSALS[refused.reason])

    def merge_data(self, kept: dict[str, Any], absorbed: dict[str, Any]) -> dict[str, Any]:
        """The merged person has no pending code and a clean count of wrong ones."""
        data = dict(kept)
        forget_code(data)
        data.pop("wrong_codes", None)
        return data

    async def merge(self, conn: Conn, kept: int, absorbed: int) -> None:
        await storage.drop_codes(conn, absorbed)

    async def purge(self, db: Database, now: float) -> str:
        return await storage.purge(db, now)
