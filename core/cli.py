"""The `portabot` command: serve, migrate, set-webhook, check."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
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

    deliver = commands.add_parser(
        "deliver", help="send the replies left in the outbox whose time has come"
    )
    deliver.set_defaults(command=cmd_deliver)

    costs = commands.add_parser(
        "costs",
        help="compare what hosting costs on Heroku, AWS Lambda and a VPS for your traffic",
        description="Monthly cost of each hosting option for one workload, in USD, with every "
        "price's source and date. Flags override what --from-bench gives.",
    )
    volume = costs.add_mutually_exclusive_group()
    volume.add_argument(
        "--updates",
        type=volumes,
        metavar="N[,N...]",
        help="updates a month, e.g. 250000 or 10k,1M,100M to compare volumes (100k)",
    )
    volume.add_argument("--per-day", type=volumes, metavar="N[,N...]", help="updates a day")
    costs.add_argument("--ms", type=positive, metavar="X", help="average handling time (30 ms)")
    costs.add_argument("--memory", type=positive, metavar="MB", help="Lambda memory (256 MB)")
    costs.add_argument(
        "--peak", type=positive, metavar="R", help="updates a second at the busiest (10× average)"
    )
    costs.add_argument("--db-gb", type=positive, metavar="GB", help="database size (0.1 GB)")
    costs.add_argument(
        "--free-tier",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count AWS's always-free allowance (on)",
    )
    costs.add_argument(
        "--throughput", type=positive, metavar="R", help="updates a second per vCPU (200)"
    )
    costs.add_argument(
        "--init-ms", type=positive, metavar="X", help="Lambda cold start INIT time (500 ms)"
    )
    costs.add_argument(
        "--lambda-db-usd",
        type=positive,
        metavar="USD",
        help="what Lambda's PostgreSQL costs a month (default: Neon's free or Launch plan)",
    )
    costs.add_argument(
        "--from-bench", type=Path, metavar="FILE", help="the benchmark's result file (JSON)"
    )
    costs.add_argument(
        "--prices", type=Path, metavar="FILE", help="a TOML file of prices to add or override"
    )
    costs.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table")
    costs.add_argument("--chart", type=Path, metavar="FILE", help="also draw FILE.svg or FILE.png")
    costs.add_argument(
        "--historical", action="store_true", help="also show Heroku's free tier (ended 2022-11)"
    )
    costs.set_defaults(command=cmd_costs)

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


def cmd_deliver(args: argparse.Namespace) -> int:
    from core.app import platform_channels
    from core.outbound import Outbound
    from core.storage.database import Database
    from core.storage.outbox import claim_due, count_due

    settings = load_settings()

    async def run() -> tuple[int, int, int]:
        db = Database(settings.database_url, pool_size=1)
        outbound = Outbound(db, {c.platform: c for c in platform_channels(settings)})
        sent = failed = 0
        try:
            while batch := await claim_due(db, time.time(), 100):
                done, missed = await outbound.deliver(batch)
                sent, failed = sent + done, failed + missed
            return sent, failed, await count_due(db, time.time() + 10**9)
        finally:
            await outbound.close()
            await db.close()

    try:
        sent, failed, waiting = asyncio.run(run())
    except Exception as exc:
        where = obscure_url(settings.database_url)
        raise CommandError(f"cannot deliver from {where}: {describe(exc)}") from None
    print(f"sent {sent}, failed {failed}; {waiting} waiting for a later try")
    return 0


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1e15:
        raise argparse.ArgumentTypeError(f"must be 0 or more (and sane): {text}")
    return value


def volumes(text: str) -> list[float]:
    """`250000`, `2.5M` or `10k,1M,100M`."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}
    found = []
    for part in text.split(","):
        part = part.strip().lower()
        factor = scale.get(part[-1:], 1.0)
        found.append(positive(part[:-1] if factor != 1.0 else part) * factor)
    return found


def cmd_costs(args: argparse.Namespace) -> int:
    from core.costs.bench import BenchError, workload
    from core.costs.prices import PriceBook, PriceError
    from core.costs.report import render, render_volumes

    try:
        book = PriceBook.load(args.prices)
        w = workload(args)
    except (PriceError, BenchError) as exc:
        raise CommandError(str(exc)) from None
    counts = [n * 30.4167 for n in args.per_day] if args.per_day is not None else args.updates or []
    if len(counts) > 1:
        print(render_volumes(w, counts, book, args.format))
    else:
        print(render(w, book, args.format, historical=args.historical))
    if args.chart is not None:
        from core.costs.chart import draw

        try:
            draw(w, book, args.chart)
        except (ValueError, OSError) as exc:
            raise CommandError(f"cannot draw {args.chart}: {exc}") from None
        print(f"chart written to {args.chart}", file=sys.stderr)
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
