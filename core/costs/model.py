"""Monthly cost of hosting one bot's workload on Heroku, AWS Lambda and a VPS.

Traffic is taken as evenly random (Poisson) over a 730-hour month: from it follow how long an
Eco dyno or a Neon database stays awake and how many Lambda invocations start a new container.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from portabot.costs.prices import PriceBook

HOURS = 730.0
"""Hours in an average month, as the hosts bill them."""
SECONDS = HOURS * 3600
ECO_IDLE = 30 * 60.0
"""An Eco web dyno sleeps after 30 minutes without a request."""
NEON_IDLE = 5 * 60.0
"""Neon suspends compute after 5 minutes without a query."""
NEON_MIN_CU = 0.25
LAMBDA_IDLE = 10 * 60.0
"""How long an idle Lambda container is kept: not published; observed to be minutes."""
CONTAINER_LIFETIME = 2 * 3600.0
"""How long a busy container lives before Lambda replaces it: not published; observed hours."""
KEPT_DAYS = 7.0
"""How long `portabot maintain` keeps update ids by default (KEEP_UPDATES_DAYS)."""
MONTH_DAYS = HOURS / 24
GB_PER_MILLION_UPDATES = 0.124
"""The `updates` table with its index, per million rows (PostgreSQL 15, measured)."""
BASE_GB = 0.05
"""People, accounts, the schema and PostgreSQL's own overhead for a small bot."""
HEROKU_DB = {
    "heroku.postgres_essential_0": ("Essential-0", 1.0),
    "heroku.postgres_essential_1": ("Essential-1", 10.0),
}
"""Name and storage (GB) of the Postgres plans; the storage is assumed (unconfirmed)."""


@dataclass(frozen=True, slots=True)
class Workload:
    updates: float
    """Updates a month."""
    ms: float = 30.0
    """Average handling time of one update, in milliseconds (Lambda bills it)."""
    memory_mb: int = 256
    """Lambda's memory setting; also what one worker process needs."""
    peak: float = 1.0
    """Updates a second at the busiest moment."""
    db_gb: float | None = None
    """The database's size; None: what `portabot maintain` keeps for this volume (`database_gb`)."""
    free_tier: bool = True
    """Count AWS's always-free allowance (a new or otherwise idle account)."""
    throughput: float = 1000.0
    """Updates a second one vCPU sustains (a dyno counts as one): a third of what one worker
    answered on PostgreSQL in the benchmark (3,200/s, bench/results/), leaving room for a slower
    CPU and a database across a network; `--from-bench` takes the measured figure."""
    init_ms: float = 500.0
    """A Lambda cold start's INIT phase, billed since 2025-08-01."""
    lambda_db_usd: float | None = None
    """A monthly figure for Lambda's PostgreSQL; None: Neon's free or Launch plan."""
    workers: int = 2
    """Worker processes per dyno or machine (WEB_CONCURRENCY; gunicorn.conf.py's default)."""
    pool: int = 4
    """Database connections per worker process (DATABASE_POOL_SIZE's default)."""
    egress_kb: float = 2.0
    """Bytes sent out of the host per update, in KB: the API call that carries the reply and
    the webhook's answer, with their HTTP headers and TLS records."""

    @property
    def database_gb(self) -> float:
        """The given size, or the update ids of KEPT_DAYS (measured: 124 MB a million on
        PostgreSQL, indexes included) on top of BASE_GB for everything else."""
        if self.db_gb is not None:
            return self.db_gb
        kept = self.updates * KEPT_DAYS / MONTH_DAYS
        return BASE_GB + kept / 1e6 * GB_PER_MILLION_UPDATES

    @property
    def rate(self) -> float:
        """Average updates a second."""
        return self.updates / SECONDS

    def at(self, updates: float) -> Workload:
        """The same bot with another volume; the peak keeps its ratio to the average."""
        ratio = self.peak / self.rate if self.rate else 1.0
        return replace(self, updates=updates, peak=max(updates / SECONDS * ratio, 1e-9))


@dataclass(slots=True)
class Option:
    target: str
    plan: str
    monthly_usd: float
    includes: str
    caveats: list[str] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)
    """The ids of the prices used (each has its source and date in the price book)."""
    fits: bool = True
    """False when the plan cannot carry the workload (or no longer exists)."""
    machines: int = 1

    @property
    def key(self) -> str:
        return f"{self.target}:{self.plan}"


def awake_fraction(rate: float, idle: float) -> float:
    """The share of the time something that sleeps after `idle` seconds without traffic is up."""
    return 1.0 - math.exp(-rate * idle)


def options(w: Workload, book: PriceBook, *, historical: bool = False) -> list[Option]:
    found = heroku(w, book) + aws_lambda(w, book) + vps(w, book)
    if historical:
        found.append(heroku_free_2022(w, book))
    return found


