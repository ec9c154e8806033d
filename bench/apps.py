"""The two reference servers, run under gunicorn as portabot is: `ceiling` parses the update and
answers "ok"; `inline` also returns a reply in the webhook body, as portabot does, with no
database."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def acknowledge(request: Request) -> Response:
    await request.json()
    return PlainTextResponse("ok")


async def reply_inline(request: Request) -> Response:
    update = await request.json()
    message = update["message"]
    reply = {"method": "sendMessage", "chat_id": message["chat"]["id"], "text": message["text"]}
    return JSONResponse(reply)


ceiling = Starlette(routes=[Route("/webhooks/telegram", acknowledge, methods=["POST"])])
inline = Starlette(routes=[Route("/webhooks/telegram", reply_inline, methods=["POST"])])
