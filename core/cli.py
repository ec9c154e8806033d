"""The `portabot` command: serve, migrate, set-webhook, check."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from core import __version__
from core.checks import DEFAULT_INSTANCES, DEFAULT_MAX_CONNECTIONS, TARGETS, describe
from core.packaging import LAMBDA_PYTHON, MACHINES
from core.settings import ConfigurationError, Settings, load_settings, obscure_url

if TYPE_CHECKING:
    from aiohttp import ClientSession


T = TypeVar("T")
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

    package = commands.add_parser("package", help="build a deployment package for a host")
    hosts = package.add_subparsers(title="hosts", required=True, metavar="HOST")
    for_lambda = hosts.add_parser(
        "lambda", help="the zip for AWS Lambda that targets/lambda/template.yaml deploys"
    )
    for_lambda.add_argument(
        "--arch", choices=sorted(MACHINES), default="arm64", help="Lambda's architecture (arm64)"
    )
    for_lambda.add_argument(
        "--python-version",
        default=LAMBDA_PYTHON,
        metavar="X.Y",
        help=f"the function's Python ({LAMBDA_PYTHON}, the template's Runtime)",
    )
    for_lambda.add_argument(
        "--output",
        type=Path,
        default=Path("dist/lambda.zip"),
        metavar="PATH",
        help="where to write the zip (dist/lambda.zip, the template's CodeUri)",
    )
    for_lambda.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a file or directory to add at the top of the zip, e.g. your BOT_FLOW module",
    )
    for_lambda.set_defaults(command=cmd_package_lambda)

    check = commands.add_parser("check", help="say what configuration is missing or wrong")
    check.add_argument(
        "--target",
        choices=TARGETS,
        help="also check what this host needs (database kind, connections against its limit)",
    )
    check.add_argument(
        "--instances",
        type=int,
        metavar="N",
        help="Heroku web dynos, Lambda's reserved concurrency or VPS machines (default: "
        + ", ".join(f"{t} {n}" for t, n in DEFAULT_INSTANCES.items())
        + ")",
    )
    check.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="the database's connection limit (default: "
        + ", ".join(f"{t} {n}" for t, n in DEFAULT_MAX_CONNECTIONS.items())
        + ")",
    )
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
    from core.outbound import call_now

    try:
        return call_now(call)
    except ApiError as exc:
        raise CommandError(str(exc)) from None


def cmd_package_lambda(args: argparse.Namespace) -> int:
    from core.packaging import PackagingError, build_lambda_zip

    try:
        package = build_lambda_zip(
            args.output, arch=args.arch, python_version=args.python_version, include=args.include
        )
    except PackagingError as exc:
        raise CommandError(str(exc)) from None
    print(package.describe())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from core.checks import configuration

    problems = 0
    for ok, text in configuration(
        load_settings(), args.target, instances=args.instances, max_connections=args.max_connections
    ):
        problems += ok is False
        print(f"{CHECK_LABELS[ok]} {text}")
    print("configuration has problems" if problems else "configuration is complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
