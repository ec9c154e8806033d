"""Monthly cost of hosting one bot's workload on Heroku, AWS Lambda and a VPS.

Traffic is taken as evenly random (Poisson) over a 730-hour month: from it follow how long an
Eco dyno or a Neon database stays awake and how many Lambda invocations start a new container.
Every option is priced as a list of charges (each from the price book), and checked against what
its plan can carry: the database's storage and connections (counted as `portabot check
--target` counts them, `portabot.capacity`), the memory of a dyno or machine, Lambda's
concurrency. An option that needs more moves to the next plan up, or says why it does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from portabot.capacity import DEFAULT_INSTANCES, DEFAULT_POOL_SIZE, DEFAULT_WORKERS, connections
from portabot.costs.prices import PriceBook

HOURS = 730.0
"""Hours in an average month, as the hosts bill them."""
SECONDS = HOURS * 3600
MONTH_DAYS = HOURS / 24
ECO_IDLE = 30 * 60.0
"""An Eco web dyno sleeps after 30 minutes without a request."""
NEON_IDLE = 5 * 60.0
"""Neon suspends compute after 5 minutes without a query."""
NEON_MIN_CU = 0.25
NEON_UPDATES_PER_CU = 2000.0
"""Updates a second one Neon compute unit (1 vCPU) carries: an assumption, a third of what the
benchmark's PostgreSQL did beside its worker on a 2-core machine."""
NEON_RESERVED_CONNECTIONS = 7
"""Of a Neon compute's max_connections, what Neon keeps for itself."""
NEON_WAKE_S = 0.5
"""Neon's compute wakes in a few hundred milliseconds (Neon's docs): added to a first reply."""
NEON_KB_PER_UPDATE = 1.0
"""What Neon sends to Lambda per update (the person's row, the statements' answers): assumed."""
LAMBDA_IDLE = 10 * 60.0
"""How long an idle Lambda container is kept: not published; observed to be minutes."""
CONTAINER_LIFETIME = 2 * 3600.0
"""How long a busy container lives before Lambda replaces it: not published; observed hours."""
TICKS = HOURS * 60
"""The SAM template's `Tick` rule: what is due runs every minute (one invocation each)."""
TICK_MS = 20.0
"""A tick that finds little to do: a claim and an outbox query (assumed)."""
MAINTAINS = HOURS
"""The template's hourly `portabot maintain` (one invocation each)."""
MAINTAIN_MS = 200.0
MAINTAIN_AWAKE = NEON_IDLE / 3600
"""Each hourly maintenance run keeps a sleeping Neon awake for its idle timeout."""
LOG_RETENTION_DAYS = 14
"""The SAM template's LogRetentionDays default: logs kept two weeks, then deleted."""
KEPT_DAYS = 7.0
"""How long `portabot maintain` keeps update ids by default (KEEP_UPDATES_DAYS)."""
GB_PER_MILLION_UPDATES = 0.124
"""The `updates` table with its index, per million rows (PostgreSQL 15, measured)."""
BASE_GB = 0.05
"""People, accounts, the schema and PostgreSQL's own overhead for a small bot."""
VPS_SYSTEM_MB = 200
"""What Debian, systemd and Caddy take of a machine's memory before the workers (assumed)."""
HEROKU_BANDWIDTH_TB = 2.0
"""Heroku's soft limit on an app's network traffic a month."""


