"""The comparison's inputs: one set of bounds for the command's flags, the API's query parameters,
a benchmark file, and the validation of price files."""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import fields
from pathlib import Path

import pytest

from portabot.cli import build_parser
from portabot.costs.bench import BenchError, from_bench
from portabot.costs.inputs import (
    DEFAULT_UPDATES,
    INPUT,
    INPUTS,
    PEAK_TO_AVERAGE,
    Input,
    InputError,
    parse,
    workload,
)
from portabot.costs.model import KEPT_DAYS, SECONDS, Workload
from portabot.costs.prices import PriceBook, PriceError
from portabot.web.costs import QueryError, parse_workload

DEFAULTS = {f.name: f.default for f in fields(Workload)}


def test_a_count_s_suffix_is_applied_before_its_bound() -> None:
    updates = INPUT["updates"]
    assert parse(updates, "2.5M") == 2.5e6 and parse(updates, "10k") == 1e4
    assert parse(updates, "1B") == parse(updates, "1g") == 1e9
    assert parse(updates, "100G") == 1e11
    for text in ("999999999999999k", "101G", "1e400k"):
        with pytest.raises(InputError, match="must be from 0 to 100,000,000,000 updates a month"):
            parse(updates, text)
    with pytest.raises(InputError, match="must be a number"):
        parse(INPUT["ms"], "30k")  # a suffix is for counts only


@pytest.mark.parametrize("spec", INPUTS, ids=lambda spec: spec.name)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-1", "1e300", "many", ""])
def test_no_input_takes_a_value_beyond_its_bounds(spec: Input, text: str) -> None:
    with pytest.raises(InputError):
        parse(spec, text)


@pytest.mark.parametrize(
    ("name", "zero"),
    [
        ("updates", True),
        ("ms", False),
        ("memory", False),
        ("peak", False),
        ("db_gb", True),
        ("throughput", False),
        ("init_ms", True),
        ("lambda_db_usd", True),  # prices Lambda alone
        ("workers", False),
        ("pool", False),
        ("egress_kb", True),
    ],
)
def test_zero_is_taken_only_where_it_means_something(name: str, zero: bool) -> None:
    if zero:
        assert parse(INPUT[name], "0") == 0
    else:
        with pytest.raises(InputError):
            parse(INPUT[name], "0")


def test_counts_of_things_are_whole() -> None:
    assert parse(INPUT["workers"], "64") == 64 and parse(INPUT["pool"], "100") == 100
    for name, text in [("workers", "2.5"), ("pool", "101"), ("memory", "1769.5")]:
        with pytest.raises(InputError):
            parse(INPUT[name], text)
    w = workload({"workers": 3.0, "pool": 5.0, "memory_mb": 512.0}, {"free_tier": True})
    assert (w.workers, w.pool, w.memory_mb) == (3, 5, 512)
    assert all(isinstance(n, int) for n in (w.workers, w.pool, w.memory_mb))


def test_the_peak_defaults_to_a_multiple_of_the_average_and_is_not_below_it() -> None:
    assert workload({"updates": 1e9}, {"free_tier": True}).peak == 1e9 / SECONDS * PEAK_TO_AVERAGE
    with pytest.raises(InputError, match=r"peak \(1/s\) is below the average rate"):
        workload({"updates": 1e9, "peak": 1.0}, {"free_tier": True})


def test_the_defaults_help_shows_are_the_code_s() -> None:
    numbers = {"ms", "memory_mb", "throughput", "init_ms", "workers", "pool", "egress_kb"}
    for spec in INPUTS:
        if spec.field in numbers:
            assert f"{spec.default} ".startswith(f"{DEFAULTS[spec.field]:g} "), spec.name
    # The model's own peak (1/s) is for a Workload made by hand; a query's is a multiple.
    assert INPUT["peak"].default == f"{PEAK_TO_AVERAGE:g}× the average rate"
    assert INPUT["updates"].default == f"{DEFAULT_UPDATES:,}"
    assert INPUT["db_gb"].default is not None and f"{KEPT_DAYS:g} days" in INPUT["db_gb"].default


