"""`POST /webhooks/{platform}`: verify and parse the delivery, run it through the pipeline
(core/pipeline.py), acknowledge with the replies the response can carry. `POST
/webhooks/web/inbox`: the web page collecting what waits for its visitor."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from portabot.channels.base import Answered, Channel, Rejected
from portabot.pipeline import is_database_error, keep_for_later, run_update

if TYPE_CHECKING:
    from portabot.bot import Bot
    from portabot.channels.web import WebChannel

log = logging.getLogger("portabot.webhooks")

RETRY = {"error": "temporarily unavailable, retry"}


async def handle(bot: Bot, channel: Channel, request: Request) -> Response:
    try:
        update = await channel.receive(request)
    except Rejected as rejected:
        kind = (channel.platform, rejected.status, rejected.reason)
        bot.rejections.warning(
            kind, "%s webhook: %d %s", channel.platform, rejected.status, rejected.reason
        )
        return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
    except Answered as answered:
        return answered.response
    except ClientDisconnect:
        # Gone (or too slow: the app's BodyDeadline answers 408 instead): nobody reads this.
        log.debug("%s webhook: the client left before its body was read", channel.platform)
        return JSONResponse({"error": "the client disconnected"}, status_code=400)
    except Exception as exc:  # e.g. the database that keeps the web chat's cookie key is down
        log.error(
            "%s delivery not read: %s",
            channel.platform,
            type(exc).__name__,
            exc_info=not is_database_error(exc),
        )
        return JSONResponse(RETRY, status_code=503)
    outcome = await run_update(bot, channel, update)
    if outcome is None:  # nothing committed: a 5xx makes the platform deliver it again
        return JSONResponse(RETRY, status_code=503)
    if outcome.inline and channel.inline_replies and await gone(request):
        # The platform gave up waiting: the reply that would have ridden in the response goes
        # through the API instead, and the re-delivery will not carry it.
        await keep_for_later(bot, update, outcome.inline)
    return channel.respond(update, outcome.inline)


async def gone(request: Request) -> bool:
    """Whether the client has hung up, as Starlette's `Request.is_disconnected` tells (a message
    waiting now, or none), without anyio's cancel scope, which writes the task's repr into its
    reason: that was 8% of a worker's CPU under load."""
    try:
        async with asyncio.timeout(0):
            message = await request.receive()
    except TimeoutError:
        return False
    return bool(message.get("type") == "http.disconnect")


async def handle_inbox(bot: Bot, channel: WebChannel, request: Request) -> Response:
    """The web page's collection of its visitor's inbox, its bad input refused as a delivery's."""
    try:
        return await channel.collect(request)
    except Rejected as rejected:
        kind = ("web inbox", rejected.status, rejected.reason)
        bot.rejections.warning(kind, "web inbox: %d %s", rejected.status, rejected.reason)
        return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
    except ClientDisconnect:
        log.debug("web inbox: the client left before its body was read")
        return JSONResponse({"error": "the client disconnected"}, status_code=400)
    except Exception as exc:
        log.error(
            "web inbox not collected: %s", type(exc).__name__, exc_info=not is_database_error(exc)
        )
        return JSONResponse(RETRY, status_code=503)
