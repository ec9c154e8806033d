"""The cost model against worked examples computed by hand from the published prices."""

from __future__ import annotations

import math

import pytest

from portabot.capacity import connections
from portabot.costs.model import (
    HOURS,
    MONTH_DAYS,
    NOT_INCLUDED,
    SECONDS,
    Option,
    Workload,
    awake_fraction,
    break_evens,
    cheapest,
    cold_starts,
    endings,
    neon_awake,
    options,
    volume_grid,
)
from portabot.costs.prices import PriceBook

BOOK = PriceBook.load()
EUR = 1.08
"""The book's assumed rate."""


def bot(updates: float, **given: object) -> Workload:
    """A bot's workload as the command takes it: its peak 10× the average rate."""
    return Workload(updates=updates, peak=updates / SECONDS * 10, **given)  # type: ignore[arg-type]


def priced(w: Workload, key: str) -> Option:
    [option] = [o for o in options(w, BOOK, historical=True) if o.key == key]
    return option


def charge(option: Option, what: str) -> float:
    [found] = [c.usd for c in option.charges if c.what == what]
    return found


def test_lambda_below_the_free_allowance_costs_nothing() -> None:
    # With the minute's tick (43,800) and the hourly maintenance (730): 544,530 requests; their
    # 0.19 GB of log lines and 1 GB out stay inside CloudWatch's 5 GB and AWS's 100 GB.
    w = Workload(updates=500_000, ms=100, memory_mb=512, init_ms=0, lambda_db_usd=0)
    assert priced(w, "lambda:arm64+function-url").monthly_usd == 0
    assert priced(w, "lambda:x86_64+function-url").monthly_usd == 0


@pytest.mark.parametrize(
    ("free_tier", "requests", "arm64", "x86_64"),
    [
        # (5M + 730 maintenance runs − 1M) × $0.20/M; 1 GB × (5M × 0.2 s + 730 × 0.2 s) =
        # 1,000,146 GB-s, less 400,000 free, at each architecture's rate.
        (True, 4_000_730 * 0.2e-6, 600_146 * 0.0000133334, 600_146 * 0.0000166667),
        (False, 5_000_730 * 0.2e-6, 1_000_146 * 0.0000133334, 1_000_146 * 0.0000166667),
    ],
    ids=["across-the-free-allowance", "without-it"],
)
def test_lambda_requests_and_duration_on_both_architectures(
    free_tier: bool, requests: float, arm64: float, x86_64: float
) -> None:
    w = Workload(
        updates=5_000_000,
        ms=200,
        memory_mb=1024,
        init_ms=0,
        free_tier=free_tier,
        lambda_db_usd=0,
        tick=False,
    )
    arm = priced(w, "lambda:arm64+function-url")
    assert charge(arm, "Lambda's requests") == pytest.approx(requests)
    assert charge(arm, "Lambda's duration") == pytest.approx(arm64)
    x86 = priced(w, "lambda:x86_64+function-url")
    assert charge(x86, "Lambda's duration") == pytest.approx(x86_64)
    # API Gateway adds its own price per request: HTTP $1.00/M, REST $3.50/M.
    assert priced(w, "lambda:arm64+apigw-http").monthly_usd == pytest.approx(arm.monthly_usd + 5)
    assert priced(w, "lambda:arm64+apigw-rest").monthly_usd == pytest.approx(arm.monthly_usd + 17.5)


def test_cold_starts_are_billed_for_their_init_time() -> None:
    # 1,000 updates a month arrive about 44 minutes apart: most start a new container.
    w = Workload(updates=1000, ms=100, memory_mb=1024, init_ms=1000, free_tier=False, tick=False)
    cold = cold_starts(w)
    assert cold == pytest.approx(1000 * math.exp(-1000 / (HOURS * 3600) * 600))
    warm = Workload(updates=1000, ms=100, memory_mb=1024, init_ms=0, free_tier=False, tick=False)
    extra = charge(priced(w, "lambda:arm64+function-url"), "Lambda's duration") - charge(
        priced(warm, "lambda:arm64+function-url"), "Lambda's duration"
    )
    assert extra == pytest.approx(cold * 1.0 * 1.0 * 0.0000133334)
    # The minute's tick keeps a container warm: only the recycling of busy containers is left.
    assert cold_starts(Workload(updates=1000)) == pytest.approx(SECONDS / 7200)


