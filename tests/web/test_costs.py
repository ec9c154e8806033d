"""The API the costs page calls: the comparison and its curves, and bad values refused."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import BotFactory, run

on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""The comparison needs no database; one is enough for the server."""


@on_sqlite
def test_the_api_answers_with_the_comparison_and_the_curves(bot: httpx.Client) -> None:
    response = bot.get(
        "/api/costs", params={"updates": "2e6", "ms": "40", "free_tier": "0", "tick": "0"}
    )
    assert response.status_code == 200
    body = response.json()
    assert {"options", "cheapest", "break_evens", "curves", "workload"} <= body.keys()
    assert body["workload"]["updates"] == 2e6 and body["workload"]["ms"] == 40
    assert body["workload"]["free_tier"] is False
    assert body["workload"]["tick"] is False
    assert [o["cheapest"] for o in body["options"]].count(True) == 1
    best = next(o for o in body["options"] if o["cheapest"])
    assert body["cheapest"] == f"{best['target']}:{best['plan']}"
    volumes = body["curves"]["volumes"]
    assert volumes[0] <= 2e6 <= volumes[-1]
    lines = body["curves"]["options"]
    assert list(lines) == [f"{o['target']}:{o['plan']}" for o in body["options"]]
    assert all(len(costs) == len(volumes) for costs in lines.values())
    for mark in body["break_evens"]:
        assert {"cheaper_below", "cheaper_above", "updates", "monthly_usd"} <= mark.keys()


@on_sqlite
@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"updates": "many"}, "updates must be a number"),
        ({"updates": "-5"}, "updates must be from 0 to"),
        ({"updates": "1e12"}, "updates must be from 0 to"),
        ({"updates": "nan"}, "updates must be from 0 to"),
        ({"updates": "999999999999999k"}, "updates must be from 0 to 100,000,000,000"),
        ({"memory": "64"}, "memory must be from 128 to"),
        ({"ms": "inf"}, "ms must be above 0 and at most 900,000 ms"),
        ({"ms": "0"}, "ms must be above 0"),
        ({"peak": "0"}, "peak must be above 0"),
        ({"db_gb": "1e9"}, "db_gb must be from 0 to"),
        ({"throughput": "0"}, "throughput must be from 1 to 1,000,000"),
        ({"init_ms": "-1"}, "init_ms must be from 0 to 10,000 ms"),
        ({"lambda_db_usd": "nan"}, "lambda_db_usd must be from 0 to"),
        ({"workers": "2.5"}, "workers must be a whole number of processes"),
        ({"workers": "65"}, "workers must be from 1 to 64 processes"),
        ({"pool": "0"}, "pool must be from 1 to 100 connections"),
        ({"egress_kb": "1e5"}, "egress_kb must be from 0 to 10,000 KB an update"),
        ({"updates": "1e9", "peak": "1"}, "peak (1/s) is below the average rate"),
        ({"free_tier": "yes"}, "free_tier must be 0 or 1"),
        ({"tick": "off"}, "tick must be 0 or 1"),
        ({"update": "1000"}, "unknown parameter 'update'"),
    ],
)
def test_the_api_refuses_a_bad_value_with_a_reason(
    bot: httpx.Client, params: dict[str, str], reason: str
) -> None:
    response = bot.get("/api/costs", params=params)
    assert response.status_code == 400
    assert reason in response.json()["error"]


@on_sqlite
def test_the_api_takes_every_input_the_command_takes(bot: httpx.Client) -> None:
    params = {"updates": "2.5M", "throughput": "900", "init_ms": "0", "lambda_db_usd": "0"}
    params |= {"workers": "3", "pool": "5", "egress_kb": "0"}
    response = bot.get("/api/costs", params=params)
    assert response.status_code == 200, response.text
    workload = response.json()["workload"]
    assert {k: workload[k] for k in ("updates", "throughput", "init_ms", "lambda_db_usd")} == {
        "updates": 2.5e6,
        "throughput": 900,
        "init_ms": 0,
        "lambda_db_usd": 0,
    }
    assert (workload["workers"], workload["pool"], workload["egress_kb"]) == (3, 5, 0)


@on_sqlite
def test_inputs_are_taken_to_three_significant_figures(bot: httpx.Client) -> None:
    first = bot.get("/api/costs", params={"updates": "1234567", "ms": "41.26", "memory": "1769"})
    again = bot.get("/api/costs", params={"updates": "1230001", "ms": "41.34", "memory": "1771"})
    assert first.status_code == again.status_code == 200
    workload = first.json()["workload"]
    assert (workload["updates"], workload["ms"], workload["memory_mb"]) == (1_230_000, 41.3, 1770)
    assert again.json() == first.json()


@on_sqlite
def test_one_answer_is_worked_out_at_a_time(bot: httpx.Client) -> None:
    async def ask_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(bot.base_url), timeout=30) as client:
            return await asyncio.gather(
                *(client.get("/api/costs", params={"updates": str(10_000 + n)}) for n in range(20))
            )

    responses = run(ask_at_once())
    busy = [r for r in responses if r.status_code == 503]
    assert {r.status_code for r in responses} == {200, 503}
    assert all(r.headers["Retry-After"] == "1" and r.json()["error"] for r in busy)
    # A refused query is answered when asked again, once the process is free.
    retried = bot.get("/api/costs", params=dict(busy[0].request.url.params))
    assert retried.status_code == 200


@on_sqlite
def test_costs_page_off_removes_the_page_and_the_api(start_bot: BotFactory) -> None:
    bot = start_bot(costs_page=False)
    assert bot.get("/costs").status_code == 404
    assert bot.get("/api/costs", params={"updates": "1000"}).status_code == 404
    home = bot.get("/")
    assert home.status_code == 200 and 'href="costs"' not in home.text
    assert 'href="costs"' in start_bot().get("/").text


# The chart's layout in the answer ------------------------------------------------------------


@on_sqlite
def test_the_api_gives_the_charts_labels_endings_styles_and_what_is_left_out(
    bot: httpx.Client,
) -> None:
    body = bot.get("/api/costs", params={"updates": "1e6", "memory": "1024"}).json()
    best = next(o for o in body["options"] if o["cheapest"])
    assert body["cheapest_label"] == f"{body['cheapest']} ${best['monthly_usd']:.2f}/month"
    (mark,) = body["break_evens"]
    assert mark["sentence"].startswith("Lambda is cheaper below 58,")
    assert mark["sentence"].endswith(mark["why"]) and mark["label"].endswith(mark["why"])
    unfit = [o for o in body["options"] if not o["fits"]]
    assert unfit and all(o["why"] for o in unfit)  # 1 GB workers do not fit a 512 MB dyno
    assert all(o["latency"] for o in body["options"])
    assert body["not_included"] and all(isinstance(line, str) for line in body["not_included"])
    assert "$0" in body["scale_note"]
    styles = body["styles"]
    assert list(styles) == list(body["curves"]["options"])
    for target in ("heroku", "lambda", "vps"):
        mine = [s for k, s in styles.items() if k.startswith(target + ":")]
        for part in ("colour", "marker"):
            assert len({s[part] for s in mine}) == len(mine)
        assert len({tuple(s["dash"]) for s in mine}) == len(mine)

    ended = bot.get("/api/costs", params={"updates": "1e6"}).json()["endings"]
    assert [e["option"] for e in ended] == ["heroku:eco", "heroku:basic"]
    assert ended[0]["number"] == 1 and ended[0]["updates"] > 1e8
    assert "one web dyno" in ended[0]["why"] and ended[0]["sentence"].endswith(ended[0]["why"])
