"""The `portabot` command: serve, migrate, set-webhook, check."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from core import __version__
from core.settings import ConfigurationError, Settings, load_settings, obscure_url

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from core.channels.telegram import TelegramChannel
    from core.channels.vk import VkChannel

T = TypeVar("T")
TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]{30,}$")
CHECK_LABELS = {True: "ok  ", None: "note", False: "FAIL"}


class CommandError(Exception):
    """Ends the command with this one-line message and exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except (ConfigurationError, CommandError) as exc:
        print(f"portabot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portabot",
        description="A chat-bot core that runs unchanged on Heroku, AWS Lambda and a VPS. "
        "Configuration comes from the environment and an optional .env file.",
    )
    parser.add_argument("--version", action="version", version=f"portabot {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the bot's web server (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8000),
        help="port to listen on ($PORT, else 8000)",
    )
    serve.set_defaults(command=cmd_serve)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(command=cmd_migrate)

    webhook = commands.add_parser(
        "set-webhook", help="point Telegram's webhook at PUBLIC_URL/webhooks/telegram"
    )
    webhook.add_argument(
        "--drop-pending-updates", action="store_true", help="let Telegram forget queued updates"
    )
    webhook.set_defaults(command=cmd_set_webhook)

    check = commands.add_parser("check", help="say what configuration is missing or wrong")
    check.set_defaults(command=cmd_check)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core.app import create_app

    settings = load_settings()
    if settings.is_sqlite:
        run_migrations(settings)
    app = create_app(settings)
    channels = ", ".join(sorted(app.state.bot.channels))
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"portabot {__version__}: open http://{host}:{args.port}/ to chat with the bot")
    print(f"  database {obscure_url(settings.database_url)}; channels: {channels}")
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    revision = run_migrations(settings)
    print(f"database schema at revision {revision}: {obscure_url(settings.database_url)}")
    return 0


def run_migrations(settings: Settings) -> str | None:
    from core.storage.migrate import upgrade

    try:
        return upgrade(settings.database_url)
    except Exception as exc:
        raise CommandError(
            f"cannot migrate {obscure_url(settings.database_url)}: {describe(exc)}"
        ) from None


def cmd_set_webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    from core.app import platform_channels

    channels = platform_channels(settings)
    if not channels:
        raise CommandError("set-webhook needs TELEGRAM_TOKEN, or VK_TOKEN and VK_GROUP_ID")
    if not settings.public_url or not settings.public_url.startswith("https://"):
        raise CommandError("set-webhook needs PUBLIC_URL, the bot's public https:// address")
    drop = args.drop_pending_updates
    for channel in channels:
        url = f"{settings.public_url}/webhooks/{channel.platform}"
        lines = call_api(partial(channel.set_webhook, url=url, drop_pending_updates=drop))
        print("\n".join(lines))
    return 0


def call_api(call: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Run one platform API call from the command line; its failure is one line."""
    from core.channels.base import ApiError
    from core.outbound import client_session

    async def run() -> T:
        async with client_session() as session:
            return await call(session)

    try:
        return asyncio.run(run())
    except ApiError as exc:
        raise CommandError(str(exc)) from None


def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    problems = 0

    def say(ok: bool | None, text: str) -> None:
        nonlocal problems
        problems += ok is False
        print(f"{CHECK_LABELS[ok]} {text}")

    say(*check_database(settings))
    say(*check_flow(settings))
    if settings.telegram_token is None:
        say(None, "Telegram is off: set TELEGRAM_TOKEN to turn it on")
    elif not TOKEN_SHAPE.match(settings.telegram_token.get_secret_value()):
        say(False, "TELEGRAM_TOKEN does not look like a bot token (digits:letters)")
    else:
        if settings.telegram_secret is None:
            say(None, "TELEGRAM_SECRET unset: the webhook secret is derived from the token")
        if not settings.telegram_bot_username:
            say(None, "TELEGRAM_BOT_USERNAME unset: the home page cannot link to the bot")
    if settings.vk_token is None:
        say(None, "VK is off: set VK_TOKEN and VK_GROUP_ID to turn it on")
    elif settings.vk_group_id is None:
        say(False, "VK_TOKEN is set but VK_GROUP_ID is not: VK stays off")
    else:
        if settings.vk_secret is None:
            say(None, "VK_SECRET unset: the Callback API secret is derived from the token")
        if settings.vk_confirmation is None:
            say(None, "VK_CONFIRMATION unset: the confirmation code is asked of VK when needed")
    from core.app import platform_channels

    channels = platform_channels(settings)
    for channel in channels:
        say(*check_token(channel))
    if channels and (not settings.public_url or not settings.public_url.startswith("https://")):
        say(False, "PUBLIC_URL must be the bot's https:// address for the platforms' webhooks")
    if settings.bot_passphrase is None:
        say(None, "BOT_PASSPHRASE unset: anyone may use the bot")
    if settings.session_secret is None:
        say(None, "SESSION_SECRET unset: the web chat uses one kept in the database")
    print("configuration has problems" if problems else "configuration is complete")
    return 1 if problems else 0


def check_flow(settings: Settings) -> tuple[bool, str]:
    from core.conversation.loader import load_flow

    try:
        load_flow(settings)
    except ConfigurationError as exc:
        return False, str(exc)
    return True, f"flow {settings.bot_flow}"


def check_token(channel: TelegramChannel | VkChannel) -> tuple[bool, str]:
    try:
        return True, call_api(channel.whoami)
    except CommandError as exc:
        return False, f"{channel.platform.upper()}_TOKEN was refused: {exc}"


def check_database(settings: Settings) -> tuple[bool, str]:
    import sqlalchemy as sa

    from core.storage.database import Database

    where = obscure_url(settings.database_url)

    async def revision() -> str | None:
        db = Database(settings.database_url, pool_size=1)
        try:
            database = await db.connected()
            try:
                found = await database.fetch_val(sa.text("SELECT version_num FROM alembic_version"))
                return str(found)
            except Exception:
                return None
        finally:
            await db.close()

    try:
        found = asyncio.run(revision())
    except Exception as exc:
        return False, f"database {where} unreachable: {describe(exc)}"
    if found is None:
        return False, f"database {where} has no schema: run `portabot migrate`"
    return True, f"database {where} reachable, schema at revision {found}"


def describe(exc: BaseException) -> str:
    """An exception as one short line (drivers' messages name hosts, never passwords)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