def test_100m_updates_on_lambda_pay_for_their_log_lines_and_their_traffic() -> None:
    w = bot(100_000_000)
    option = priced(w, "lambda:arm64+function-url")
    # 100,044,530 invocations × 342 bytes = 34.215 GB ingested, 5 GB free, at $0.50; kept 14
    # days: 34.215 × 14 / 30.42 = 15.75 GB stored, 5 GB-month free, at $0.03.
    ingested = 100_044_530 * 342 / 1e9
    stored = ingested * 14 / MONTH_DAYS
    logs = (ingested - 5) * 0.50 + (stored - 5) * 0.03
    assert charge(option, "CloudWatch Logs") == pytest.approx(logs)
    assert logs == pytest.approx(14.93, abs=0.01)
    # 2 KB out per update: 200 GB, of which 100 GB are free, at $0.09.
    assert charge(option, "data transfer out") == pytest.approx(100 * 0.09)
    # The peak (10× the average: 380/s × 30 ms) keeps 12 containers busy: more than the 10
    # the template reserves.
    assert any("ReservedConcurrency to 12" in c for c in option.caveats)


def test_neon_is_awake_all_month_with_the_tick_and_five_minutes_an_hour_without() -> None:
    w = Workload(updates=1000)
    assert neon_awake(w) == 1.0
    option = priced(w, "lambda:arm64+function-url")
    # 730 hours × 0.25 CU = 182.5 CU-hours: beyond the free plan's 100, at $0.106.
    assert charge(option, "Neon's compute") == pytest.approx(182.5 * 0.106)
    # Without the tick, each hourly maintenance run keeps a sleeping Neon up for 5 minutes, so
    # the free plan's 100 CU-hours (awake 54.8% of the month) end near 6,190 updates, not 6,955.
    edge = 100 / (HOURS * 0.25)
    traffic = (edge - 5 / 60) / (1 - 5 / 60)
    updates = -math.log(1 - traffic) / 300 * SECONDS
    assert updates == pytest.approx(6190, abs=10)
    below = Workload(updates=updates * 0.99, tick=False)
    above = Workload(updates=updates * 1.01, tick=False)
    assert charge(priced(below, "lambda:arm64+function-url"), "Neon's compute") == 0
    assert charge(priced(above, "lambda:arm64+function-url"), "Neon's compute") > 0


def test_neon_scales_with_the_traffic_and_stops_at_its_largest_compute() -> None:
    # 10 billion updates a month: 3,805/s on average, 1.9 CU at 2,000 updates/s a CU.
    w = Workload(updates=1e10)
    cu = 1e10 / SECONDS / 2000
    option = priced(w, "lambda:arm64+function-url")
    assert charge(option, "Neon's compute") == pytest.approx(HOURS * cu * 0.106)
    # 115 containers at a peak of 3,805/s × 30 ms: more than 0.25 CU's 104 − 7 connections, fewer
    # than the 419 × 1.9 − 7 = 790 of the 1.9 CU it scales to for that peak; at 300 ms, 1,142.
    busy = priced(bot(1e9), "lambda:arm64+function-url")
    assert not any("pooled connection string" in c for c in busy.caveats)
    crowded = priced(bot(1e9, ms=300), "lambda:arm64+function-url")
    assert any(c.startswith("1,142 connections at the peak") for c in crowded.caveats)
    # A peak of 40,000/s needs 20 CU; Launch autoscales to 16.
    peak = priced(Workload(updates=1e9, peak=40_000), "lambda:arm64+function-url")
    assert not peak.fits
    assert peak.why == "a peak of 40,000/s needs 20 Neon compute units; Launch autoscales to 16"


def test_an_eco_dyno_with_its_database() -> None:
    # $5 for the account's Eco hours + $5 for Postgres Essential-0.
    busy = Workload(updates=100_000)
    eco = priced(busy, "heroku:eco")
    assert eco.monthly_usd == 10.0
    assert any(
        "of the account's 1,000 Eco hours, which its other Eco apps share" in c for c in eco.caveats
    )
    # 1,000 updates a month: awake 1 − e^(−rate × 1800 s) ≈ 50% of the time.
    quiet = Workload(updates=1000)
    assert awake_fraction(quiet.rate, 1800) == pytest.approx(0.4959, abs=1e-4)
    assert priced(quiet, "heroku:eco").latency.startswith("asleep 50% of the month")
    # Awake all month at a million updates: no word about sleeping.
    assert priced(Workload(updates=1e6), "heroku:eco").latency.startswith("always up")


