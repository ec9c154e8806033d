"""Reminders: `/remind 10 tea` answers now and again in ten minutes, in the same chat; `/remind`
again with the same text moves that reminder, `/forget tea` drops it, `/snooze` after a reminder
sets it again five minutes on. Each reminder is a timer (`ctx.wake`) keyed by its text: it fires
once, whichever worker, dyno or Lambda container runs what is due, and survives restarts.

Plug it in with BOT_FLOW=examples.reminders:flow; on a server timers fire within TICK_SECONDS of
their time, elsewhere within a minute of `portabot tick` (every target schedules it).
"""

from __future__ import annotations

import re

from portabot import Context, Flow, Message, State, command, timer

MAX_MINUTES = 7 * 24 * 60
"""A week: further ahead, a calendar does better."""
SNOOZE_MINUTES = 5


class Reminding(State):
    @command("remind", help="remind you in N minutes", args="<minutes> <text>")
    def remind(self, ctx: Context, message: Message) -> None:
        found = re.fullmatch(r"(\d{1,5})\s+(.{1,200})", message.args.strip(), re.S)
        if found is None or not 1 <= int(found[1]) <= MAX_MINUTES:
            ctx.reply(f"Say /remind <minutes, 1 to {MAX_MINUTES}> <text>, e.g. /remind 10 tea")
            return
        minutes, what = int(found[1]), found[2].strip()
        ctx.wake("remind", after=minutes * 60, data={"what": what}, key=what[:100])
        ctx.reply(f"I'll remind you of “{what}” in {minutes} min.")

    @command("forget", help="drop a reminder", args="<text>")
    def forget(self, ctx: Context, message: Message) -> None:
        what = message.args.strip()
        if not what:
            ctx.reply("Say /forget <text> with the reminder's text.")
            return
        ctx.cancel(what[:100])
        ctx.reply(f"No more reminders of “{what}”.")

    @command("snooze", help="the last reminder again in five minutes")
    def snooze(self, ctx: Context, message: Message) -> None:
        what = ctx.data.get("last")
        if not isinstance(what, str):
            ctx.reply("Nothing to snooze yet.")
            return
        ctx.wake("remind", after=SNOOZE_MINUTES * 60, data={"what": what}, key=what[:100])
        ctx.reply(f"Again in {SNOOZE_MINUTES} min.")

    @timer("remind")
    def due(self, ctx: Context, message: Message) -> None:
        what = str(message.data.get("what", ""))
        ctx.data["last"] = what
        ctx.reply(f"⏰ {what}")


flow = Flow([Reminding], name="reminders")
