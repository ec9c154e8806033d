"""The costs page: `/costs` (a form, a table and a chart drawn by the page's script) and
`/api/costs`, the comparison for one workload as JSON.

The cost model is imported on the first request, not with the app: a Lambda container that only
answers webhooks does not pay for it at its cold start."""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from portabot.web.policy import html_page

if TYPE_CHECKING:
    from portabot.costs.model import Workload
    from portabot.costs.prices import PriceBook

SIGNIFICANT = 3
"""Significant figures a number is taken to: prices are known to no better, and queries that
differ beyond them share one answer (and one cache entry)."""
CACHED = 256
"""Answers kept per process (some 20 KB each)."""
RETRY_AFTER = 1
"""Seconds a client is asked to wait when this process is already working out an answer."""


class QueryError(ValueError):
    """A query the comparison cannot be made for; the message says which value and why."""


@functools.cache
def page() -> str:
    return files("portabot.web").joinpath("costs.html").read_text(encoding="utf-8")


@functools.cache
def price_book() -> PriceBook:
    from portabot.costs.prices import PriceBook

    return PriceBook.load()


def significant(value: float) -> float:
    """`value` to SIGNIFICANT figures: 1,234,567 → 1,230,000; 0.04567 → 0.0457."""
    return float(f"{value:.{SIGNIFICANT - 1}e}")


def parse_workload(query: Mapping[str, str]) -> Workload:
    """The workload a query describes, by the bounds the command's flags have (numbers taken to
    SIGNIFICANT figures); a missing or empty value takes the command's default."""
    from portabot.costs.inputs import INPUTS, SWITCHES, InputError, parse, workload

    queried = {spec.query: spec for spec in INPUTS if spec.query is not None}
    unknown = sorted(set(query) - set(queried) - set(SWITCHES))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r}")
    values = {}
    for name, spec in queried.items():
        text = query.get(name, "").strip()
        if text:
            try:
                values[spec.field] = significant(parse(spec, text))
            except InputError as exc:
                raise QueryError(f"{name} {exc}") from None
    switches = {}
    for name in SWITCHES:
        flag = query.get(name, "1")
        if flag not in ("0", "1"):
            raise QueryError(f"{name} must be 0 or 1, not {flag[:40]!r}")
        switches[name] = flag == "1"
    try:
        return workload(values, switches)
    except InputError as exc:
        raise QueryError(str(exc)) from None


def comparison(w: Workload) -> dict[str, Any]:
    """The comparison for one workload: 15 to 40 ms of arithmetic, so answers are remembered."""
    from portabot.costs.chart import crossings, volumes
    from portabot.costs.model import cheapest, curves, options
    from portabot.costs.report import as_dict

    book = price_book()
    found = options(w, book)
    best = cheapest(found)
    marks = crossings(w, book)
    grid = volumes(w, marks)
    return {
        "options": [as_dict(o, book, best) for o in found],
        "cheapest": best.key if best is not None else None,
        "break_evens": [
            {**asdict(m), "updates": round(m.updates), "monthly_usd": round(m.monthly_usd, 2)}
            for m in marks
        ],
        "curves": {
            "volumes": [round(v, 1) for v in grid],
            "options": {
                key: [None if c is None else round(c, 2) for c in costs]
                for key, costs in curves(w, book, grid).items()
            },
        },
        "workload": asdict(w),
    }


async def costs_page(request: Request) -> Response:
    return html_page(page())


_answers: OrderedDict[Workload, dict[str, Any]] = OrderedDict()
_working = asyncio.Lock()
"""One answer worked out at a time per process: queries that miss the cache cost a stranger a
503, not the webhooks this worker serves their latency."""


async def costs_api(request: Request) -> Response:
    try:
        w = parse_workload(request.query_params)
    except QueryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    answer = _answers.get(w)
    if answer is not None:
        _answers.move_to_end(w)
        return JSONResponse(answer)
    if _working.locked():
        return JSONResponse(
            {"error": "busy working out another comparison, retry"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    async with _working:
        # Off the event loop: the webhooks this worker serves must not wait for the arithmetic.
        answer = await run_in_threadpool(comparison, w)
    _answers[w] = answer
    if len(_answers) > CACHED:
        _answers.popitem(last=False)
    return JSONResponse(answer)


routes = [Route("/costs", costs_page), Route("/api/costs", costs_api)]