def refused_by_the_command(flag: str, value: str) -> bool:
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(["costs", flag, value])
        except SystemExit:
            return True
    return False


def refused_by_the_api(name: str, value: str) -> bool:
    try:
        parse_workload({name: value})
    except QueryError:
        return True
    return False


@pytest.mark.parametrize("spec", [s for s in INPUTS if s.query], ids=lambda s: s.name)
def test_the_command_and_the_api_refuse_the_same_values(spec: Input) -> None:
    assert spec.query is not None
    values = (0.0, spec.low, spec.high, spec.high * 1.01, -1.0, 0.5, math.nan)
    refused = [refused_by_the_command(spec.flag, f"{v:g}") for v in values]
    assert refused == [refused_by_the_api(spec.query, f"{v:g}") for v in values]
    assert refused[2:4] == [False, True]


def book(tmp_path: Path, *more: str, **entry: str) -> PriceBook:
    """A price file of one entry, vps.mine (its fields as TOML values), and `more` tables."""
    fields = {"value": "5.0", "currency": '"USD"', "unit": '"per month"', "source": '"s"'}
    lines = [f"{k} = {v}" for k, v in (fields | {"checked": '"2026"'} | entry).items()]
    (tmp_path / "mine.toml").write_text("\n".join(["[vps.mine]", *lines, *more]) + "\n")
    return PriceBook.load(tmp_path / "mine.toml")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"value": "nan"}, "vps.mine's value must be 0 or more, not nan"),
        ({"value": "inf"}, "vps.mine's value must be 0 or more, not inf"),
        ({"value": "-100"}, "vps.mine's value must be 0 or more, not -100"),
        ({"value": '"5"'}, "vps.mine's value must be a number"),
        ({"value": "true"}, "vps.mine's value must be a number"),
        ({"currency": '"GBP"'}, "vps.mine is in 'GBP', which has no fx.GBP entry"),
        ({"currency": "5"}, "vps.mine has no currency (a string)"),
        ({"unit": '""'}, "vps.mine has no unit (a string)"),
        ({"source": "[]"}, "vps.mine has no source (a string)"),
    ],
)
def test_a_price_file_is_checked_when_it_is_loaded(
    tmp_path: Path, entry: dict[str, str], reason: str
) -> None:
    with pytest.raises(PriceError) as refused:
        book(tmp_path, **entry)
    assert str(refused.value) == f"{tmp_path / 'mine.toml'}: {reason}"


def test_a_currency_with_its_rate_is_converted_and_a_rate_is_in_usd(tmp_path: Path) -> None:
    rate = ["[fx.GBP]", "value = 1.25", 'currency = "USD"', 'unit = "per GBP"']
    rate += ['source = "s"', 'checked = "2026"']
    assert book(tmp_path, *rate, currency='"GBP"').value("vps.mine") == 6.25
    with pytest.raises(PriceError, match=r"fx\.GBP must be in USD, not 'EUR'"):
        book(tmp_path, *[line.replace('"USD"', '"EUR"') for line in rate], currency='"GBP"')


@pytest.mark.parametrize(
    ("measured", "reason"),
    [
        ({"updates_per_second": 0}, "updates_per_second must be from 1 to 1,000,000"),
        ({"rss_mb": 20_000}, "rss_mb must be from 128 to 10,240 MB, not 20000"),
        ({"rss_mb": -5}, "rss_mb must be from 128 to 10,240 MB, not -5"),
        ({"ms_per_update": math.nan}, "ms_per_update must be above 0"),
        ({"cold_start_ms": 1e6}, "cold_start_ms must be from 0 to 10,000 ms"),
        ({"ms_per_update": "12"}, "ms_per_update must be a number"),
    ],
)
def test_a_benchmark_file_s_figures_have_the_flags_bounds(
    tmp_path: Path, measured: dict[str, object], reason: str
) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(measured))
    with pytest.raises(BenchError) as refused:
        from_bench(path)
    assert str(refused.value).startswith(f"{path}: {reason}")


def test_a_small_process_takes_lambda_s_smallest_memory(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"rss_mb": 61.2, "cold_start_ms": 0}))
    assert from_bench(path) == {"memory_mb": 128, "init_ms": 0}
