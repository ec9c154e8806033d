"""AWS Lambda's entry point, `handler.handler`: the portabot app behind Mangum, and
`portabot maintain` when the template's schedule (an EventBridge rule) invokes the function."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from mangum import Mangum

from core.app import create_app
from core.settings import load_settings

# A container serves one request at a time, so one connection is all it can use; the pool's
# size is also what ReservedConcurrency multiplies into the database's connection count.
os.environ.setdefault("DATABASE_POOL_SIZE", "1")

app = create_app(load_settings())

# lifespan="off": Mangum would run startup and shutdown around every invocation
# (Kludex/mangum#342). The database connects on the first request and stays for warm ones, on
# the one event loop Mangum keeps for the container.
serve = Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_scheduled(event):
        return maintain()
    return serve(event, context)


def is_scheduled(event: dict[str, Any]) -> bool:
    """What an EventBridge schedule rule sends (the template's `Maintain` event, no Input)."""
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def maintain() -> dict[str, Any]:
    """One `portabot maintain` run with the container's connection, on Mangum's event loop."""
    from core.maintenance import maintain as run  # not needed by requests, so not at cold start

    bot = app.state.bot
    loop = asyncio.get_event_loop()
    settings = bot.settings
    lines = loop.run_until_complete(
        run(bot.outbound, settings.keep_updates_days, settings.web_chat_keep_days)
    )
    print("\n".join(lines))  # to CloudWatch
    return {"maintained": lines}
