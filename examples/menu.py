"""A menu: pick a size from buttons, then confirm or cancel — the same flow on Telegram, VK and
the web chat. Plug it in with BOT_FLOW=examples.menu:flow.

A press comes back as a message of its own kind with the button's payload. Payloads are
untrusted (a client can send any string), so each press route matches the payloads it offered
and checks them against the state: a press of an old message's button, in a state that no
longer offers it, changes nothing.
"""

from __future__ import annotations

from portabot import Button, Context, Flow, Message, State, bold, command, press

SIZES = {"s": "Small", "m": "Medium", "l": "Large"}


class Choosing(State):
    def enter(self, ctx: Context) -> None:
        ctx.reply(
            "Pick a size:",
            buttons=[[Button(label, f"size:{key}") for key, label in SIZES.items()]],
        )

    @press(r"size:(s|m|l)")
    def picked(self, ctx: Context, message: Message) -> type[State]:
        ctx.data["size"] = ctx.matched[1]
        return Confirming


class Confirming(State):
    def enter(self, ctx: Context) -> None:
        size = SIZES[ctx.data["size"]]
        ctx.reply(
            "One ",
            bold(size),
            " coffee?",
            buttons=[[Button("Order", "confirm"), Button("Cancel", "cancel")]],
            edit=True,
        )

    @press("confirm")
    def confirm(self, ctx: Context, message: Message) -> type[State]:
        ctx.notice("Ordered")
        ctx.reply("Ordered: one ", bold(SIZES[ctx.data.pop("size")]), " coffee.", edit=True)
        return Done

    @press("cancel")
    def cancel(self, ctx: Context, message: Message) -> type[State]:
        ctx.data.pop("size", None)
        ctx.reply("Cancelled.", edit=True)
        return Done


class Done(State):
    @command("menu", "start")
    def again(self, ctx: Context, message: Message) -> type[State]:
        return Choosing

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply("Send /menu to order.")


flow = Flow([Done, Choosing, Confirming], start=Done, name="menu")
