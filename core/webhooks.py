"""`POST /webhooks/{platform}`: verify and parse the delivery, run it through the pipeline
(core/pipeline.py), acknowledge with the replies the response can carry. `POST
/webhooks/web/inbox`: the web page collecting what waits for its visitor."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from portabot.channels.base import Answered, Channel, Rejected
from portabot.pipeline import is_database_error, keep_for_later, run_update

if TYPE_CHECKING:
    from portabot.bot import Bot
    from portabot.channels.web import WebChannel

log = logging.getLogger("portabot.webhooks")

RETRY = {"error": "temporarily unavailable, retry"}

T = TypeVar("T")


class Waiting:
    def __repr__(self) -> str:
        return "WAITING"


WAITING: Final = Waiting()
"""What `at_once` returns for a coroutine that would have had to wait."""


def at_once(awaitable: Awaitable[T]) -> T | Waiting:
    """What `awaitable` gives if it gives it without waiting; else it is closed where it would
    have waited, as if never awaited, and WAITING. For an ASGI `receive` whose message is
    already there (a webhook's body arrives with its headers), this spares a deadline's timer
    or a turn of the loop. Only for a coroutine that takes nothing before it waits, as the
    receive of uvicorn (both parsers), Mangum, httpx and Starlette's test client do: closed
    while waiting, they give nothing up."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as returned:
        return returned.value  # type: ignore[no-any-return]
    steps.close()
    return WAITING


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
    if outcome.inline and channel.inline_replies and gone(request):
        # The platform gave up waiting: the reply that would have ridden in the response goes
        # through the API instead, and the re-delivery will not carry it.
        await keep_for_later(bot, update, outcome.inline)
    return channel.respond(update, outcome.inline)


def gone(request: Request) -> bool:
    """Whether the client has hung up, as Starlette's `Request.is_disconnected` tells (a message
    waiting now, or none), without its cancel scope and the turn of the loop a zero timeout
    takes (anyio's wrote the task's repr into its reason: 8% of a worker's CPU under load)."""
    message = at_once(request.receive())
    return isinstance(message, dict) and message.get("type") == "http.disconnect"


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
