"""Load on the bot as a VPS runs it: gunicorn with uvicorn workers on PostgreSQL, the platforms
faked in a process of their own, every update delivered several times at once; then what was
processed, replied, lost and doubled, counted in the database and at the fake APIs.

    .venv/bin/python -m tests.reliability.load --updates 1000 --copies 3 --workers 4 --platform vk

With `--web-flood 32` it measures instead Telegram's webhook latency idle and then while 32
clients without cookies flood the web chat (from one address, or `--flood-addresses N`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import runpy
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import sqlalchemy as sa

from bench.processes import children, free_port
from portabot.settings import Settings
from portabot.storage.migrate import upgrade
from portabot.testing.fakes import FakeTelegram, FakeVk
from tests.conftest import (
    POSTGRES_SERVER_URL,
    SECRET,
    TOKEN,
    VK_GROUP,
    VK_SECRET,
    VK_TOKEN,
    telegram_update,
    vk_event,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUNICORN_CONFIG = ROOT / "targets" / "vps" / "gunicorn.conf.py"
PLATFORMS = ("telegram", "vk")
COUNTER_FLOW = "examples.counter:flow"
ECHO_FLOW = "examples.counter:echo"
# Chosen here, not inherited from the caller's shell: the bot's settings, gunicorn's, systemd's.
NOT_INHERITED = {name.upper() for name in Settings.model_fields} | {
    "PORT",
    "BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "FORWARDED_ALLOW_IPS",
    "RUNTIME_DIRECTORY",
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
}


def graceful_timeout() -> float:
    """The VPS config's graceful_timeout: how long gunicorn lets requests in flight finish."""
    return float(runpy.run_path(str(GUNICORN_CONFIG))["graceful_timeout"])


# --- the fake platforms, in a process of their own so that they do not share the load's core


