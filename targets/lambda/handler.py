"""AWS Lambda's entry point, `handler.handler`: the portabot app behind Mangum, `portabot tick`
when the template's per-minute rule (`Tick`) invokes the function and `portabot maintain` when
its hourly one (`Maintain`) does."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from mangum import Mangum

from portabot.app import create_app
from portabot.settings import load_settings

log = logging.getLogger("portabot.lambda")

# A container serves one request at a time, so one connection is all it can use; the pool's
# size is also what ReservedConcurrency multiplies into the database's connection count.
os.environ.setdefault("DATABASE_POOL_SIZE", "1")

app = create_app(load_settings())

# lifespan="off": Mangum would run startup and shutdown around every invocation
# (Kludex/mangum#342). The database connects on the first request and stays for warm ones, on
# the one event loop Mangum keeps for the container.
serve = Mangum(app, lifespan="off")


TICK = {"portabot": "tick"}
"""The `Tick` rule's constant Input, which EventBridge sends as the whole event."""


def handler(event: Any, context: Any) -> dict[str, Any]:
    if event == TICK:
        return tick()
    if is_scheduled(event):
        return maintain()
    if not is_request(event, context):
        return ignore(event)
    return serve(event, context)


def is_scheduled(event: Any) -> bool:
    """What an EventBridge schedule rule without an Input sends (the template's `Maintain`)."""
    return (
        isinstance(event, dict)
        and event.get("source") == "aws.events"
        and event.get("detail-type") == "Scheduled Event"
    )


def is_request(event: Any, context: Any) -> bool:
    """An HTTP request Mangum can hand to the app (a function URL, API Gateway, an ALB)."""
    if not isinstance(event, dict):
        return False
    try:
        serve.infer(event, context)
    except (RuntimeError, LookupError, TypeError, AttributeError):  # Mangum knows no such event
        return False
    return True


def ignore(event: Any) -> dict[str, Any]:
    """Another service's event (a custom EventBridge event, S3, SQS, a test invoke): logged and
    answered, so that nothing retries it."""
    log.warning("Lambda event ignored (neither an HTTP request nor a schedule): %s", about(event))
    return {"ignored": "neither an HTTP request nor the tick or maintenance schedule"}


def about(event: Any) -> str:
    """Where an event comes from and its keys, never its values: they may hold anything."""
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}"
    records = event.get("Records")
    record = records[0] if isinstance(records, list) and records else None
    source = event.get("source") or (
        record.get("eventSource") if isinstance(record, dict) else None
    )
    keys = ", ".join(sorted(str(key)[:40] for key in event)[:20]) or "none"
    return f"source {_short(source)}, detail-type {_short(event.get('detail-type'))}, keys {keys}"


def _short(value: Any) -> str:
    return "none" if value is None else repr(value)[:60]


def maintain() -> dict[str, Any]:
    """One `portabot maintain` run with the container's connection, on Mangum's event loop."""
    from portabot.maintenance import maintain as run  # not needed by requests, so not at cold start

    bot = app.state.bot
    loop = asyncio.get_event_loop()
    settings = bot.settings
    lines = loop.run_until_complete(
        run(
            bot.outbound,
            settings.keep_updates_days,
            settings.web_chat_keep_days,
            features=bot.flow.features,
        )
    )
    print("\n".join(lines))  # to CloudWatch
    return {"maintained": lines}


def tick() -> dict[str, Any]:
    """One `portabot tick` with the container's bot, connection and event loop (Mangum's)."""
    from portabot.jobs import run_due  # not needed by requests, so not at cold start

    bot = app.state.bot
    loop = asyncio.get_event_loop()
    loop.run_until_complete(bot.schema.ensure())  # says, once, when the database is behind
    lines = loop.run_until_complete(run_due(bot))
    print("\n".join(lines))  # to CloudWatch
    return {"ran": lines}