def test_eco_and_basic_cannot_add_dynos_but_standard_can() -> None:
    w = Workload(updates=10_000_000, peak=500, throughput=200)  # needs 3 dynos
    eco, basic = priced(w, "heroku:eco"), priced(w, "heroku:basic")
    assert not eco.fits and not basic.fits
    assert eco.why == "a peak of 500/s needs 3 dynos; Eco runs one web dyno"
    standard = priced(w, "heroku:standard-1x")
    # 3 dynos × 2 workers × 4 + 1 Scheduler run × 2 + 1 = 27 connections: more than
    # Essential-0's (and Essential-1's) 20, so the database is Essential-2 ($20, 40).
    assert standard.machines == 3 and standard.monthly_usd == 3 * 25 + 20
    assert "3 dynos for a peak of 500/s" in standard.caveats


def test_connections_over_the_plan_s_limit_move_to_the_next_plan_as_check_counts_them() -> None:
    w = Workload(updates=10_000_000, peak=2500)
    standard = priced(w, "heroku:standard-1x")
    opened = connections("heroku", 3)
    assert opened.needed == 27
    assert standard.includes == "3 Standard-1X web dynos, Postgres Essential-2"
    assert opened.sentence(40) in standard.caveats
    # Fewer connections per worker fit the smallest plan again: 3 × 2 × 3 + 2 + 1 = 21 > 20,
    # 3 × 2 × 2 + 2 + 1 = 15 ≤ 20.
    assert (
        "Essential-2"
        in priced(Workload(updates=1e7, peak=2500, pool=3), "heroku:standard-1x").includes
    )
    assert (
        "Essential-0"
        in priced(Workload(updates=1e7, peak=2500, pool=2), "heroku:standard-1x").includes
    )


def test_essential_2_carries_500m_updates_a_month_on_standard_dynos() -> None:
    # A week of update ids at 500M a month: 0.05 + 115 M × 0.124 = 14.3 GB, beyond
    # Essential-1's 10 GB; a peak of 1,902/s needs 2 Standard dynos: 2 × 2 × 4 + 2 + 1 = 19.
    w = bot(500_000_000)
    assert w.database_gb == pytest.approx(0.05 + 500 * 7 / MONTH_DAYS * 0.124)
    standard = priced(w, "heroku:standard-1x")
    assert standard.fits and standard.includes == "2 Standard-1X web dynos, Postgres Essential-2"
    assert standard.monthly_usd == 2 * 25 + 20
    assert not priced(w, "heroku:basic").fits  # one dyno


def test_a_database_beyond_every_heroku_plan_says_so() -> None:
    option = priced(Workload(updates=1e6, db_gb=1000), "heroku:standard-1x")
    assert not option.fits
    assert option.why == (
        "needs 1e+03 GB and 11 connections: more than Heroku Postgres Standard-4 (768 GB, 500)"
    )


def test_memory_per_worker_is_checked_against_the_dyno_and_the_machine() -> None:
    w = Workload(updates=1e6, memory_mb=2048)
    small = priced(w, "vps:digitalocean-512mb")
    assert not small.fits
    assert small.why == "a worker needs 2,048 MB; the machine has 312 MB beside its system"
    assert not priced(w, "heroku:standard-2x").fits
    assert priced(w, "heroku:performance-m").fits  # 2.5 GB: one worker
    best = cheapest(options(w, BOOK))
    assert best is not None and best.key == "vps:hetzner-cx23"  # 4 GB: one worker
    # A 512 MB droplet holds one 256 MB worker beside its system, and says so.
    default = priced(Workload(updates=1e6), "vps:digitalocean-512mb")
    assert default.fits and default.caveats[0].startswith("WEB_CONCURRENCY=1: 1 worker of 256 MB")


def test_a_vps_and_the_machines_its_peak_needs() -> None:
    w = Workload(updates=1_000_000, peak=10)
    assert priced(w, "vps:digitalocean-512mb").monthly_usd == 4.0
    # €3.99 and its public IPv4's €0.50, at the book's $1.08 per euro.
    assert priced(w, "vps:hetzner-cx23").monthly_usd == pytest.approx((3.99 + 0.50) * EUR)
    # 2,500/s at 2 × 1,000/s a machine: 2 serving, one more for their PostgreSQL, each with an
    # IPv4, and a load balancer (LB11, €5.39) in front.
    busy = priced(Workload(updates=1_000_000, peak=2500), "vps:hetzner-cx23")
    assert busy.machines == 3
    assert busy.monthly_usd == pytest.approx((3 * 3.99 + 3 * 0.50 + 5.39) * EUR)
    assert charge(busy, "load balancer") == pytest.approx(5.39 * EUR)


