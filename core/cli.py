"""The `portabot` command: serve, poll, migrate, set-webhook, deliver, maintain, tick, show,
notify, broadcast, check, costs, package."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from portabot import __version__
from portabot.capacity import (
    DEFAULT_CLOCK_DYNOS,
    DEFAULT_INSTANCES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SCHEDULER_DYNOS,
    DEFAULT_WORKER_DYNOS,
)
from portabot.checks import TARGETS, describe
from portabot.costs.inputs import INPUTS, SWITCHES, Input, InputError, parse, span, workload
from portabot.costs.model import MONTH_DAYS
from portabot.packaging import LAMBDA_PYTHON, MACHINES
from portabot.settings import (
    MIN_KEEP_DAYS,
    ConfigurationError,
    Settings,
    load_settings,
    obscure_url,
)

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from portabot.bot import Bot
    from portabot.outbound import Outbound
    from portabot.replies import Reply


T = TypeVar("T")
CHECK_LABELS = {True: "ok  ", None: "note", False: "FAIL"}


class CommandError(Exception):
    """Ends the command with this one-line message and exit status `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except (ConfigurationError, CommandError) as exc:
        print(f"portabot: {exc}", file=sys.stderr)
        return exc.status if isinstance(exc, CommandError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `portabot costs | head`: the reader has what it wanted
        # What is still buffered cannot be written either: send it nowhere, not to a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


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
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart when a Python file of the project or of the BOT_FLOW module changes "
        "(for development)",
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

    maintain = commands.add_parser(
        "maintain",
        help="delete what is past its retention and send the replies that are due (schedule it)",
        description="One run: delete update ids older than the retention window, replies sent "
        "before the window (given up ones after 30 days at least) and idle web visitors, run "
        "each of the flow's features' purge steps, then send the replies that are due. Safe to "
        "run from several places at once.",
    )
    maintain.add_argument(
        "--keep-updates-days",
        type=keep_days,
        metavar="DAYS",
        help=f"how long update ids (and sent replies) are kept: at least {MIN_KEEP_DAYS:g}, "
        "since Telegram re-delivers for a day ($KEEP_UPDATES_DAYS, else 7)",
    )
    maintain.set_defaults(command=cmd_maintain)

    tick = commands.add_parser(
        "tick",
        help="run what is due now: timers, outside calls, replies waiting in the outbox",
        description="One run of what is due, one line per kind of work; a scheduler runs it "
        "every minute. With --every SECONDS it goes on, running at every multiple of SECONDS "
        "on the clock (a Heroku clock dyno), one log line per run that did something, until "
        "SIGTERM or Ctrl-C. Safe to run from several places at once.",
    )
    tick.add_argument(
        "--every",
        type=interval,
        metavar="SECONDS",
        help="keep running, every SECONDS (at most 3600)",
    )
    tick.set_defaults(command=cmd_tick)

    poll = commands.add_parser(
        "poll",
        help="take Telegram's updates by long polling (getUpdates) instead of a webhook",
        description="Asks Telegram for updates (getUpdates) and handles them as the webhook "
        "does, every reply through the outbox; Ctrl-C or SIGTERM finishes the update in hand "
        "and stops. Refuses to start while a webhook is set.",
    )
    poll.add_argument(
        "--timeout",
        type=whole_seconds,
        default=30,
        metavar="SECONDS",
        help="how long one getUpdates call waits for an update (30)",
    )
    poll.add_argument(
        "--drop-webhook",
        action="store_true",
        help="remove the webhook first (deleteWebhook); updates waiting for it are kept",
    )
    poll.set_defaults(command=cmd_poll)

    costs = commands.add_parser(
        "costs",
        help="compare what hosting costs on Heroku, AWS Lambda and a VPS for your traffic",
        description="Monthly cost of each hosting option for one workload, in USD, with every "
        "price's source and date. Flags override what --from-bench gives.",
    )
    volume = costs.add_mutually_exclusive_group()
    for spec in INPUTS:
        default = f"; default {spec.default}" if spec.default else ""
        (volume if spec.counts else costs).add_argument(
            spec.flag,
            dest=spec.name,
            type=partial(cost_input, spec),
            metavar="N[,N...]" if spec.counts else "N",
            help=f"{spec.help}: {span(spec)}{default}",
        )
    for name, text in SWITCHES.items():
        costs.add_argument(
            f"--{name.replace('_', '-')}",
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"{text} (on)",
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

    show = commands.add_parser(
        "show",
        help="print a person's linked accounts and stored state",
        description="Finds the person who owns the account PLATFORM:USER_ID (telegram:123, "
        "vk:456, web:<visitor>) and prints their id, linked accounts, state and its data.",
    )
    show.add_argument("account", metavar="PLATFORM:USER_ID")
    show.set_defaults(command=cmd_show)

    notify = commands.add_parser(
        "notify",
        help="send a text to every platform a person linked, once per --id",
        description="Finds the person who owns the account PLATFORM:USER_ID (telegram:123, "
        "vk:456, web:<visitor>) and sends TEXT to every platform they linked: Telegram and VK "
        "in the person's private chat (sent at once; what fails stays in the outbox for "
        "`portabot deliver`), the web chat into the visitor's inbox (their page collects it). "
        "With --id KEY it happens once: running it again with the same KEY sends nothing.",
    )
    notify.add_argument("account", metavar="PLATFORM:USER_ID")
    notify.add_argument("text", metavar="TEXT")
    notify.add_argument(
        "--id",
        dest="key",
        metavar="KEY",
        help=f"what makes it once: up to {MAX_NOTIFY_KEY} characters, no spaces "
        "(default: a fresh random one, so each run sends)",
    )
    notify.set_defaults(command=cmd_notify)

    broadcast = commands.add_parser(
        "broadcast",
        help="send a text to every person (or an audience) on every platform, paced, resumable",
        description="Stores TEXT for every person (or those the flow's audience --to selects) "
        "on every platform they linked, a batch of people at a time, and sends it paced by the "
        "platforms' rate limits (shared with every other sender). With the same --id a second "
        "run skips the people already stored and sends what is left; two runs at once share "
        "the work. Progress goes to stderr, a summary to stdout; Ctrl-C stops cleanly.",
    )
    broadcast.add_argument("text", metavar="TEXT")
    broadcast.add_argument(
        "--id",
        dest="key",
        metavar="KEY",
        help=f"what makes it once per person: up to {MAX_BROADCAST_KEY} characters, no spaces "
        "(default: a fresh random one, printed so that the run can be resumed)",
    )
    broadcast.add_argument(
        "--to", dest="audience", metavar="AUDIENCE", help="a named audience of the flow"
    )
    broadcast.add_argument(
        "--platforms",
        type=platform_names,
        metavar="P[,P...]",
        help="only these of telegram, vk, web (default: every one a person linked)",
    )
    broadcast.set_defaults(command=cmd_broadcast)

    check = commands.add_parser("check", help="say what configuration is missing or wrong")
    check.add_argument(
        "--target",
        choices=TARGETS,
        help="also check what this host needs (database kind, connections against its limit)",
    )
    check.add_argument(
        "--instances",
        type=count,
        metavar="N",
        help="Heroku web dynos, Lambda's reserved concurrency or VPS machines (default: "
        + ", ".join(f"{t} {n}" for t, n in DEFAULT_INSTANCES.items())
        + ")",
    )
    check.add_argument(
        "--worker-dynos",
        type=count,
        metavar="N",
        help=f"Heroku: dynos of the Procfile's worker type, `portabot poll` "
        f"(default {DEFAULT_WORKER_DYNOS}: off until scaled up)",
    )
    check.add_argument(
        "--clock-dynos",
        type=count,
        metavar="N",
        help=f"Heroku: dynos of the Procfile's clock type, `portabot tick` "
        f"(default {DEFAULT_CLOCK_DYNOS}: off until scaled up)",
    )
    check.add_argument(
        "--scheduler-dynos",
        type=count,
        metavar="N",
        help=f"Heroku: Scheduler jobs (`portabot maintain`) running at once "
        f"(default {DEFAULT_SCHEDULER_DYNOS})",
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

    from portabot.app import MAX_CONNECTIONS, MAX_HEADERS, create_app
    from portabot.conversation.loader import flow_summary

    settings = load_settings()
    if settings.is_sqlite:
        run_migrations(settings)
    app = create_app(settings)
    bot = app.state.bot
    channels = ", ".join(sorted(bot.channels))
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"portabot {__version__}: open http://{host}:{args.port}/ to chat with the bot")
    print(f"  {flow_summary(settings, bot.flow)}")
    print(f"  database {obscure_url(settings.database_url)}; channels: {channels}")
    dirs = [str(path) for path in watched(settings)] if args.reload else None
    if dirs:
        print(f"  restarting on changes to the Python files in {', '.join(dirs)}")
    # No proxy in front here: h11 bounds the headers it buffers (httptools, faster and what
    # gunicorn's workers use behind Heroku's router or Caddy, does not).
    uvicorn.run(
        # The reloader's server process imports the app anew each time, by name.
        "portabot.app:app" if args.reload else app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log is not False,
        http="h11",
        # Above MAX_HEADERS, so that headers between the two get the app's clearer 431.
        h11_max_incomplete_event_size=4 * MAX_HEADERS,
        limit_concurrency=MAX_CONNECTIONS,
        reload=args.reload,
        reload_dirs=dirs,
    )
    return 0


def watched(settings: Settings) -> list[Path]:
    """What `serve --reload` watches: the working directory, and the BOT_FLOW module's top package
    (or its directory) wherever it is installed."""
    top = settings.bot_flow.partition(":")[0].split(".")[0]
    found = [Path.cwd()]
    spec = importlib.util.find_spec(top)
    if spec is not None and spec.origin is not None:
        place = Path(spec.origin).parent
        if not place.is_relative_to(Path.cwd()):
            found.append(place)
    return found


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    revision = run_migrations(settings)
    print(f"database schema at revision {revision}: {obscure_url(settings.database_url)}")
    return 0


def run_migrations(settings: Settings) -> str | None:
    from portabot.conversation.loader import load_flow
    from portabot.storage.migrate import upgrade
    from portabot.storage.schema import feature_tables

    tables = feature_tables(load_flow(settings).features)
    try:
        return upgrade(settings.database_url, tables)
    except Exception as exc:
        raise CommandError(
            f"cannot migrate {obscure_url(settings.database_url)}: {describe(exc)}"
        ) from None


def cmd_set_webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    from portabot.channels import platform_channels

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
    from portabot.channels.base import ApiError
    from portabot.outbound import call_now

    try:
        return call_now(call)
    except ApiError as exc:
        raise CommandError(str(exc)) from None


def cmd_package_lambda(args: argparse.Namespace) -> int:
    from portabot.packaging import PackagingError, build_lambda_zip

    try:
        package = build_lambda_zip(
            args.output, arch=args.arch, python_version=args.python_version, include=args.include
        )
    except PackagingError as exc:
        raise CommandError(str(exc)) from None
    print(package.describe())
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from portabot.maintenance import deliver_outbox

    print(on_database(load_settings(), "deliver from", deliver_outbox))
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from portabot.conversation.loader import load_flow
    from portabot.maintenance import maintain

    settings = load_settings()
    days = settings.keep_updates_days if args.keep_updates_days is None else args.keep_updates_days
    features = load_flow(settings).features  # their purge steps
    run = partial(
        maintain,
        keep_updates_days=days,
        keep_visitors_days=settings.web_chat_keep_days,
        features=features,
    )
    print("\n".join(on_database(settings, "maintain", run)))
    return 0


def on_database(
    settings: Settings, doing: str, work: Callable[[Outbound], Coroutine[Any, Any, T]]
) -> T:
    """Run one command's work against the database and the platforms' APIs; a failure (the
    database unreachable, say) is one line."""
    from portabot.maintenance import outbound_for

    async def run() -> T:
        async with outbound_for(settings) as outbound:
            return await work(outbound)

    try:
        return asyncio.run(run())
    except Exception as exc:
        where = obscure_url(settings.database_url)
        raise CommandError(f"cannot {doing} {where}: {describe(exc)}") from None


def cmd_tick(args: argparse.Namespace) -> int:
    # No migration first, unlike serve and poll: the schema check does it on SQLite only when
    # the file is behind, where Alembic's import would cost a second at every run.
    settings = load_settings()
    if args.every is None:
        print("\n".join(on_bot(settings, "run what is due on", tick_once)))
        return 0
    from portabot.logs import configure_logging
    from portabot.runner import run_every

    configure_logging(settings.log_level)
    where = obscure_url(settings.database_url)
    print(f"portabot {__version__}: what is due runs every {args.every} s on {where}", flush=True)
    runs = run_every(settings, args.every)
    print(f"stopped after {runs} run{'' if runs == 1 else 's'}", flush=True)
    return 0


async def tick_once(bot: Bot) -> list[str]:
    from portabot.jobs import run_due

    await bot.schema.ensure()  # PostgreSQL is migrated by a release step, not by us
    return await run_due(bot)


def on_bot(settings: Settings, doing: str, work: Callable[[Bot], Coroutine[Any, Any, T]]) -> T:
    """Run one command's work with the bot a server would have (its flow, channels, database);
    a failure is one line."""
    from portabot.bot import Bot
    from portabot.storage.schema import SchemaBehind

    async def run() -> T:
        bot = Bot(settings)
        try:
            return await work(bot)
        finally:
            await bot.close()

    try:
        return asyncio.run(run())
    except SchemaBehind as exc:
        raise CommandError(str(exc)) from None
    except (ConfigurationError, CommandError):
        raise
    except Exception as exc:
        where = obscure_url(settings.database_url)
        raise CommandError(f"cannot {doing} {where}: {describe(exc)}") from None


def cmd_poll(args: argparse.Namespace) -> int:
    from portabot.polling import PollingError, run_polling

    settings = load_settings()
    if not settings.telegram_enabled:
        raise CommandError("poll needs TELEGRAM_TOKEN")
    if settings.is_sqlite:
        run_migrations(settings)
    try:
        run_polling(settings, timeout=args.timeout, drop_webhook=args.drop_webhook)
    except PollingError as exc:
        raise CommandError(str(exc), exc.status) from None
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import json

    from portabot.features.linking import CODE_KEY
    from portabot.storage.people import PersonRecord, find_person

    platform, colon, user_id = args.account.partition(":")
    if not (colon and platform and user_id):
        raise CommandError("usage: portabot show PLATFORM:USER_ID, e.g. telegram:123", status=2)

    async def find(outbound: Outbound) -> PersonRecord | None:
        async with outbound.db.autocommit() as conn:
            return await find_person(conn, platform, user_id)

    person = on_database(load_settings(), "read", find)
    if person is None:
        raise CommandError(f"no one has written from {platform}:{user_id}")
    print(f"person {person.id}")
    print("accounts:")
    for account in person.accounts:
        print(
            f"  {account.platform}:{account.user_id}  chat {account.chat_id}"
            f"  since {timestamp(account.since)}"
        )
    print(f"state: {person.conversation.state or '(none yet)'}")
    shown = dict(person.conversation.data)
    if CODE_KEY in shown:  # a pending link code is a credential
        shown[CODE_KEY] = "(hidden)"
    data = json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True)
    print(f"data: {data}")
    print(f"last written: {timestamp(person.updated_at)}")
    return 0


MAX_NOTIFY_KEY = 64
"""The longest --id of `portabot notify` (it is kept as an update id, a String(64))."""


def cmd_notify(args: argparse.Namespace) -> int:
    import secrets

    from portabot.replies import Reply, ReplyError
    from portabot.telling import PLATFORMS

    platform, colon, user_id = args.account.partition(":")
    if not (colon and platform and user_id):
        raise CommandError(
            "usage: portabot notify PLATFORM:USER_ID TEXT, e.g. telegram:123", status=2
        )
    if platform not in PLATFORMS:
        raise CommandError(
            f"notify: {platform!r} is not a platform ({', '.join(PLATFORMS)})", status=2
        )
    key = secrets.token_hex(16) if args.key is None else args.key
    if not 0 < len(key) <= MAX_NOTIFY_KEY or not key.isprintable() or " " in key:
        raise CommandError(
            f"notify: --id is 1 to {MAX_NOTIFY_KEY} characters without spaces", status=2
        )
    try:
        reply = Reply.of(args.text)
    except ReplyError as exc:
        raise CommandError(f"notify: {exc}", status=2) from None
    settings = load_settings()
    line = on_database(settings, "notify from", partial(notify, platform, user_id, reply, key))
    if line is None:
        raise CommandError(f"no one has written from {platform}:{user_id}")
    print(line)
    return 0


async def notify(
    platform: str, user_id: str, reply: Reply, key: str, outbound: Outbound
) -> str | None:
    """`portabot notify`'s work: store the message for every account of the person (with the
    key, in one transaction), then send what goes through the platforms' APIs; the line to
    print (None: no such account)."""
    import time

    from portabot.storage.telling import person_of_account, tell
    from portabot.storage.updates import record_update

    now = time.time()
    async with outbound.db.transaction() as conn:
        person_id = await person_of_account(conn, platform, user_id)
        if person_id is None:
            return None
        if not await record_update(conn, "notify", key, now):
            return f"already sent with --id {key}"
        told = await tell(conn, person_id, reply, f"notify:{key}", now, outbound.channels)
    sent: list[str] = []
    failed = 0
    for delivery in told.sent:
        done, _ = await outbound.deliver([delivery])
        if done and delivery.platform not in sent:
            sent.append(delivery.platform)
        failed += not done
    parts = [f"sent to {', '.join(sent)}"] if sent else []
    if failed:
        parts.append(f"{failed} left in the outbox for a later try (portabot deliver)")
    if told.kept:
        waits = "waits" if len(told.kept) == 1 else "wait"
        parts.append(f"{len(told.kept)} {waits} in the web inbox")
    if told.skipped:
        parts.append(f"not sent to {', '.join(told.skipped)}: not configured here")
    return "; ".join(parts) or f"person {person_id} has nothing linked to send to"


MAX_BROADCAST_KEY = 40
"""The longest --id of `portabot broadcast` (with a person's id it is kept as an update id)."""


def platform_names(text: str) -> tuple[str, ...]:
    from portabot.telling import PLATFORMS

    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for name in names:
        if name not in PLATFORMS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(PLATFORMS)}")
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one of {', '.join(PLATFORMS)}")
    return names


def cmd_broadcast(args: argparse.Namespace) -> int:
    import secrets

    from portabot.broadcast import MAX_TEXT, BroadcastError, Progress, Summary, broadcast
    from portabot.replies import Reply, ReplyError

    key = secrets.token_hex(8) if args.key is None else args.key
    if not 0 < len(key) <= MAX_BROADCAST_KEY or not key.isprintable() or " " in key:
        raise CommandError(
            f"broadcast: --id is 1 to {MAX_BROADCAST_KEY} characters without spaces", status=2
        )
    if not args.text.strip():
        raise CommandError("broadcast: the text is empty", status=2)
    if len(args.text) > MAX_TEXT:
        raise CommandError(
            f"broadcast: the text is {len(args.text)} characters; at most {MAX_TEXT} "
            "(one message on every platform)",
            status=2,
        )
    try:
        reply = Reply.of(args.text)
    except ReplyError as exc:
        raise CommandError(f"broadcast: {exc}", status=2) from None
    settings = load_settings()
    audience = None
    if args.audience is not None:
        from portabot.conversation.loader import load_flow

        try:
            audience = load_flow(settings).audience_named(args.audience)
        except LookupError as exc:
            raise CommandError(f"broadcast: {exc.args[0]}", status=2) from None
    if args.key is None:
        print(f"portabot: broadcast --id {key} (run again with it to resume)", file=sys.stderr)

    async def work(outbound: Outbound) -> Summary | BroadcastError:
        try:
            return await broadcast(
                outbound,
                reply,
                key,
                audience=audience,
                platforms=args.platforms,
                progress=Progress(sys.stderr),
            )
        except BroadcastError as exc:  # the flow's fault, not the database's: said as such
            return exc

    summary = on_database(settings, "broadcast from", work)
    if isinstance(summary, BroadcastError):
        raise CommandError(f"broadcast: {summary}")
    print(summary.line())
    if summary.stopped:
        print(f"portabot: broadcast stopped; run again with --id {key} to go on", file=sys.stderr)
        return 130
    return 0


def timestamp(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def whole_seconds(text: str) -> int:
    value = positive(text)
    if value != int(value) or value > 3600:
        raise argparse.ArgumentTypeError(f"must be whole seconds, at most 3600: {text}")
    return int(value)


def interval(text: str) -> int:
    seconds = whole_seconds(text)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second: {text}")
    return seconds


def count(text: str) -> int:
    """A number of dynos, machines or containers: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def keep_days(text: str) -> float:
    days = positive(text)
    if days < MIN_KEEP_DAYS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_KEEP_DAYS:g}: Telegram re-delivers an update for a day"
        )
    return days


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1e15:
        raise argparse.ArgumentTypeError(f"must be 0 or more (and sane): {text}")
    return value


def cost_input(spec: Input, text: str) -> float | list[float]:
    """A flag of the comparison, by the bounds the API has too; a count may be a list."""
    try:
        if spec.counts:
            return [parse(spec, part) for part in text.split(",")]
        return parse(spec, text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_costs(args: argparse.Namespace) -> int:
    from portabot.costs.bench import BenchError, from_bench
    from portabot.costs.prices import PriceBook, PriceError
    from portabot.costs.report import render, render_volumes

    counts = [n * MONTH_DAYS for n in args.per_day] if args.per_day is not None else args.updates
    flags = {spec.field: getattr(args, spec.name) for spec in INPUTS if not spec.counts}
    flags["updates"] = counts[0] if counts else None
    try:
        book = PriceBook.load(args.prices)
        values = from_bench(args.from_bench) if args.from_bench else {}
        values.update({field: value for field, value in flags.items() if value is not None})
        w = workload(values, {name: getattr(args, name) for name in SWITCHES})
    except (PriceError, BenchError, InputError) as exc:
        raise CommandError(str(exc)) from None
    if counts is not None and len(counts) > 1:
        print(render_volumes(w, counts, book, args.format))
    else:
        print(render(w, book, args.format, historical=args.historical))
    if args.chart is not None:
        from portabot.costs.chart import draw

        try:
            draw(w, book, args.chart)
        except (ValueError, OSError) as exc:
            raise CommandError(f"cannot draw {args.chart}: {exc}") from None
        print(f"chart written to {args.chart}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from portabot.checks import configuration

    problems = 0
    for ok, text in configuration(
        load_settings(),
        args.target,
        instances=args.instances,
        max_connections=args.max_connections,
        worker_dynos=args.worker_dynos,
        scheduler_dynos=args.scheduler_dynos,
        clock_dynos=args.clock_dynos,
    ):
        problems += ok is False
        print(f"{CHECK_LABELS[ok]} {text}")
    print("configuration has problems" if problems else "configuration is complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
