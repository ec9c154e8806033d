"""The ASGI app: `create_app(settings)`, and `app` built from the environment on first use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portabot import __version__
from portabot.channels.base import Channel
from portabot.channels.telegram import TelegramChannel
from portabot.channels.vk import VkChannel
from portabot.channels.web import WebChannel
from portabot.conversation.engine import Flow
from portabot.conversation.loader import load_flow
from portabot.logs import ThrottledLog
from portabot.outbound import Outbound
from portabot.settings import Settings, detect_host, load_settings, refuse_lost_storage
from portabot.storage.database import Database, Query
from portabot.storage.schema import Schema, SchemaBehind
from portabot.web.costs import routes as cost_routes
from portabot.web.page import render_home
from portabot.web.policy import html_page
from portabot.webhooks import handle

log = logging.getLogger("portabot")

MAX_HEADERS = 16 * 1024
"""Bytes of request headers (names and values) a request may carry."""
MAX_CONNECTIONS = 1000
"""Connections one server process holds at once (uvicorn's limit_concurrency): past them, a new
request gets uvicorn's 503 at once instead of the process running out of file descriptors, which
would fail its database and API connections too. Under the descriptors each target allows (the
VPS unit's LimitNOFILE=4096; Heroku's router holds its own)."""

_KEEP_SECRET = Query(
    "INSERT INTO secrets (name, value) VALUES (:name, :value) ON CONFLICT DO NOTHING"
)
_SECRET = Query("SELECT value FROM secrets WHERE name = :name")


def platform_channels(settings: Settings) -> list[TelegramChannel | VkChannel]:
    """The channels of the platforms that are configured (each needs its token)."""
    channels: list[TelegramChannel | VkChannel] = []
    if settings.telegram_enabled:
        channels.append(TelegramChannel(settings))
    if settings.vk_enabled:
        channels.append(VkChannel(settings))
    return channels


class Bot:
    """Everything a request needs: settings, database, flow, channels, outbound calls."""

    def __init__(self, settings: Settings, flow: Flow | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        self.flow = flow if flow is not None else load_flow(settings)
        self.schema = Schema(self.db, self.flow.features)  # checked on first use
        secure = bool(settings.public_url and settings.public_url.startswith("https://"))
        self.channels: dict[str, Channel] = {}
        if settings.web_chat:  # WEB_CHAT=off: /webhooks/web answers 404
            self.channels["web"] = WebChannel(
                self.session_secret, self.db, settings, secure=secure, host=detect_host()
            )
        for channel in platform_channels(settings):
            self.channels[channel.platform] = channel
        self.outbound = Outbound(self.db, self.channels, settings.outbox_retry_seconds)
        self.rejections = ThrottledLog(logging.getLogger("portabot.webhooks"))
        self.clock: Callable[[], float] = time.time
        """The time the pipeline stamps an update with (and the flow sees as `ctx.now`);
        portabot.testing moves it forward."""
        self._home: str | None = None

    async def session_secret(self) -> str:
        """SESSION_SECRET, or one made once and kept in the database (shared by every worker)."""
        if self.settings.session_secret is not None:
            return self.settings.session_secret.get_secret_value()
        async with self.db.transaction() as conn:
            await conn.execute(_KEEP_SECRET, name="session", value=secrets.token_urlsafe(32))
            value: str = await conn.fetch_val(_SECRET, name="session")
        return value

    def home(self) -> str:
        if self._home is None:
            self._home = render_home(self.settings, self.flow)
        return self._home

    async def close(self) -> None:
        await self.outbound.close()
        await self.db.close()


async def home(request: Request) -> Response:
    return html_page(request.app.state.bot.home())


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


def create_app(settings: Settings | None = None, *, flow: Flow | None = None) -> Starlette:
    settings = settings if settings is not None else load_settings()
    refuse_lost_storage(settings)
    configure_logging(settings.log_level)
    bot = Bot(settings, flow)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield  # the database connects on the first request that needs it
        await bot.close()

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            Route("/webhooks/{platform}", webhook, methods=["POST"]),
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
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    late = True
                else:
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


def configure_logging(level: str) -> None:
    logger = logging.getLogger("portabot")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


_app: Starlette | None = None


def __getattr__(name: str) -> Any:
    # `portabot.app:app` for uvicorn, gunicorn and Mangum, built from the environment when asked.
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = create_app()
    return _app