def test_traffic_beyond_what_a_machine_includes_is_billed() -> None:
    # 1B updates × 2 KB = 2,000 GB out; a 1 GB droplet includes 1,000 GiB: 5 machines (4 serve
    # a peak of 3,805/s) include 5,000, so nothing; with 10 KB an update 10,000 GB, 5,000 over.
    w = bot(1e9)
    assert charge(priced(w, "vps:digitalocean-1gb"), "traffic") == 0
    heavy = priced(bot(1e9, egress_kb=10), "vps:digitalocean-1gb")
    assert charge(heavy, "traffic") == pytest.approx(5000 * 0.01)


def test_every_host_has_an_option_that_fits_at_every_volume_the_readme_shows() -> None:
    for volume in (1e4, 1e6, 1e8, 1e9):
        found = options(bot(volume), BOOK)
        for target in ("heroku", "lambda", "vps"):
            assert any(o.fits for o in found if o.target == target), (target, volume)
        for o in found:
            assert o.fits or o.why, o.key


def test_a_line_that_ends_says_where_and_why() -> None:
    # Eco and Basic run one dyno: at 10× the average they stop when the peak passes 1,000/s,
    # about 263M updates a month.
    ended = endings(bot(1e6), BOOK, volume_grid(1e3, 1e10, 141))
    volume, why = ended["heroku:eco"]
    assert 2.6e8 < volume < 3e8
    assert why.startswith("a peak of 1,0") and why.endswith("needs 2 dynos; Eco runs one web dyno")
    assert "heroku:standard-1x" not in ended


def test_the_break_even_between_lambda_and_a_vps_in_words() -> None:
    # Per update on Lambda (no free tier, no tick, own database free, nothing out): $0.20/M +
    # 0.25 GB × 0.03 s × 0.0000133334 + 342 bytes of logs at $0.50/GB (+ 14 days kept at
    # $0.03/GB-month); a fixed $0.1435 for the maintenance runs. The cheapest VPS is $4.
    per_update = 0.2e-6 + 0.25 * 0.03 * 0.0000133334 + 342e-9 * (0.5 + 0.03 * 14 / MONTH_DAYS)
    fixed = (
        730 * 0.2e-6
        + 730 * 0.25 * 0.2 * 0.0000133334
        + 730 * 342e-9 * (0.5 + 0.03 * 14 / MONTH_DAYS)
    )
    w = Workload(
        updates=1_000_000,
        peak=0.4,
        free_tier=False,
        init_ms=0,
        lambda_db_usd=0,
        db_gb=0.1,
        egress_kb=0,
        tick=False,
    )
    [mark] = [
        m for m in break_evens(w, BOOK) if {m.cheaper_below, m.cheaper_above} == {"lambda", "vps"}
    ]
    assert mark.updates == pytest.approx((4 - fixed) / per_update, rel=1e-3)
    assert mark.sentence.startswith(
        f"Lambda is cheaper below {mark.updates:,.0f} updates a month, a VPS above: "
    )
    assert mark.sentence.endswith("grow with every update")


def test_the_cheapest_option_fits_and_the_historical_free_tier_never_wins() -> None:
    found = options(Workload(updates=10_000), BOOK, historical=True)
    free = [o for o in found if o.plan.startswith("free-2022")]
    assert free and not free[0].fits and "ended on 2022-11-28" in free[0].caveats[0]
    best = cheapest(found)
    assert best is not None and best.fits and best.monthly_usd > 0


def test_every_option_names_prices_that_carry_a_source_and_a_date() -> None:
    for option in options(Workload(updates=1e6), BOOK, historical=True):
        assert option.prices
        for key in option.prices:
            price = BOOK[key]
            assert price.source.startswith("https://") and price.checked
    hetzner = priced(Workload(updates=1e6), "vps:hetzner-cx23")
    assert "fx.EUR" in hetzner.prices  # converted at the book's rate, which is listed


def test_what_the_numbers_leave_out_is_said() -> None:
    assert any("taxes" in line for line in NOT_INCLUDED)
    assert any("us-east-1" in line for line in NOT_INCLUDED)


def test_the_database_holds_what_maintenance_keeps() -> None:
    # A week of update ids at 124 MB a million, on top of 0.05 GB.
    assert Workload(updates=10_000).database_gb == pytest.approx(0.05 + 0.0023 * 0.124, rel=1e-2)
    big = Workload(updates=100_000_000)
    assert big.database_gb == pytest.approx(0.05 + 100 * 7 / (730 / 24) * 0.124)
    # Nearly 3 GB outgrows Essential-0's 1 GB: the Eco dyno comes with a bigger database.
    assert (
        priced(big, "heroku:eco").monthly_usd
        > priced(Workload(updates=10_000), "heroku:eco").monthly_usd
    )
    assert Workload(updates=100_000_000, db_gb=0.2).database_gb == 0.2