@dataclass(frozen=True, slots=True)
class Workload:
    updates: float
    """Updates a month."""
    ms: float = 30.0
    """Average handling time of one update, in milliseconds (Lambda bills it)."""
    memory_mb: int = 256
    """Lambda's memory setting; also what one worker process may use on a dyno or machine."""
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
    workers: int = DEFAULT_WORKERS
    """Worker processes per dyno or machine (WEB_CONCURRENCY; gunicorn.conf.py's default)."""
    pool: int = DEFAULT_POOL_SIZE
    """Database connections per worker process (DATABASE_POOL_SIZE's default)."""
    egress_kb: float = 2.0
    """Bytes sent out of the host per update, in KB: the API call that carries the reply and
    the webhook's answer, with their HTTP headers and TLS records."""
    tick: bool = True
    """Lambda runs what is due every minute (the template's Tick=on), which also keeps a
    scale-to-zero database awake."""

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

    @property
    def egress_gb(self) -> float:
        return self.updates * self.egress_kb / 1e6

    def at(self, updates: float) -> Workload:
        """The same bot with another volume; the peak keeps its ratio to the average."""
        ratio = self.peak / self.rate if self.rate else 1.0
        return replace(self, updates=updates, peak=max(updates / SECONDS * ratio, 1e-9))


@dataclass(frozen=True, slots=True)
class Charge:
    """One line of an option's bill."""

    what: str
    """What is billed, as a sentence names it: "Neon's compute", "CloudWatch Logs"."""
    usd: float
    detail: str = ""
    """How it was worked out: "182 CU-hours × $0.106"."""


@dataclass(slots=True)
class Option:
    target: str
    plan: str
    charges: list[Charge]
    includes: str
    caveats: list[str] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)
    """The ids of the prices used (each has its source and date in the price book)."""
    fits: bool = True
    """False when the plan cannot carry the workload (or no longer exists)."""
    why: str = ""
    """Why it does not fit, in a few words; empty when it fits."""
    machines: int = 1
    latency: str = ""
    """What the first reply may wait for on this option (a sleeping dyno, a cold start)."""

    @property
    def key(self) -> str:
        return f"{self.target}:{self.plan}"

    @property
    def monthly_usd(self) -> float:
        return sum(charge.usd for charge in self.charges)

    def refuse(self, why: str) -> None:
        """Mark the option as unable to carry the workload; the first reason is the one kept."""
        if self.fits:
            self.fits, self.why = False, why


NOT_INCLUDED = (
    "your time: keeping a VPS's system up to date, its backups, watching any host",
    "taxes (VAT or sales tax) and support plans",
    "the region: AWS at us-east-1 prices, Hetzner in Germany and Finland, DigitalOcean in New York",
    "the database's speed: Heroku's Essential plans and Neon's smallest compute share a server",
)
"""What the numbers leave out, printed under every comparison."""


def awake_fraction(rate: float, idle: float) -> float:
    """The share of the time something that sleeps after `idle` seconds without traffic is up."""
    return 1.0 - math.exp(-rate * idle)


def options(w: Workload, book: PriceBook, *, historical: bool = False) -> list[Option]:
    found = heroku(w, book) + aws_lambda(w, book) + vps(w, book)
    if historical:
        found.append(heroku_free_2022(w, book))
    for option in found:  # the exchange rates a price in another currency was converted at
        rates = {f"fx.{book[key].currency}" for key in option.prices} - {"fx.USD", "fx."}
        option.prices += sorted(rates)
    return found


def cheapest(found: list[Option]) -> Option | None:
    fitting = [o for o in found if o.fits]
    return min(fitting, key=lambda o: o.monthly_usd) if fitting else None


def per_second(rate: float) -> str:
    """A rate as a person reads it: 3,805/s, 2.5/s, 0.0381/s."""
    return f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.3g}/s"


def usd(value: float) -> str:
    return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"


# Heroku ----------------------------------------------------------------------------------------

HEROKU_DYNOS = {
    "eco": ("Eco", False, 1),
    "basic": ("Basic", False, 1),
    "standard_1x": ("Standard-1X", True, 1),
    "standard_2x": ("Standard-2X", True, 1),
    "performance_m": ("Performance-M", True, 2),
    "performance_l": ("Performance-L", True, 8),
}
"""Price id suffix: (name, whether more than one web dyno may run, vCPUs its workers use). A
Standard-2X has twice a 1X's memory and CPU share, counted here as its memory only."""
HEROKU_DATABASES = (
    "essential_0",
    "essential_1",
    "essential_2",
    "standard_0",
    "standard_2",
    "standard_3",
    "standard_4",
)
"""Heroku Postgres plans from the smallest; each has a price, `_gb` and `_connections`."""


