"""Work that is due without a message: timers, outside calls and replies waiting in the outbox.
`portabot tick`, the Lambda schedule and a running server's own loop all run `run_due`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portabot.bot import Bot


async def run_due(bot: Bot) -> list[str]:
    """Run what is due now, once whoever else runs it at the same moment; one line per kind of
    work done."""
    sent, failed = await bot.outbound.deliver_all_due()
    return [f"outbox: sent {sent}, failed {failed}"]