def _serve_fakes(port: int) -> None:
    """Telegram's Bot API at /, VK's API at /vk, what both received at /recorded; POST
    /slow?seconds=N makes every API call take that long first (a platform that hangs)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.types import ASGIApp, Receive, Scope, Send

    telegram = FakeTelegram(TOKEN)
    vk = FakeVk(VK_TOKEN, VK_GROUP)
    delay = [0.0]

    async def show(request: Request) -> JSONResponse:
        return JSONResponse(
            {"telegram": telegram.sent(), "vk": vk.sent(), "vk_dropped": list(vk.dropped)}
        )

    async def slow(request: Request) -> JSONResponse:
        delay[0] = float(request.query_params["seconds"])
        return JSONResponse({"seconds": delay[0]})

    def slowed(app: ASGIApp) -> ASGIApp:
        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            if delay[0]:
                await asyncio.sleep(delay[0])
            with contextlib.suppress(ClientDisconnect):  # the caller gave up waiting
                await app(scope, receive, send)

        return call

    app = Starlette(
        routes=[
            Route("/recorded", show),
            Route("/slow", slow, methods=["POST"]),
            Mount("/vk", slowed(vk.app())),
            Mount("/", slowed(telegram.app())),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def fake_platforms() -> Iterator[str]:
    """Start the fake APIs in a child process; yields their base URL (VK's is under /vk)."""
    port = free_port()
    serve = f"from tests.reliability.load import _serve_fakes; _serve_fakes({port})"
    process = subprocess.Popen([sys.executable, "-c", serve], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/recorded").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake platforms did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # calls it is still holding back (see /slow)
            process.kill()
            process.wait()


def slow_down(fakes_url: str, seconds: float) -> None:
    """Make the fake APIs wait this long before answering each call (0: answer at once)."""
    httpx.post(f"{fakes_url}/slow", params={"seconds": seconds}).raise_for_status()


def recorded(fakes_url: str) -> dict[str, list[dict[str, Any]]]:
    """What the fakes received: Telegram's sendMessage payloads, VK's delivered messages.send
    parameters, and the messages.send calls VK dropped as repeats of a random_id."""
    answer: dict[str, list[dict[str, Any]]] = httpx.get(f"{fakes_url}/recorded").json()
    return answer


# --- the bot, as the VPS unit starts it


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    return {**env, **values}


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    workers: int

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker's app has started and /healthz answers."""
        deadline = time.monotonic() + timeout
        while self.output().count("Application startup complete.") < self.workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{self.output()}")
            time.sleep(0.05)
        while True:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn's /healthz never answered:\n{self.output()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as `systemctl stop` sends; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def workers_on_the_database(self, database_url: str) -> int:
        """How many of the master's workers hold a connection to the database: each connects on
        the first update it handles, so this many workers took part."""
        port = sa.engine.make_url(database_url).port or 5432
        sockets = _sockets_to_port(port)
        return sum(1 for pid in children(self.process.pid) if _socket_inodes(pid) & sockets)


@contextmanager
def gunicorn(
    database_url: str, fakes_url: str, *, workers: int, flow: str, log: Path, **env: str
) -> Iterator[Gunicorn]:
    """The VPS unit's command line (gunicorn with targets/vps/gunicorn.conf.py) on a free port,
    with both platforms pointed at the fakes; stopped with SIGTERM afterwards. `env` adds to
    or overrides the environment (say GUNICORN_CMD_ARGS)."""
    port = free_port()
    settings = environment(
        BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY=str(workers),
        DATABASE_URL=database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fakes_url,
        VK_TOKEN=VK_TOKEN,
        VK_GROUP_ID=str(VK_GROUP),
        VK_SECRET=VK_SECRET,
        VK_API_URL=f"{fakes_url}/vk",
        BOT_FLOW=flow,
        SESSION_SECRET="load-session-secret",
        # The fakes take any rate; these loads are about every update once, not about pacing
        # (tests/test_pacing.py), which would hold 1,000 replies a second to 25.
        SEND_PACING="off",
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONFIG)],
            cwd=ROOT,
            env={**settings, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(process, f"http://127.0.0.1:{port}", log, workers)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _sockets_to_port(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[2].rpartition(":")[2], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


# --- the load


@dataclass(frozen=True, slots=True)
class Planned:
    """One update to deliver: the platform's id for it, who sends it, and the webhook body."""

    platform: str
    update_id: str
    user_id: str
    text: str
    body: bytes


def plan(
    platform: str, updates: int, *, per_person: int = 5, run: int | None = None
) -> list[Planned]:
    """`updates` distinct updates, `per_person` in a row from each person (so that a person's
    updates are in flight together); ids unique to the run, so that runs can share a database."""
    run = random.randrange(1, 100_000) if run is None else run
    base = run * 10_000_000
    planned = []
    for n in range(updates):
        user = base + n // per_person
        text = f"message {n}"
        if platform == "telegram":
            update_id = str(base + n)
            body = telegram_update(base + n, text, user_id=user)
        else:
            update_id = f"load-{run}-{n}"
            body = vk_event(update_id, text, user_id=user)
        planned.append(Planned(platform, update_id, str(user), text, json.dumps(body).encode()))
    return planned


@dataclass(frozen=True, slots=True)
class Answer:
    """What one HTTP delivery got back."""

    update: Planned
    status: int | None
    """None: no HTTP response (the connection was refused, reset or closed)."""
    body: bytes
    started: float
    """When it was sent (time.monotonic())."""
    seconds: float
    error: str = ""

    @property
    def answered_at(self) -> float:
        return self.started + self.seconds


def _webhook(platform: str) -> tuple[str, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if platform == "telegram":
        headers["X-Telegram-Bot-Api-Secret-Token"] = SECRET
    return f"/webhooks/{platform}", headers


async def deliver(
    url: str,
    planned: Sequence[Planned],
    *,
    copies: int = 1,
    concurrency: int = 32,
    answers: list[Answer] | None = None,
) -> list[Answer]:
    """Post every update `copies` times at once, `concurrency` updates in flight, on keep-alive
    connections as the platforms use them. Answers are appended to `answers` as they come."""
    answers = [] if answers is None else answers
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency * copies)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def post(update: Planned) -> None:
            path, headers = _webhook(update.platform)
            started = time.monotonic()
            try:
                async with session.post(path, data=update.body, headers=headers) as response:
                    body = await response.read()
                    status: int | None = response.status
                    error = ""
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status, body, error = None, b"", type(exc).__name__
            seconds = time.monotonic() - started
            answers.append(Answer(update, status, body, started, seconds, error))

        async def all_copies(update: Planned) -> None:
            async with gate:
                await asyncio.gather(*(post(update) for _ in range(copies)))

        await asyncio.gather(*(all_copies(update) for update in planned))
    return answers


# --- what came of it


@dataclass(frozen=True)
class Stored:
    """What the database holds for a run's updates."""

    updates: frozenset[str]
    """The update ids recorded (one row each, at most: it is the primary key)."""
    counts: dict[str, int]
    """Per account (user id): how many messages the counting flow counted."""
    unsent: int
    """Replies still waiting in the outbox."""


async def query_stored(database_url: str, planned: Sequence[Planned]) -> Stored:
    import asyncpg

    platform = planned[0].platform
    ids = [u.update_id for u in planned]
    users = sorted({u.user_id for u in planned})
    connection = await asyncpg.connect(database_url)
    try:
        updates = await connection.fetch(
            "SELECT update_id FROM updates WHERE platform = $1 AND update_id = ANY($2::text[])",
            platform,
            ids,
        )
        people = await connection.fetch(
            "SELECT a.user_id, p.data FROM accounts a JOIN people p ON p.id = a.person_id"
            " WHERE a.platform = $1 AND a.user_id = ANY($2::text[])",
            platform,
            users,
        )
        unsent = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE platform = $1 AND sent_at IS NULL"
            " AND split_part(key, ':', 1) = ANY($2::text[])",
            platform,
            ids,
        )
    finally:
        await connection.close()
    return Stored(
        frozenset(row["update_id"] for row in updates),
        {row["user_id"]: int(json.loads(row["data"]).get("count", 0)) for row in people},
        int(unsent),
    )


def read_stored(database_url: str, planned: Sequence[Planned]) -> Stored:
    return asyncio.run(query_stored(database_url, planned))


def expected_replies(planned: Sequence[Planned], *, echo: bool) -> Counter[tuple[str, str]]:
    """(user, text) of every reply the counting flow owes: "That was message 1." up to the
    person's number of updates, and with `echo` each update's text back."""
    owed: Counter[tuple[str, str]] = Counter()
    for user, count in Counter(u.user_id for u in planned).items():
        owed.update((user, f"That was message {n}.") for n in range(1, count + 1))
    if echo:
        owed.update((u.user_id, f"You said: {u.text}") for u in planned)
    return owed


def delivered_replies(
    planned: Sequence[Planned], answers: Sequence[Answer], calls: dict[str, list[dict[str, Any]]]
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(user, text) of every reply that reached a person of the run: those inline in webhook
    responses (Telegram's first), and those through the API (Telegram's sendMessage calls, VK's
    messages.send that the fake did not drop)."""
    users = {u.user_id for u in planned}
    inline: Counter[tuple[str, str]] = Counter()
    for answer in answers:
        if answer.status == 200 and answer.body and answer.update.platform == "telegram":
            reply = json.loads(answer.body)
            assert reply["method"] == "sendMessage", reply
            inline[(str(reply["chat_id"]), reply["text"])] += 1
    api: Counter[tuple[str, str]] = Counter()
    api.update((str(p["chat_id"]), p["text"]) for p in calls["telegram"])
    api.update((str(p["peer_id"]), p["message"]) for p in calls["vk"])

    def ours(replies: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
        return Counter({key: n for key, n in replies.items() if key[0] in users})

    return ours(inline), ours(api)


@dataclass(frozen=True)
class Report:
    platform: str
    updates: int
    copies: int
    workers: int
    sent: int
    """HTTP requests sent (updates × copies)."""
    acknowledged: int
    """Updates with at least one 200."""
    errors: int
    """Requests without a 200 (another status, or no response)."""
    processed: int
    """Updates recorded in the database."""
    counted: int
    """Messages the counting flow counted, summed over people."""
    replies: int
    """Replies that reached a person (inline and through the fake API)."""
    inline_replies: int
    """Of which in webhook responses."""
    duplicates: int
    """Updates counted twice, plus replies delivered twice or not owed."""
    lost: int
    """Updates not processed, plus replies owed but never delivered."""
    duplicate_updates: int
    lost_updates: int
    duplicate_replies: int
    lost_replies: int
    unsent: int
    """Replies still in the outbox."""
    vk_dropped: int
    """messages.send calls the fake VK dropped as a repeated random_id (VK would too)."""
    workers_used: int
    """Workers holding a database connection afterwards, i.e. that handled updates."""
    seconds: float
    updates_per_second: float
    replies_per_second: float
    p50_ms: float
    p99_ms: float

    @property
    def clean(self) -> bool:
        return self.duplicates == self.lost == self.errors == self.unsent == 0

    def summary(self) -> str:
        return (
            f"{self.platform}: {self.sent} requests ({self.updates} updates × {self.copies}) to "
            f"{self.workers} workers ({self.workers_used} used) in {self.seconds:.1f} s: "
            f"{self.processed} processed, {self.duplicates} duplicates, {self.lost} lost, "
            f"{self.errors} errors; {self.replies} replies, {self.replies_per_second:.0f}/s; "
            f"latency p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms"
        )


def tally(
    planned: Sequence[Planned],
    answers: Sequence[Answer],
    stored: Stored,
    calls: dict[str, list[dict[str, Any]]],
    *,
    echo: bool,
    copies: int = 1,
    workers: int = 0,
    workers_used: int = 0,
    seconds: float = 0.0,
) -> Report:
    """Compare what was delivered with what the database and the fake APIs got."""
    owed_updates = Counter(u.user_id for u in planned)
    over = sum(max(0, stored.counts.get(user, 0) - n) for user, n in owed_updates.items())
    under = sum(max(0, n - stored.counts.get(user, 0)) for user, n in owed_updates.items())
    lost_updates = max(under, len(planned) - len(stored.updates))
    owed = expected_replies(planned, echo=echo)
    inline, api = delivered_replies(planned, answers, calls)
    got = inline + api
    duplicate_replies = sum(max(0, n - owed[key]) for key, n in got.items())
    lost_replies = sum(max(0, n - got[key]) for key, n in owed.items())
    latencies = sorted(a.seconds * 1000 for a in answers if a.status is not None)
    centiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    users = set(owed_updates)
    replies = sum(got.values())
    return Report(
        platform=planned[0].platform,
        updates=len(planned),
        copies=copies,
        workers=workers,
        sent=len(answers),
        acknowledged=len({a.update.update_id for a in answers if a.status == 200}),
        errors=sum(1 for a in answers if a.status != 200),
        processed=len(stored.updates),
        counted=sum(stored.counts.get(user, 0) for user in users),
        replies=replies,
        inline_replies=sum(inline.values()),
        duplicates=over + duplicate_replies,
        lost=lost_updates + lost_replies,
        duplicate_updates=over,
        lost_updates=lost_updates,
        duplicate_replies=duplicate_replies,
        lost_replies=lost_replies,
        unsent=stored.unsent,
        vk_dropped=sum(1 for p in calls["vk_dropped"] if str(p["peer_id"]) in users),
        workers_used=workers_used,
        seconds=round(seconds, 3),
        updates_per_second=round(len(planned) / seconds, 1) if seconds else 0.0,
        replies_per_second=round(replies / seconds, 1) if seconds else 0.0,
        p50_ms=round(centiles[49], 1) if centiles else 0.0,
        p99_ms=round(centiles[98], 1) if centiles else 0.0,
    )


def measure(
    server: Gunicorn,
    fakes_url: str,
    database_url: str,
    planned: Sequence[Planned],
    *,
    copies: int,
    concurrency: int = 32,
    echo: bool = False,
) -> Report:
    """Deliver the planned updates to the running bot and say what came of them."""
    started = time.perf_counter()
    answers = asyncio.run(deliver(server.url, planned, copies=copies, concurrency=concurrency))
    seconds = time.perf_counter() - started
    return tally(
        planned,
        answers,
        read_stored(database_url, planned),
        recorded(fakes_url),
        echo=echo,
        copies=copies,
        workers=server.workers,
        workers_used=server.workers_on_the_database(database_url),
        seconds=seconds,
    )


UNLIMITED_WEB = {
    "WEB_CHAT_PER_ADDRESS": "100000",
    "WEB_CHAT_TOTAL": "1000000",
    "WEB_CHAT_NEW_PER_ADDRESS": "100000",
    "WEB_CHAT_NEW_TOTAL": "1000000",
}
"""For `--no-web-limits`: what the flood costs when nothing refuses it."""


@dataclass(frozen=True)
class FloodReport:
    clients: int
    addresses: int
    telegram_updates: int
    idle_p50_ms: float
    idle_p99_ms: float
    flooded_p50_ms: float
    flooded_p99_ms: float
    web_requests: int
    web_per_second: float
    web_statuses: dict[str, int]
    web_people: int
    """People the flood left in the database (web accounts made during it)."""

    def summary(self) -> str:
        ratio = self.flooded_p50_ms / self.idle_p50_ms if self.idle_p50_ms else 0.0
        return (
            f"telegram p50 {self.idle_p50_ms:.1f} ms idle, {self.flooded_p50_ms:.1f} ms "
            f"({ratio:.2f}×) while {self.clients} clients from {self.addresses} address(es) sent "
            f"{self.web_requests} web chat requests ({self.web_per_second:.0f}/s, statuses "
            f"{self.web_statuses}) that left {self.web_people} people; p99 "
            f"{self.idle_p99_ms:.1f} → {self.flooded_p99_ms:.1f} ms"
        )


def _centile(answers: Sequence[Answer], n: int) -> float:
    latencies = sorted(a.seconds * 1000 for a in answers if a.status is not None)
    if len(latencies) < 2:
        return latencies[0] if latencies else 0.0
    return round(statistics.quantiles(latencies, n=100)[n - 1], 1)


async def flood_web(
    url: str,
    clients: int,
    addresses: int,
    stop: asyncio.Event,
    under_way: Callable[[], object] = lambda: None,
) -> Counter[str]:
    """`clients` loops posting to the web chat without cookies (every post a new visitor), each
    from one of `addresses` (X-Forwarded-For, which the VPS config believes from loopback);
    `under_way` is called once every client has had its first answer."""
    statuses: Counter[str] = Counter()
    answered: set[int] = set()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        url, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def client(n: int) -> None:
            headers = {"X-Forwarded-For": f"198.18.{n % addresses // 250}.{n % addresses % 250}"}
            while not stop.is_set():
                try:
                    async with session.post(
                        "/webhooks/web", json={"text": "hello"}, headers=headers
                    ) as response:
                        await response.read()
                        statuses[str(response.status)] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    statuses[type(exc).__name__] += 1
                if n not in answered:
                    answered.add(n)
                    if len(answered) == clients:
                        under_way()

        await asyncio.gather(*(client(n) for n in range(clients)))
    return statuses


def _flood_main(url: str, clients: int, addresses: int) -> None:
    """The web flood in a process of its own (so that its clients don't slow the Telegram
    deliveries' own event loop): floods until stdin closes, then prints the statuses."""
    import threading

    async def run() -> Counter[str]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
        ).start()
        return await flood_web(url, clients, addresses, stop, lambda: print("flooding", flush=True))

    print(json.dumps(dict(asyncio.run(run()))), flush=True)


@contextmanager
def web_flood_process(url: str, clients: int, addresses: int) -> Iterator[dict[str, Any]]:
    """Yields a dict that holds the flood's statuses and seconds once the block ends."""
    code = "from tests.reliability.load import _flood_main; "
    code += f"_flood_main({url!r}, {clients}, {addresses})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    # Every client of the flood has had an answer: it is under way.
    assert process.stdout is not None and process.stdout.readline() == "flooding\n"
    started = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        yield result
    finally:
        output, _ = process.communicate("", timeout=60)
        result["seconds"] = time.perf_counter() - started
        result["statuses"] = json.loads(output)


def telegram_under_web_flood(
    url: str,
    idle: Sequence[Planned],
    flooded: Sequence[Planned],
    clients: int,
    addresses: int,
    concurrency: int,
) -> tuple[list[Answer], list[Answer], Counter[str], float]:
    idle_answers = asyncio.run(deliver(url, idle, concurrency=concurrency))
    with web_flood_process(url, clients, addresses) as flood:
        flooded_answers = asyncio.run(deliver(url, flooded, concurrency=concurrency))
    return idle_answers, flooded_answers, Counter(flood["statuses"]), flood["seconds"]


def count_web_people(database_url: str, since: float) -> int:
    async def count() -> int:
        import asyncpg

        connection = await asyncpg.connect(database_url)
        try:
            return int(
                await connection.fetchval(
                    "SELECT count(*) FROM accounts WHERE platform = 'web' AND created_at >= $1",
                    since,
                )
            )
        finally:
            await connection.close()

    return asyncio.run(count())


def measure_web_flood(
    server: Gunicorn,
    database_url: str,
    *,
    updates: int,
    clients: int,
    addresses: int,
    concurrency: int,
) -> FloodReport:
    """Telegram's latency idle, then during the flood; and what the flood got and left."""
    idle = plan("telegram", updates, per_person=1)
    flooded = plan("telegram", updates, per_person=1)
    since = time.time()
    idle_answers, flooded_answers, statuses, seconds = telegram_under_web_flood(
        server.url, idle, flooded, clients, addresses, concurrency
    )
    failed = [a for a in [*idle_answers, *flooded_answers] if a.status != 200]
    if failed:
        raise RuntimeError(f"{len(failed)} Telegram updates not answered 200: {failed[0]}")
    requests = sum(statuses.values())
    return FloodReport(
        clients=clients,
        addresses=addresses,
        telegram_updates=updates,
        idle_p50_ms=_centile(idle_answers, 50),
        idle_p99_ms=_centile(idle_answers, 99),
        flooded_p50_ms=_centile(flooded_answers, 50),
        flooded_p99_ms=_centile(flooded_answers, 99),
        web_requests=requests,
        web_per_second=round(requests / seconds, 1),
        web_statuses=dict(statuses),
        web_people=count_web_people(database_url, since),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.load",
        description="Start the fake platform APIs and gunicorn as the VPS runs it, deliver each "
        "update several times at once, and count what was processed, replied, lost and doubled.",
    )
    parser.add_argument("--updates", type=int, default=1000, help="distinct updates")
    parser.add_argument("--copies", type=int, default=3, help="deliveries of each, at once")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn's WEB_CONCURRENCY")
    parser.add_argument("--platform", choices=PLATFORMS, default="telegram")
    parser.add_argument(
        "--database-url",
        default=POSTGRES_SERVER_URL,
        help="PostgreSQL to use (migrated; nothing is deleted; default %(default)s)",
    )
    parser.add_argument("--per-person", type=int, default=5, help="updates from each person")
    parser.add_argument("--concurrency", type=int, default=32, help="updates in flight")
    parser.add_argument(
        "--echo", action="store_true", help="two replies per update (Telegram: one via the API)"
    )
    parser.add_argument(
        "--web-flood",
        type=int,
        metavar="CLIENTS",
        help="instead: Telegram's latency idle and while this many clients flood the web chat "
        "(--updates Telegram updates each time, --concurrency of them in flight)",
    )
    parser.add_argument(
        "--flood-addresses", type=int, default=1, help="addresses the web flood comes from"
    )
    parser.add_argument(
        "--no-web-limits", action="store_true", help="raise the web chat's limits out of reach"
    )
    args = parser.parse_args(argv)
    upgrade(args.database_url)
    if args.web_flood:
        return web_flood(args)
    log = Path(tempfile.mkstemp(prefix="portabot-load-", suffix=".log")[1])
    flow = ECHO_FLOW if args.echo else COUNTER_FLOW
    with (
        fake_platforms() as fakes,
        gunicorn(args.database_url, fakes, workers=args.workers, flow=flow, log=log) as server,
    ):
        planned = plan(args.platform, args.updates, per_person=args.per_person)
        report = measure(
            server,
            fakes,
            args.database_url,
            planned,
            copies=args.copies,
            concurrency=args.concurrency,
            echo=args.echo,
        )
    print(json.dumps(asdict(report)))
    print(report.summary())
    if report.clean:
        log.unlink()
        return 0
    print(f"gunicorn's log: {log}", file=sys.stderr)
    return 1


def web_flood(args: argparse.Namespace) -> int:
    log = Path(tempfile.mkstemp(prefix="portabot-load-", suffix=".log")[1])
    env = UNLIMITED_WEB if args.no_web_limits else {}
    with (
        fake_platforms() as fakes,
        gunicorn(
            args.database_url, fakes, workers=args.workers, flow=COUNTER_FLOW, log=log, **env
        ) as server,
    ):
        report = measure_web_flood(
            server,
            args.database_url,
            updates=args.updates,
            clients=args.web_flood,
            addresses=args.flood_addresses,
            concurrency=args.concurrency,
        )
    log.unlink()
    print(json.dumps(asdict(report)))
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
