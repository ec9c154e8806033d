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
    """The comparison for one workload and the chart's layout (as `portabot costs --chart`
    draws it): 15 to 40 ms of arithmetic, so answers are remembered."""
    from portabot.costs.chart import MARKERS, SCALE_NOTE, layout
    from portabot.costs.model import NOT_INCLUDED
    from portabot.costs.report import as_dict

    book = price_book()
    chart = layout(w, book)
    return {
        "options": [as_dict(o, book, chart.cheapest) for o in chart.options],
        "cheapest": chart.cheapest.key if chart.cheapest is not None else None,
        "cheapest_label": chart.cheapest_label,
        "break_evens": [
            {
                **asdict(m),
                "updates": round(m.updates),
                "monthly_usd": round(m.monthly_usd, 2),
                "label": m.label,
            }
            for m in chart.marks
        ],
        "endings": [
            {**asdict(e), "updates": round(e.updates), "sentence": e.sentence}
            for e in chart.endings
        ],
        "curves": {
            "volumes": [round(v, 1) for v in chart.volumes],
            "options": {
                key: [None if c is None else round(c, 2) for c in costs]
                for key, costs in chart.lines.items()
            },
        },
        "styles": {
            key: {
                "colour": s.colour,
                "dash": list(s.dash),
                "marker": MARKERS[s.marker][1],
                "marks_at": list(s.marks_at),
                "note": s.note,
            }
            for key, s in chart.styles.items()
        },
        "scale_note": SCALE_NOTE,
        "not_included": list(NOT_INCLUDED),
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
