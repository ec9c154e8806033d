"""`portabot costs` as a user runs it: formats, volumes, price overrides, benchmark files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from portabot.costs.inputs import INPUTS, span
from tests.test_cli import portabot


def costs(tmp_path: Path, *args: str) -> str:
    result = portabot(tmp_path, "costs", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_json_is_a_list_of_options_in_one_currency(tmp_path: Path) -> None:
    found = json.loads(costs(tmp_path, "--updates", "250000", "--format", "json"))
    assert {o["target"] for o in found} == {"heroku", "lambda", "vps"}
    for option in found:
        assert isinstance(option["plan"], str) and isinstance(option["monthly_usd"], float | int)
        assert option["currency"] == "USD"
        assert all(p["source"].startswith("https://") and p["checked"] for p in option["prices"])
    assert sum(o["cheapest"] for o in found) == 1


def test_the_table_names_the_cheapest_the_break_evens_and_the_prices(tmp_path: Path) -> None:
    out = costs(tmp_path, "--updates", "1M", "--ms", "40", "--peak", "5", "--lambda-db-usd", "0")
    assert out.startswith("Workload: 1,000,000 updates a month, 40 ms")
    assert "Cheapest for this workload: lambda:arm64+function-url, $0.0" in out
    assert (
        "Break-even: Lambda is cheaper below " in out and " updates a month, a VPS above: " in out
    )
    assert "- lambda.requests: 0.2 USD per million requests (https://aws.amazon.com/lambda/" in out
    # What the first reply may wait for, one line for the options that wait alike, and what
    # the numbers leave out.
    assert "\nBefore the first reply:\n- heroku:eco, heroku:basic, " in out
    assert "cold starts a month, each 500 ms before its reply" in out
    assert "\nNot included:\n- your time: " in out and "- taxes" in out


def test_one_command_prices_every_host_at_every_volume_or_says_why_not(tmp_path: Path) -> None:
    out = costs(tmp_path, "--updates", "10k,1M,100M,1B")
    assert "1B/month" in out
    lines = out.splitlines()
    targets = ("heroku:", "lambda:", "vps:")
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith(targets)}
    for target in ("heroku", "lambda", "vps"):
        for column in range(4):
            assert any(
                cells[column].startswith("$")
                for key, cells in rows.items()
                if key.startswith(target)
            ), (target, column)
    # A cell that does not fit points at its reason under the table.
    assert "does not fit (1)" in out
    assert "(1) heroku:eco: a peak of 3,805/s needs 4 dynos; Eco runs one web dyno" in out


def test_without_the_tick_lambda_s_database_may_sleep(tmp_path: Path) -> None:
    def arm64(*flags: str) -> float:
        found = json.loads(costs(tmp_path, "--updates", "2k", "--format", "json", *flags))
        [option] = [o for o in found if o["plan"] == "arm64+function-url"]
        return float(option["monthly_usd"])

    # The tick every minute keeps Neon awake all month (182.5 CU-hours, beyond the free 100);
    # without it, 2,000 updates and the hourly maintenance fit Neon's free plan.
    assert arm64("--tick") == pytest.approx(182.5 * 0.106 + 0.05 * 0.35, abs=0.01)
    assert arm64("--no-tick") == 0


def test_csv_and_markdown(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(costs(tmp_path, "--format", "csv"))))
    assert rows[0].keys() >= {"target", "plan", "monthly_usd", "fits"}
    assert len(rows) == 15  # 6 Heroku plans, 4 Lambda setups, 5 machines
    assert rows[0].keys() >= {"why", "includes", "caveats"}
    markdown = costs(tmp_path, "--format", "markdown")
    assert "| option | monthly (USD) | includes | caveats |" in markdown


def test_one_command_for_10k_1m_and_100m_updates(tmp_path: Path) -> None:
    out = costs(tmp_path, "--updates", "10k,1M,100M")
    assert "option" in out and "10k/month" in out and "1M/month" in out and "100M/month" in out
    assert out.count("*") >= 4  # the cheapest marked in each column, and the note
    found = json.loads(costs(tmp_path, "--updates", "10k,1M,100M", "--format", "json"))
    assert {o["updates_per_month"] for o in found} == {10_000, 1_000_000, 100_000_000}


def test_free_tier_on_and_off(tmp_path: Path) -> None:
    def arm64(*flags: str) -> float:
        found = json.loads(
            costs(tmp_path, "--updates", "3M", "--lambda-db-usd", "0", "--format", "json", *flags)
        )
        [option] = [o for o in found if o["plan"] == "arm64+function-url"]
        return float(option["monthly_usd"])

    assert arm64("--no-free-tier") > arm64("--free-tier")


def test_a_price_file_overrides_and_adds(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[vps.digitalocean_512]\nvalue = 5.5\ncurrency = "USD"\nunit = "per month"\n'
        'source = "https://example.com/my-quote"\nchecked = "2026-11-24"\n'
    )
    found = json.loads(costs(tmp_path, "--prices", str(prices), "--format", "json"))
    [option] = [o for o in found if o["plan"] == "digitalocean-512mb"]
    assert option["monthly_usd"] == 5.5
    assert option["prices"][0]["source"] == "https://example.com/my-quote"


def test_a_benchmark_file_sets_the_workload(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"ms_per_update": 12.5, "rss_mb": 61.2, "updates_per_second": 900}))
    out = costs(tmp_path, "--from-bench", str(bench))
    assert "12.5 ms and 128 MB each" in out and "900 updates/s per vCPU" in out
    # A flag wins over the file.
    assert "7 ms" in costs(tmp_path, "--from-bench", str(bench), "--ms", "7")


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[vps.x]\nvalue = 'cheap'\nunit = 'm'\nsource = 's'\nchecked = 'c'\n")
    for args, message in [
        (["--prices", str(bad)], "vps.x's value must be a number"),
        (["--prices", str(tmp_path / "missing.toml")], "cannot read"),
        (["--from-bench", str(bad)], "cannot read"),
    ]:
        result = portabot(tmp_path, "costs", *args)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--throughput", "0"], "argument --throughput: must be from 1 to 1,000,000"),
        (["--throughput", "1e-300"], "argument --throughput: must be from 1 to"),  # no overflow
        (["--memory", "0"], "argument --memory: must be from 128 to 10,240 MB, not 0"),
        (["--peak", "0"], "argument --peak: must be above 0"),
        (["--ms", "0"], "argument --ms: must be above 0"),
        (["--updates", "-5"], "argument --updates: must be from 0 to"),
        (["--updates", "999999999999999k"], "must be from 0 to 100,000,000,000 updates a month"),
        (["--per-day", "10k,1e12"], "argument --per-day: must be from 0 to"),
        (["--workers", "0"], "argument --workers: must be from 1 to 64 processes, not 0"),
        (["--pool-size", "101"], "argument --pool-size: must be from 1 to 100 connections"),
        (["--egress-kb", "nan"], "argument --egress-kb: must be from 0 to 10,000 KB"),
    ],
)
def test_a_flag_beyond_its_bounds_is_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = portabot(tmp_path, "costs", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if "error:" in line]
    assert message in error, result.stderr


def test_a_peak_below_the_average_is_refused(tmp_path: Path) -> None:
    result = portabot(tmp_path, "costs", "--updates", "1G", "--peak", "1")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "peak (1/s) is below the average rate (381/s)" in result.stderr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('value = 5.0\ncurrency = "GBP"', "vps.x is in 'GBP', which has no fx.GBP entry"),
        ('value = nan\ncurrency = "USD"', "vps.x's value must be 0 or more, not nan"),
        ('value = -100.0\ncurrency = "USD"', "vps.x's value must be 0 or more, not -100"),
    ],
)
def test_a_price_the_book_cannot_use_is_refused_before_printing(
    tmp_path: Path, entry: str, message: str
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(f"[vps.x]\n{entry}\nunit = 'm'\nsource = 's'\nchecked = 'c'\n")
    result = portabot(tmp_path, "costs", "--prices", str(prices))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"portabot: {prices}: {message}\n"


def test_a_benchmark_file_beyond_the_bounds_is_one_line(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"updates_per_second": 0}))
    result = portabot(tmp_path, "costs", "--from-bench", str(bench))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"{bench}: updates_per_second must be from 1 to" in result.stderr


def test_zero_and_the_new_inputs_are_taken_where_they_mean_something(tmp_path: Path) -> None:
    out = costs(
        tmp_path,
        "--lambda-db-usd",
        "0",
        "--init-ms",
        "0",
        "--egress-kb",
        "0",
        "--workers",
        "3",
        "--pool-size",
        "5",
        "--updates",
        "0",
    )
    assert out.startswith("Workload: 0 updates a month")


def test_help_shows_the_defaults_the_code_has(tmp_path: Path) -> None:
    result = portabot(tmp_path, "costs", "--help")
    shown = " ".join(result.stdout.split())  # argparse wraps the lines
    for spec in INPUTS:
        assert f"{spec.help}: {span(spec)}" in shown
        if spec.default is not None:
            assert f"default {spec.default}" in shown
    assert "default 1000 updates a second" in shown and "(200)" not in shown
    assert "default the update ids of 7 days" in shown and "0.1 GB" not in shown
