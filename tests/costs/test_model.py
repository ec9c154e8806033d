"""The cost model against worked examples computed by hand from the published prices."""

from __future__ import annotations

import math

import pytest

from portabot.costs.model import (
    HOURS,
    Option,
    Workload,
    awake_fraction,
    break_evens,
    cheapest,
    cold_starts,
    options,
)
from portabot.costs.prices import PriceBook

BOOK = PriceBook.load()


def priced(w: Workload, key: str) -> Option:
    [option] = [o for o in options(w, BOOK, historical=True) if o.key == key]
    return option


def test_lambda_below_the_free_allowance_costs_nothing() -> None:
    # 500,000 requests < 1M free; 0.5 GB × 500,000 × 0.1 s = 25,000 GB-s < 400,000 free.
    w = Workload(updates=500_000, ms=100, memory_mb=512, init_ms=0, lambda_db_usd=0)
    assert priced(w, "lambda:arm64+function-url").monthly_usd == 0
    assert priced(w, "lambda:x86_64+function-url").monthly_usd == 0


@pytest.mark.parametrize(
    ("free_tier", "arm64", "x86_64"),
    [
        # (5M − 1M) × $0.20/M = $0.80; (1 GB × 5M × 0.2 s − 400,000) × rate:
        # arm64 600,000 × 0.0000133334 = $8.00004; x86_64 600,000 × 0.0000166667 = $10.00002.
        (True, 0.80 + 8.00004, 0.80 + 10.00002),
        # 5M × $0.20/M = $1.00; 1,000,000 GB-s × rate: $13.3334 and $16.6667.
        (False, 1.00 + 13.3334, 1.00 + 16.6667),
    ],
    ids=["across-the-free-allowance", "without-it"],
)
def test_lambda_requests_and_duration_on_both_architectures(
    free_tier: bool, arm64: float, x86_64: float
) -> None:
    w = Workload(
        updates=5_000_000, ms=200, memory_mb=1024, init_ms=0, free_tier=free_tier, lambda_db_usd=0
    )
    assert priced(w, "lambda:arm64+function-url").monthly_usd == pytest.approx(arm64, abs=1e-6)
    assert priced(w, "lambda:x86_64+function-url").monthly_usd == pytest.approx(x86_64, abs=1e-6)
    # API Gateway adds its own price per request: HTTP $1.00/M, REST $3.50/M.
    assert priced(w, "lambda:arm64+apigw-http").monthly_usd == pytest.approx(arm64 + 5.0)
    assert priced(w, "lambda:arm64+apigw-rest").monthly_usd == pytest.approx(arm64 + 17.5)


def test_cold_starts_are_billed_for_their_init_time() -> None:
    # 1,000 updates a month arrive about 44 minutes apart: most start a new container.
    w = Workload(updates=1000, ms=100, memory_mb=1024, init_ms=1000, free_tier=False)
    cold = cold_starts(w)
    assert cold == pytest.approx(1000 * math.exp(-1000 / (HOURS * 3600) * 600))
    warm = Workload(updates=1000, ms=100, memory_mb=1024, init_ms=0, free_tier=False)
    extra = (
        priced(w, "lambda:arm64+function-url").monthly_usd
        - priced(warm, "lambda:arm64+function-url").monthly_usd
    )
    assert extra == pytest.approx(cold * 1.0 * 1.0 * 0.0000133334)


def test_an_eco_dyno_with_its_database() -> None:
    # $5 for the account's Eco hours + $5 for Postgres Essential-0.
    busy = Workload(updates=100_000)
    assert priced(busy, "heroku:eco").monthly_usd == 10.0
    # 1,000 updates a month: awake 1 − e^(−rate × 1800 s) ≈ 50% of the time.
    quiet = Workload(updates=1000)
    assert awake_fraction(quiet.rate, 1800) == pytest.approx(0.4959, abs=1e-4)
    assert "asleep 50% of the month" in priced(quiet, "heroku:eco").caveats[0]


def test_eco_and_basic_cannot_add_dynos_but_standard_can() -> None:
    w = Workload(updates=10_000_000, peak=500, throughput=200)  # needs 3 dynos
    assert not priced(w, "heroku:eco").fits and not priced(w, "heroku:basic").fits
    standard = priced(w, "heroku:standard-1x")
    assert standard.machines == 3 and standard.monthly_usd == 3 * 25 + 5
    assert "3 dynos for a peak of 500 updates/s" in standard.caveats


def test_a_vps_and_the_machines_its_peak_needs() -> None:
    w = Workload(updates=1_000_000, peak=10)
    assert priced(w, "vps:digitalocean-512mb").monthly_usd == 4.0
    # €3.99 at the book's $1.08 per euro.
    assert priced(w, "vps:hetzner-cx23").monthly_usd == pytest.approx(3.99 * 1.08)
    # 500/s at 200/s per vCPU: 3 one-vCPU machines and one more for their shared PostgreSQL.
    busy = Workload(updates=1_000_000, peak=500, throughput=200)
    assert priced(busy, "vps:digitalocean-512mb").monthly_usd == 4 * 4.0
    assert priced(busy, "vps:hetzner-cx23").monthly_usd == pytest.approx(3 * 3.99 * 1.08)


def test_the_break_even_between_lambda_and_a_vps() -> None:
    # Per update on Lambda (no free tier, own database free): $0.20/M + 0.25 GB × 0.03 s ×
    # 0.0000133334 = 3.000005e-7; the cheapest VPS is $4: even at 4 / 3.000005e-7 updates.
    w = Workload(
        updates=1_000_000,
        peak=0.4,
        free_tier=False,
        init_ms=0,
        lambda_db_usd=0,
        memory_mb=256,
        db_gb=0.1,  # at every volume: Heroku's Essential-0 all along
    )
    found = {(below, above): volume for below, above, volume in break_evens(w, BOOK)}
    assert found[("lambda", "vps")] == pytest.approx(4 / 3.000005e-7, rel=1e-4)
    # And against Heroku's cheapest ($10: Eco with Essential-0).
    assert found[("lambda", "heroku")] == pytest.approx(10 / 3.000005e-7, rel=1e-4)


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