def cheapest(found: list[Option]) -> Option | None:
    fitting = [o for o in found if o.fits]
    return min(fitting, key=lambda o: o.monthly_usd) if fitting else None


def heroku(w: Workload, book: PriceBook) -> list[Option]:
    database = next(
        (key for key, (_, gb) in HEROKU_DB.items() if w.database_gb <= gb),
        "heroku.postgres_essential_1",
    )
    db_name, db_gb = HEROKU_DB[database]
    db_fits = w.database_gb <= db_gb
    dynos = max(1, math.ceil(w.peak / w.throughput))
    found = []
    plans = (("eco", False), ("basic", False), ("standard_1x", True), ("standard_2x", True))
    for plan, scales in plans:
        key = f"heroku.{plan}"
        count = dynos if scales else 1
        per_dyno = book.value(key) if plan != "eco" else 0.0
        cost = (book.value(key) if plan == "eco" else per_dyno * count) + book.value(database)
        caveats = []
        fits = db_fits
        if not db_fits:
            caveats.append(f"the database ({w.database_gb:g} GB) outgrows the Essential plans")
        if dynos > 1 and not scales:
            fits = False
            caveats.append(f"peak {w.peak:g}/s needs {dynos} dynos; this plan runs one")
        elif count > 1:
            caveats.append(f"{count} dynos for a peak of {w.peak:g} updates/s")
        if plan == "eco":
            awake = awake_fraction(w.rate, ECO_IDLE)
            hours = HOURS * awake
            caveats.append(
                f"asleep {1 - awake:.0%} of the month: the first update after 30 quiet minutes "
                "waits seconds for the dyno to wake (it is re-delivered, not lost)"
            )
            if hours > book.value("heroku.eco_hours"):
                fits = False
                allowance = book.value("heroku.eco_hours")
                caveats.append(f"needs {hours:.0f} dyno-hours; Eco has {allowance:g}")
        size = "2X" if plan == "standard_2x" else "1X"
        found.append(
            Option(
                "heroku",
                plan.replace("_", "-"),
                cost,
                f"{count} {size} web dyno{'s' if count > 1 else ''}, Postgres {db_name}",
                caveats,
                [key, database] + (["heroku.eco_hours"] if plan == "eco" else []),
                fits,
                count,
            )
        )
    return found


def lambda_database(w: Workload, book: PriceBook) -> tuple[float, str, list[str]]:
    """Cost, description and price ids of Lambda's PostgreSQL (Neon unless the user gave one)."""
    if w.lambda_db_usd is not None:
        return w.lambda_db_usd, f"your PostgreSQL at ${w.lambda_db_usd:g}", []
    cu_hours = HOURS * awake_fraction(w.rate, NEON_IDLE) * NEON_MIN_CU
    if cu_hours <= book.value("neon.free_cu_hours") and w.database_gb <= 0.5:
        return 0.0, f"Neon free ({cu_hours:.0f} of 100 CU-hours)", ["neon.free_cu_hours"]
    cost = cu_hours * book.value("neon.cu_hour") + w.database_gb * book.value("neon.gb_month")
    return (
        cost,
        f"Neon Launch ({cu_hours:.0f} CU-hours, {w.database_gb:g} GB)",
        [
            "neon.cu_hour",
            "neon.gb_month",
        ],
    )


def cold_starts(w: Workload) -> float:
    """New containers a month: after every idle gap longer than LAMBDA_IDLE, and at least every
    CONTAINER_LIFETIME for each container the peak keeps busy (no more than one per update)."""
    if not w.updates:
        return 0.0
    after_gaps = w.updates * math.exp(-w.rate * LAMBDA_IDLE)
    busy = max(1, math.ceil(w.peak * w.ms / 1000))
    recycled = HOURS * 3600 / CONTAINER_LIFETIME * busy
    return min(w.updates, max(after_gaps, recycled))


def lambda_compute(w: Workload, book: PriceBook, arch: str) -> tuple[float, float, float]:
    """(requests cost, duration cost, cold starts a month) for one architecture."""
    gb = w.memory_mb / 1024
    cold = cold_starts(w)
    gb_seconds = gb * (w.updates * w.ms + cold * w.init_ms) / 1000
    requests = w.updates
    if w.free_tier:
        requests = max(0.0, requests - book.value("lambda.free_requests"))
        gb_seconds = max(0.0, gb_seconds - book.value("lambda.free_gb_seconds"))
    return (
        requests / 1e6 * book.value("lambda.requests"),
        gb_seconds * book.value(f"lambda.gb_second_{arch}"),
        cold,
    )


