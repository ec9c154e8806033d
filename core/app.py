"""The ASGI app: `create_app(settings)`, and `app` built from the environment on first use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portabot import __version__
from portabot.bot import Bot
from portabot.channels.web import WebChannel
from portabot.conversation.engine import Flow
from portabot.logs import configure_logging
from portabot.settings import Settings, load_settings, refuse_lost_storage
from portabot.storage.schema import SchemaBehind
from portabot.web.costs import routes as cost_routes
from portabot.web.page import render_home
from portabot.web.policy import html_page
from portabot.webhooks import Waiting, at_once, handle, handle_inbox

log = logging.getLogger("portabot")

MAX_HEADERS = 16 * 1024
"""Bytes of request headers (names and values) a request may carry."""
MAX_CONNECTIONS = 1000
"""Connections one server process holds at once (uvicorn's limit_concurrency): past them, a new
request gets uvicorn's 503 at once instead of the process running out of file descriptors, which
would fail its database and API connections too. Under the descriptors each target allows (the
VPS unit's LimitNOFILE=4096; Heroku's router holds its own)."""


async def home(request: Request) -> Response:
    state = request.app.state
    if state.home is None:
        state.home = render_home(state.bot.settings, state.bot.flow)
    # The chat shows the images of replies: https URLs of any host (Reply.of takes no other).
    return html_page(state.home, images="'self' https:")


async def healthz(request: Request) -> Response:
    bot: Bot = request.app.state.bot
    body: dict[str, Any] = {
        "version": __version__,
        "database": bot.db.dialect,
        "channels": sorted(bot.channels),
    }
    try:
        await bot.db.ping()
        await bot.schema.ensure()
    except SchemaBehind as exc:
        return JSONResponse({"status": "unavailable", "error": str(exc), **body}, status_code=503)
    except Exception as exc:
        log.warning("health check: database unavailable (%s)", type(exc).__name__)
        return JSONResponse({"status": "unavailable", **body}, status_code=503)
    return JSONResponse({"status": "ok", **body})


async def webhook(request: Request) -> Response:
    bot: Bot = request.app.state.bot
    channel = bot.channels.get(request.path_params["platform"])
    if channel is None:
        return JSONResponse({"error": "no such channel, or it is not configured"}, status_code=404)
    try:
        await bot.schema.ensure()
    except SchemaBehind as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return await handle(bot, channel, request)


async def web_inbox(request: Request) -> Response:
    """`POST /webhooks/web/inbox`: what waits for the web visitor; 404 with WEB_CHAT=off."""
    bot: Bot = request.app.state.bot
    channel = bot.channels.get("web")
    if not isinstance(channel, WebChannel):
        return JSONResponse({"error": "the web chat is off on this bot"}, status_code=404)
    try:
        await bot.schema.ensure()
    except SchemaBehind as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return await handle_inbox(bot, channel, request)


async def api_events(request: Request) -> Response:
    """`POST /api/events`: an event from outside for a person's flow (core/events.py); 404 while
    API_TOKEN is unset."""
    bot: Bot = request.app.state.bot
    token = bot.settings.api_token
    if token is None:
        return JSONResponse({"error": "no such endpoint: API_TOKEN is not set"}, status_code=404)
    from portabot.events import handle_event  # not on the cold path of a bot without the API

    return await handle_event(bot, token.get_secret_value(), request)


def create_app(settings: Settings | None = None, *, flow: Flow | None = None) -> Starlette:
    settings = settings if settings is not None else load_settings()
    refuse_lost_storage(settings)
    configure_logging(settings.log_level)
    bot = Bot(settings, flow)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # uvicorn and gunicorn run this in every worker; Mangum on Lambda does not (nothing
        # would run between invocations there: its Tick rule invokes the function instead).
        from portabot.runner import running

        try:
            async with running(bot):  # what is due, every TICK_SECONDS
                yield  # the database connects on the first request that needs it
        finally:
            await bot.close()

    app = Starlette(
        routes=[
            # The webhooks first: Starlette tries each route in turn, and they take the load.
            Route("/webhooks/web/inbox", web_inbox, methods=["POST"]),
            Route("/webhooks/{platform}", webhook, methods=["POST"]),
            Route("/", home),
            Route("/healthz", healthz),
            Route("/api/events", api_events, methods=["POST"]),
            *(cost_routes if settings.costs_page else []),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(HeaderLimit),
            Middleware(BodyDeadline, seconds=settings.body_timeout_seconds),
        ],
        lifespan=lifespan,
    )
    app.state.bot = bot
    app.state.home = None  # rendered on first use
    return app


class HeaderLimit:
    """431 for a request whose headers exceed MAX_HEADERS: uvicorn's httptools parser sets no
    limit of its own (h11's was 16 KiB), and no platform sends more than a few hundred bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and sum(len(k) + len(v) for k, v in scope["headers"]) > (
            MAX_HEADERS
        ):
            too_big = JSONResponse({"error": "request headers too large"}, status_code=431)
            await too_big(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyDeadline:
    """408 (and the connection closed) for a request whose body has not all arrived `seconds`
    after its headers: a client sending a byte at a time would otherwise hold a connection, a
    file descriptor and a task for as long as it likes. The app sees a disconnect. On Lambda the
    body comes complete with the event, so the deadline never waits."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        complete = late = started = False

        async def receive_in_time() -> Message:
            nonlocal complete, late
            if complete:
                return await receive()  # after the body: the disconnect a response may watch for
            if not late:
                ready = at_once(receive())  # mostly there already: no timer to set
                if isinstance(ready, Waiting):
                    try:
                        async with asyncio.timeout_at(deadline):
                            message = await receive()
                    except TimeoutError:
                        late = True
                        return {"type": "http.disconnect"}
                else:
                    message = ready
                complete = message["type"] != "http.request" or not message.get("more_body")
                return message
            return {"type": "http.disconnect"}

        async def send_unless_late(message: Message) -> None:
            nonlocal started
            if late and not started:
                return  # the app answers a client it thinks has gone: the 408 goes instead
            started = True
            await send(message)

        await self.app(scope, receive_in_time, send_unless_late)
        if late and not started:
            too_slow = JSONResponse(
                {"error": f"request body not received within {self.seconds:g} s"},
                status_code=408,
                headers={"Connection": "close"},
            )
            await too_slow(scope, receive, send)


class SecurityHeaders:
    """The headers every response carries: no sniffing, no framing, no referrer; and a
    Content-Security-Policy that allows nothing, unless the response brought its own (a page
    names the hashes of its inline script and style: core/web/policy.py)."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),  # frame-ancestors, for browsers that predate it
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", NOTHING_ALLOWED))
                headers.extend(self.HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


NOTHING_ALLOWED = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""The policy of a response that is not a page (JSON, text): it loads and runs nothing."""


_app: Starlette | None = None


def __getattr__(name: str) -> Any:
    # `portabot.app:app` for uvicorn, gunicorn and Mangum, built from the environment when asked.
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = create_app()
    return _app