def fitting_workers(w: Workload, vcpus: int, ram: float) -> int:
    """Worker processes a dyno or machine runs: as asked, or one per vCPU if it has more
    (WEB_CONCURRENCY set to match), but no more than its memory holds; 0: not even one."""
    return min(max(w.workers, vcpus), int(ram // w.memory_mb))


def workers_caveat(w: Workload, workers: int, where: str) -> str:
    if workers > w.workers:
        return f"WEB_CONCURRENCY={workers}: a worker for each vCPU"
    return (
        f"WEB_CONCURRENCY={workers}: {workers} worker{'s' if workers > 1 else ''} of "
        f"{w.memory_mb:,} MB fit {where}, not {w.workers}"
    )


def plan_name(suffix: str) -> str:
    """essential_0 → Essential-0."""
    kind, _, size = suffix.partition("_")
    return f"{kind.title()}-{size.upper()}"


def heroku_database(book: PriceBook, gb: float, needed: int) -> tuple[str | None, list[str]]:
    """The smallest Heroku Postgres plan with the storage and the connections, and the price
    ids looked at (every plan up to it)."""
    looked = []
    for suffix in HEROKU_DATABASES:
        key = f"heroku.postgres_{suffix}"
        looked += [key, f"{key}_gb", f"{key}_connections"]
        if gb <= book.value(f"{key}_gb") and needed <= book.value(f"{key}_connections"):
            return suffix, looked
    return None, looked


def heroku(w: Workload, book: PriceBook) -> list[Option]:
    return [heroku_plan(w, book, plan) for plan in HEROKU_DYNOS]


def heroku_plan(w: Workload, book: PriceBook, plan: str) -> Option:
    name, scales, vcpus = HEROKU_DYNOS[plan]
    key = f"heroku.{plan}"
    ram = book.value(f"{key}_mb")
    workers = fitting_workers(w, vcpus, ram)
    dynos = max(1, math.ceil(w.peak / (w.throughput * max(1, min(workers, vcpus)))))
    count = dynos if scales else 1
    opened = connections("heroku", count, workers=max(workers, 1), pool=w.pool)
    database, looked = heroku_database(book, w.database_gb, opened.needed)
    charges = []
    if plan == "eco":
        charges.append(Charge("Eco dyno hours", book.value(key), "$5 for the account"))
    else:
        per = book.value(key)
        charges.append(Charge(f"{name} dynos", per * count, f"{count} × {usd(per)}"))
    db_text = "no Heroku Postgres plan"
    if database is not None:
        db_key = f"heroku.postgres_{database}"
        db_text = f"Postgres {plan_name(database)}"
        charges.append(Charge("Heroku Postgres", book.value(db_key), db_text))
    option = Option(
        "heroku",
        plan.replace("_", "-"),
        charges,
        f"{count} {name} web dyno{'s' if count > 1 else ''}, {db_text}",
        prices=[key, f"{key}_mb", *looked],
        machines=count,
        latency=f"always up: a reply waits only for its handling ({w.ms:g} ms)",
    )
    if workers < 1:
        option.refuse(f"a worker needs {w.memory_mb:,} MB; a {name} dyno has {ram:,.0f} MB")
    elif workers != w.workers:
        option.caveats.append(workers_caveat(w, workers, f"a {ram:,.0f} MB dyno"))
    if dynos > 1 and not scales:
        peak = per_second(w.peak)
        option.refuse(f"a peak of {peak} needs {dynos} dynos; {name} runs one web dyno")
    elif count > 1:
        option.caveats.append(f"{count} dynos for a peak of {per_second(w.peak)}")
    if database is None:
        largest = f"heroku.postgres_{HEROKU_DATABASES[-1]}"
        option.refuse(
            f"needs {w.database_gb:,.3g} GB and {opened.needed} connections: more than Heroku "
            f"Postgres {plan_name(HEROKU_DATABASES[-1])} "
            f"({book.value(largest + '_gb'):,.0f} GB, {book.value(largest + '_connections'):,.0f})"
        )
    else:
        limit = int(book.value(f"heroku.postgres_{database}_connections"))
        by_storage, _ = heroku_database(book, w.database_gb, 0)
        if database != by_storage or opened.needed > 0.75 * limit:  # the connections count
            option.caveats.append(opened.sentence(limit))
    if w.egress_gb > HEROKU_BANDWIDTH_TB * 1000:
        option.caveats.append(
            f"{w.egress_gb / 1000:,.3g} TB out a month: above Heroku's soft limit of "
            f"{HEROKU_BANDWIDTH_TB:g} TB an app"
        )
    if plan == "eco":
        awake = awake_fraction(w.rate, ECO_IDLE)
        hours = HOURS * awake
        allowance = book.value("heroku.eco_hours")
        option.prices.append("heroku.eco_hours")
        option.caveats.append(
            f"uses {hours:,.0f} of the account's {allowance:,.0f} Eco hours, which its other "
            "Eco apps share; timers wait while the dyno sleeps"
        )
        if awake < 0.995:
            option.latency = (
                f"asleep {1 - awake:.0%} of the month: the first update after 30 quiet minutes "
                "waits seconds for the dyno to wake (it is re-delivered, not lost)"
            )
    return option


# AWS Lambda ------------------------------------------------------------------------------------


def neon_awake(w: Workload) -> float:
    """The share of the month Neon's compute is up: after each update for its idle timeout,
    all the time when the minute's tick queries it, and after each hourly maintenance run."""
    if w.tick:
        return 1.0
    traffic = awake_fraction(w.rate, NEON_IDLE)
    return traffic + (1 - traffic) * MAINTAIN_AWAKE


def lambda_database(w: Workload, book: PriceBook) -> tuple[list[Charge], str, list[str], str]:
    """Charges, description, price ids and a reason it cannot carry the peak ("" if it can) of
    Lambda's PostgreSQL: Neon unless the user priced their own."""
    if w.lambda_db_usd is not None:
        charge = Charge("your PostgreSQL", w.lambda_db_usd, "as given")
        return [charge], f"your PostgreSQL at {usd(w.lambda_db_usd)}", [], ""
    awake = neon_awake(w)
    cu = max(NEON_MIN_CU, w.rate / NEON_UPDATES_PER_CU)
    cu_hours = HOURS * awake * cu
    peak_cu = w.peak / NEON_UPDATES_PER_CU
    too_busy = ""
    if peak_cu > book.value("neon.max_cu"):
        too_busy = (
            f"a peak of {per_second(w.peak)} needs {peak_cu:,.3g} Neon compute units; "
            f"Launch autoscales to {book.value('neon.max_cu'):g}"
        )
    egress = w.updates * NEON_KB_PER_UPDATE / 1e6
    free = (
        cu_hours <= book.value("neon.free_cu_hours")
        and w.database_gb <= 0.5
        and egress <= book.value("neon.free_egress_gb")
    )
    ids = ["neon.free_cu_hours", "neon.free_egress_gb", "neon.max_cu", "neon.cu_connections"]
    if free:
        text = f"Neon free ({cu_hours:,.0f} of {book.value('neon.free_cu_hours'):g} CU-hours)"
        return [Charge("Neon's compute", 0.0, text)], text, ids, too_busy
    over = max(0.0, egress - book.value("neon.egress_free"))
    charges = [
        Charge(
            "Neon's compute",
            cu_hours * book.value("neon.cu_hour"),
            f"{cu_hours:,.0f} CU-hours × ${book.value('neon.cu_hour'):g}",
        ),
        Charge(
            "Neon's storage",
            w.database_gb * book.value("neon.gb_month"),
            f"{w.database_gb:,.3g} GB × ${book.value('neon.gb_month'):g}",
        ),
        Charge(
            "Neon's data transfer",
            over * book.value("neon.egress_gb"),
            f"{egress:,.0f} GB, {book.value('neon.egress_free'):g} GB included",
        ),
    ]
    least = book.value("neon.launch_minimum")
    used = sum(c.usd for c in charges)
    if used < least:
        charges.append(Charge("Neon's monthly minimum", least - used, f"Launch bills {usd(least)}"))
    ids += ["neon.cu_hour", "neon.gb_month", "neon.egress_free", "neon.egress_gb"]
    ids.append("neon.launch_minimum")
    text = f"Neon Launch ({cu_hours:,.0f} CU-hours, {w.database_gb:,.3g} GB)"
    return charges, text, ids, too_busy


def neon_connections(w: Workload, book: PriceBook) -> float:
    """The connections Neon's compute takes at the peak (max_connections grows with its size,
    less the 7 Neon keeps); unlimited for a PostgreSQL the user priced."""
    if w.lambda_db_usd is not None:
        return math.inf
    cu = max(NEON_MIN_CU, w.peak / NEON_UPDATES_PER_CU)
    return book.value("neon.cu_connections") * cu - NEON_RESERVED_CONNECTIONS


def cold_starts(w: Workload) -> float:
    """New containers a month: after every idle gap longer than LAMBDA_IDLE (none while the
    minute's tick keeps one warm), and at least every CONTAINER_LIFETIME for each container the
    peak keeps busy (no more than one per update)."""
    if not w.updates:
        return 0.0
    after_gaps = 0.0 if w.tick else w.updates * math.exp(-w.rate * LAMBDA_IDLE)
    recycled = SECONDS / CONTAINER_LIFETIME * concurrency(w)
    return min(w.updates, max(after_gaps, recycled))


def concurrency(w: Workload) -> int:
    """Containers busy at once at the peak (Little's law: arrivals × time in the system)."""
    return max(1, math.ceil(w.peak * w.ms / 1000))


def invocations(w: Workload) -> float:
    """Updates and the template's schedules: the minute's tick, the hourly maintenance."""
    return w.updates + (TICKS if w.tick else 0.0) + MAINTAINS


def lambda_compute(w: Workload, book: PriceBook, arch: str) -> list[Charge]:
    """Requests and duration for one architecture, the free allowance taken off."""
    gb = w.memory_mb / 1024
    cold = cold_starts(w)
    ms = (
        w.updates * w.ms
        + cold * w.init_ms
        + (TICKS * TICK_MS if w.tick else 0)
        + (MAINTAINS * MAINTAIN_MS)
    )
    gb_seconds = gb * ms / 1000
    requests = invocations(w)
    if w.free_tier:
        requests = max(0.0, requests - book.value("lambda.free_requests"))
        gb_seconds = max(0.0, gb_seconds - book.value("lambda.free_gb_seconds"))
    rate = book.value(f"lambda.gb_second_{arch}")
    return [
        Charge(
            "Lambda's requests",
            requests / 1e6 * book.value("lambda.requests"),
            f"{requests:,.0f} billed",
        ),
        Charge("Lambda's duration", gb_seconds * rate, f"{gb_seconds:,.0f} GB-s billed"),
    ]


def lambda_logs(w: Workload, book: PriceBook) -> Charge:
    """CloudWatch Logs: Lambda's START, END and REPORT lines for every invocation, ingested and
    kept LOG_RETENTION_DAYS (stored size taken as ingested: an upper bound)."""
    ingested = invocations(w) * book.value("lambda.report_bytes") / 1e9
    stored = ingested * LOG_RETENTION_DAYS / MONTH_DAYS
    free = book.value("cloudwatch.logs_free") if w.free_tier else 0.0  # ingested and stored
    cost = max(0.0, ingested - free) * book.value("cloudwatch.logs_ingest") + max(
        0.0, stored - free
    ) * book.value("cloudwatch.logs_storage")
    return Charge(
        "CloudWatch Logs", cost, f"{ingested:,.2f} GB a month, kept {LOG_RETENTION_DAYS} days"
    )


def transfer_out(w: Workload, book: PriceBook) -> Charge:
    free = book.value("aws.transfer_out_free")
    billed = max(0.0, w.egress_gb - free)
    return Charge(
        "data transfer out",
        billed * book.value("aws.transfer_out"),
        f"{w.egress_gb:,.0f} GB, {free:g} GB free",
    )


LAMBDA_SETUPS = (
    ("arm64", "function_url"),
    ("x86_64", "function_url"),
    ("arm64", "api_gateway_http"),
    ("arm64", "api_gateway_rest"),
)


def aws_lambda(w: Workload, book: PriceBook) -> list[Option]:
    db_charges, db_text, db_prices, too_busy = lambda_database(w, book)
    logs = lambda_logs(w, book)
    out = transfer_out(w, book)
    busy = concurrency(w)
    reserved = DEFAULT_INSTANCES["lambda"]
    quota = book.value("lambda.account_concurrency")
    cold = cold_starts(w)
    latency = f"about {cold:,.0f} cold starts a month, each {w.init_ms:g} ms before its reply"
    awake = neon_awake(w) if w.lambda_db_usd is None else 1.0
    if awake < 0.995:
        latency += (
            f"; Neon asleep {1 - awake:.0%} of the month, its compute wakes in about "
            f"{NEON_WAKE_S:g} s"
        )
    found = []
    for arch, front in LAMBDA_SETUPS:
        front_cost = w.updates / 1e6 * book.value(f"lambda.{front}")
        charges = [*lambda_compute(w, book, arch), logs, out, *db_charges]
        if front != "function_url":
            charges.insert(2, Charge("API Gateway", front_cost, f"{w.updates:,.0f} requests"))
        option = Option(
            "lambda",
            f"{arch}+{front.replace('api_gateway_', 'apigw-').replace('_', '-')}",
            charges,
            f"{w.memory_mb} MB, {w.ms:g} ms per update; {db_text}",
            prices=[
                "lambda.requests",
                f"lambda.gb_second_{arch}",
                f"lambda.{front}",
                "lambda.report_bytes",
                "cloudwatch.logs_ingest",
                "cloudwatch.logs_storage",
                "aws.transfer_out",
                "aws.transfer_out_free",
                "lambda.account_concurrency",
                *(
                    ["lambda.free_requests", "lambda.free_gb_seconds", "cloudwatch.logs_free"]
                    if w.free_tier
                    else []
                ),
                *db_prices,
            ],
            latency=latency,
        )
        if w.free_tier:
            option.caveats.append("counts the always-free allowance (1M requests, 400,000 GB-s)")
        if w.tick:
            option.caveats.append(
                "the minute's Tick keeps the database awake; Tick=off saves that, but then "
                "nothing wakes a timer or runs an outside call"
            )
        if busy > quota:
            option.caveats.append(
                f"{busy:,} containers at once at the peak: above the account's default quota "
                f"of {quota:,.0f} (ask AWS for more)"
            )
        elif busy > reserved:
            option.caveats.append(
                f"{busy:,} containers at once at the peak: set the template's "
                f"ReservedConcurrency to {busy:,} or more (it reserves {reserved})"
            )
        if busy > neon_connections(w, book):
            option.caveats.append(
                f"{busy:,} connections at the peak, more than Neon's compute takes: use its "
                "pooled connection string (-pooler in the host name)"
            )
        if too_busy:
            option.refuse(too_busy)
        found.append(option)
    return found


# VPS -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provider:
    included: str
    """The price id suffix of the traffic a machine includes, and its unit in GB."""
    included_gb: float
    overage: str
    """The price id of traffic beyond it, and that price's unit in GB."""
    overage_gb: float
    ipv4: str
    balancer: str


PROVIDERS = {
    "hetzner": Provider(
        "_traffic_tb",
        1000.0,
        "vps.hetzner_traffic_tb",
        1000.0,
        "vps.hetzner_ipv4",
        "vps.hetzner_lb",
    ),
    "digitalocean": Provider(
        "_transfer_gb",
        1.0,
        "vps.digitalocean_transfer_gb",
        1.0,
        "vps.digitalocean_ipv4",
        "vps.digitalocean_lb",
    ),
}
VPS_OFFERS = {
    "vps.hetzner_cx23": ("hetzner-cx23", "hetzner"),
    "vps.hetzner_cx33": ("hetzner-cx33", "hetzner"),
    "vps.digitalocean_512": ("digitalocean-512mb", "digitalocean"),
    "vps.digitalocean_1g": ("digitalocean-1gb", "digitalocean"),
    "vps.digitalocean_4g": ("digitalocean-4gb", "digitalocean"),
}
"""Price id: (plan name, provider); each has `_mb`, `_vcpus` and its provider's traffic entry."""


def vps(w: Workload, book: PriceBook) -> list[Option]:
    return [vps_offer(w, book, key) for key in VPS_OFFERS]


def vps_offer(w: Workload, book: PriceBook, key: str) -> Option:
    plan, provider_name = VPS_OFFERS[key]
    provider = PROVIDERS[provider_name]
    ram = book.value(f"{key}_mb")
    vcpus = int(book.value(f"{key}_vcpus"))
    workers = fitting_workers(w, vcpus, ram - VPS_SYSTEM_MB)
    serving = max(1, math.ceil(w.peak / (w.throughput * max(1, min(workers, vcpus)))))
    machines = serving + (1 if serving > 1 else 0)  # several share PostgreSQL on one more
    price = book.value(key)
    charges = [Charge("machines", machines * price, f"{machines} × {usd(price)}")]
    ids = [key, f"{key}_mb", f"{key}_vcpus", f"{key}{provider.included}", provider.overage]
    ids.append(provider.ipv4)
    ipv4 = book.value(provider.ipv4)
    if ipv4:
        charges.append(Charge("public IPv4", machines * ipv4, f"{machines} × {usd(ipv4)}"))
    included = book.value(f"{key}{provider.included}") * provider.included_gb * machines
    over = max(0.0, w.egress_gb - included)
    charges.append(
        Charge(
            "traffic",
            over / provider.overage_gb * book.value(provider.overage),
            f"{w.egress_gb:,.0f} GB, {included:,.0f} GB included",
        )
    )
    caveats = []
    if serving > 1:
        charges.append(Charge("load balancer", book.value(provider.balancer), provider_name))
        ids.append(provider.balancer)
        storage = "PostgreSQL on one more machine, a load balancer in front"
        caveats.append(f"{serving} machines for a peak of {per_second(w.peak)}")
        opened = connections("vps", serving, workers=max(workers, 1), pool=w.pool)
        if opened.needed > 100:
            caveats.append(opened.sentence(100) + ": raise PostgreSQL's max_connections")
    else:
        storage = "SQLite (or PostgreSQL) on the machine"
    caveats.append("you keep the system up to date and take the backups")
    option = Option(
        "vps",
        plan,
        charges,
        f"{machines} × {vcpus} vCPU, {ram:,.0f} MB; {storage}",
        caveats,
        ids,
        machines=machines,
        latency=f"always up: a reply waits only for its handling ({w.ms:g} ms)",
    )
    if workers < 1:
        option.refuse(
            f"a worker needs {w.memory_mb:,} MB; the machine has {ram - VPS_SYSTEM_MB:,.0f} MB "
            "beside its system"
        )
    elif workers != w.workers:
        caveats.insert(0, workers_caveat(w, workers, "the machine beside its system"))
    return option


def heroku_free_2022(w: Workload, book: PriceBook) -> Option:
    option = Option(
        "heroku",
        "free-2022 (ended)",
        [Charge("free dyno hours", 0.0)],
        "550–1,000 dyno-hours, Postgres hobby-dev (10,000 rows)",
        ["ended on 2022-11-28: shown for comparison with the article, not on offer"],
        ["heroku.free_2022"],
    )
    option.refuse("Heroku's free plans ended on 2022-11-28")
    return option


# Across volumes --------------------------------------------------------------------------------


def best_per_target(w: Workload, book: PriceBook) -> dict[str, Option]:
    """Each target's cheapest option that fits."""
    best: dict[str, Option] = {}
    for option in options(w, book):
        if option.fits and (
            option.target not in best or option.monthly_usd < best[option.target].monthly_usd
        ):
            best[option.target] = option
    return best


def best_costs(w: Workload, book: PriceBook) -> dict[str, float]:
    return {t: o.monthly_usd for t, o in best_per_target(w, book).items()}


@dataclass(frozen=True, slots=True)
class BreakEven:
    cheaper_below: str
    cheaper_above: str
    updates: float
    why: str
    """What changes there, in words: "Neon's free compute runs out"."""

    @property
    def sentence(self) -> str:
        return (
            f"{TARGET_NAMES[self.cheaper_below]} is cheaper below {self.updates:,.0f} updates a "
            f"month, {TARGET_NAMES[self.cheaper_above]} above: {self.why}"
        )


TARGET_NAMES = {"heroku": "Heroku", "lambda": "Lambda", "vps": "a VPS"}


def break_evens(
    w: Workload, book: PriceBook, low: float = 1e3, high: float = 1e10
) -> list[BreakEven]:
    """Where one target's cheapest plan stops being cheaper than another's, for this bot at
    other volumes, each with the reason in words."""
    grid = [low * (high / low) ** (i / 120) for i in range(121)]
    costs = [best_costs(w.at(v), book) for v in grid]
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
                    found.append(BreakEven(below, above, volume, explain(w, book, below, volume)))
    return sorted(found, key=lambda f: f.updates)


def explain(w: Workload, book: PriceBook, below: str, volume: float) -> str:
    """Why `below` stops being the cheaper one at `volume`: a charge that starts there (a free
    allowance running out), another plan or more machines, or the charges that grow fastest."""
    before = best_per_target(w.at(volume / 1.01), book)[below]
    after = best_per_target(w.at(volume * 1.01), book)[below]
    was = {c.what: c.usd for c in before.charges}
    started = [c for c in after.charges if c.usd > 0.005 and was.get(c.what, 0.0) <= 0.005]
    if started:
        first = max(started, key=lambda c: c.usd)
        return f"{first.what} starts to cost ({first.detail})"
    if after.key != before.key:
        return f"{after.key} becomes {TARGET_NAMES[below]}'s cheapest ({after.includes})"
    if after.machines != before.machines:
        unit = "dynos" if below == "heroku" else "machines"
        return f"{TARGET_NAMES[below]} needs {after.machines} {unit}"
    new = [part for part in after.includes.split(", ") if part not in before.includes]
    if new and below == "heroku":
        return f"Heroku needs {new[-1]}"
    growth = sorted(after.charges, key=lambda c: c.usd - was.get(c.what, 0.0), reverse=True)
    return f"{' and '.join(c.what for c in growth[:2])} grow with every update"


def bisect(w: Workload, book: PriceBook, a: str, b: str, lo: float, hi: float) -> float:
    def gap(v: float) -> float:
        best = best_costs(w.at(v), book)
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


def endings(w: Workload, book: PriceBook, volumes: list[float]) -> dict[str, tuple[float, str]]:
    """For each option whose line stops within `volumes`: the first volume it no longer fits at
    after fitting below it, and why."""
    ended: dict[str, tuple[float, str]] = {}
    fitted: set[str] = set()
    for volume in volumes:
        for option in options(w.at(volume), book):
            if option.fits:
                fitted.add(option.key)
            elif option.key in fitted and option.key not in ended:
                ended[option.key] = (volume, option.why)
    return ended