def aws_lambda(w: Workload, book: PriceBook) -> list[Option]:
    db_cost, db_text, db_prices = lambda_database(w, book)
    found = []
    for arch, front in (
        ("arm64", "function_url"),
        ("x86_64", "function_url"),
        ("arm64", "api_gateway_http"),
        ("arm64", "api_gateway_rest"),
    ):
        requests, duration, cold = lambda_compute(w, book, arch)
        front_cost = w.updates / 1e6 * book.value(f"lambda.{front}")
        caveats = [
            f"about {cold:,.0f} cold starts a month, each {w.init_ms:g} ms before the first reply"
        ]
        if w.free_tier:
            caveats.append("counts the always-free allowance (1M requests, 400,000 GB-s)")
        found.append(
            Option(
                "lambda",
                f"{arch}+{front.replace('api_gateway_', 'apigw-').replace('_', '-')}",
                requests + duration + front_cost + db_cost,
                f"{w.memory_mb} MB, {w.ms:g} ms per update; {db_text}",
                caveats,
                [
                    "lambda.requests",
                    f"lambda.gb_second_{arch}",
                    f"lambda.{front}",
                    *(["lambda.free_requests", "lambda.free_gb_seconds"] if w.free_tier else []),
                    *db_prices,
                ],
            )
        )
    return found


VPS_OFFERS = {
    "vps.hetzner_cx23": ("hetzner-cx23", 2),
    "vps.digitalocean_512": ("digitalocean-512mb", 1),
    "vps.digitalocean_1g": ("digitalocean-1gb", 1),
}
"""Price id: (plan name, vCPUs)."""


def vps(w: Workload, book: PriceBook) -> list[Option]:
    found = []
    for key, (plan, vcpus) in VPS_OFFERS.items():
        machines = max(1, math.ceil(w.peak / (w.throughput * vcpus)))
        caveats = []
        if machines == 1:
            storage = "SQLite (or PostgreSQL) on the machine"
        else:
            machines += 1  # several app machines share a PostgreSQL on a machine of its own
            storage = "PostgreSQL on one more machine"
            caveats.append(f"{machines - 1} machines for a peak of {w.peak:g} updates/s")
        caveats.append("you keep the system up to date and take the backups")
        found.append(
            Option(
                "vps",
                plan,
                machines * book.value(key),
                f"{machines} × {vcpus} vCPU; {storage}",
                caveats,
                [key] + ([f"fx.{book[key].currency}"] if book[key].currency != "USD" else []),
                machines=machines,
            )
        )
    return found


def heroku_free_2022(w: Workload, book: PriceBook) -> Option:
    return Option(
        "heroku",
        "free-2022 (ended)",
        0.0,
        "550–1,000 dyno-hours, Postgres hobby-dev (10,000 rows)",
        ["ended on 2022-11-28: shown for comparison with the article, not on offer"],
        ["heroku.free_2022"],
        fits=False,
    )


def best_per_target(w: Workload, book: PriceBook) -> dict[str, float]:
    best: dict[str, float] = {}
    for option in options(w, book):
        if option.fits:
            best[option.target] = min(best.get(option.target, math.inf), option.monthly_usd)
    return best


def break_evens(
    w: Workload, book: PriceBook, low: float = 1e3, high: float = 1e10
) -> list[tuple[str, str, float]]:
    """(cheaper below, cheaper above, monthly updates) where one target's cheapest plan stops
    being cheaper than another's, for this bot at other volumes."""
    grid = [low * (high / low) ** (i / 120) for i in range(121)]
    costs = [best_per_target(w.at(v), book) for v in grid]
    found = []
    targets = sorted({t for c in costs for t in c})
    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            for k in range(len(grid) - 1):
                d0 = costs[k].get(a, math.inf) - costs[k].get(b, math.inf)
                d1 = costs[k + 1].get(a, math.inf) - costs[k + 1].get(b, math.inf)
                if math.isfinite(d0) and math.isfinite(d1) and (d0 < 0) != (d1 < 0) and d0 != d1:
                    volume = bisect(w, book, a, b, grid[k], grid[k + 1])
                    below, above = (a, b) if d0 < 0 else (b, a)
                    found.append((below, above, volume))
    return sorted(found, key=lambda f: f[2])


def bisect(w: Workload, book: PriceBook, a: str, b: str, lo: float, hi: float) -> float:
    def gap(v: float) -> float:
        best = best_per_target(w.at(v), book)
        return best[a] - best[b]

    sign = gap(lo) < 0
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if (gap(mid) < 0) == sign:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def volume_grid(low: float = 1e3, high: float = 1e9, points: int = 61) -> list[float]:
    """Monthly update counts, evenly spaced on a log scale."""
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


def curves(w: Workload, book: PriceBook, volumes: list[float]) -> dict[str, list[float | None]]:
    """Each option's monthly cost at each volume (None where it cannot carry the load)."""
    result: dict[str, list[float | None]] = {}
    for volume in volumes:
        for option in options(w.at(volume), book):
            result.setdefault(option.key, []).append(option.monthly_usd if option.fits else None)
    return result
