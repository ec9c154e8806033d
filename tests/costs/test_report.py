"""`portabot costs` as a user runs it: formats, volumes, price overrides, benchmark files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

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
    out = costs(tmp_path, "--updates", "1M", "--ms", "40", "--peak", "5")
    assert out.startswith("Workload: 1,000,000 updates a month, 40 ms")
    assert "Cheapest for this workload: " in out
    assert "Break-even at " in out
    assert "- lambda.requests: 0.2 USD per million requests (https://aws.amazon.com/lambda/" in out


def test_csv_and_markdown(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(costs(tmp_path, "--format", "csv"))))
    assert rows[0].keys() >= {"target", "plan", "monthly_usd", "fits"}
    assert len(rows) == 11
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
    negative = portabot(tmp_path, "costs", "--updates", "-5")
    assert negative.returncode == 2 and "must be 0 or more" in negative.stderr
