"""`portabot costs --chart`: an SVG to commit or a PNG to look at, drawn only when asked for."""

from __future__ import annotations

import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from portabot.costs.chart import (
    count_label,
    crossings,
    draw,
    element_id,
    figure,
    layout,
    usd_label,
    volumes,
)
from portabot.costs.model import SECONDS, Workload, best_costs, cheapest, options, usd
from portabot.costs.prices import PriceBook
from tests.test_cli import portabot

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load()


def workload(updates: float = 100_000, lambda_db_usd: float | None = None) -> Workload:
    return Workload(
        updates=updates, peak=max(updates / SECONDS * 10, 0.01), lambda_db_usd=lambda_db_usd
    )


FREE_LAMBDA = workload(10_000, lambda_db_usd=0.0)
"""Lambda with a database priced at nothing: free at low volumes, with two break-evens."""


def svg(tmp_path: Path, book: PriceBook, w: Workload) -> ET.Element:
    path = tmp_path / "costs.svg"
    draw(w, book, path)
    return ET.parse(path).getroot()


def text_of(root: ET.Element, gid: str) -> str:
    node = root.find(f".//*[@id='{gid}']")
    assert node is not None, gid
    return "\n".join("".join(t.itertext()) for t in node.iter(f"{SVG}text"))


def test_the_svg_has_a_line_per_option_the_workload_and_the_break_evens(
    tmp_path: Path, book: PriceBook
) -> None:
    w = FREE_LAMBDA
    root = svg(tmp_path, book, w)
    ids = {node.get("id") for node in root.iter()}
    keys = [option.key for option in options(w, book)]
    assert {element_id(key) for key in keys} <= ids
    assert {"workload", "break-evens"} <= ids
    texts = {"".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")}
    legend = {text.split(" (")[0] for text in texts}  # "heroku:eco (1)": where its line ends
    assert set(keys) <= legend  # the legend names every option
    assert "your workload: 10k updates a month" in texts
    assert {"10k", "1M", "100M", "$1", "$10", "$100"} <= texts


def test_the_svg_is_the_same_bytes_each_time(tmp_path: Path, book: PriceBook) -> None:
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    draw(workload(), book, first)
    draw(workload(), book, second)
    assert first.read_bytes() == second.read_bytes()
    assert b"<dc:date>" not in first.read_bytes()


def test_a_png_is_a_png_of_a_sensible_size(tmp_path: Path, book: PriceBook) -> None:
    path = tmp_path / "costs.PNG"
    draw(workload(50_000_000), book, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert 800 <= width <= 2000 and 400 <= height <= 1200
    assert 20_000 < len(data) < 1_000_000


@pytest.mark.parametrize("name", ["costs.pdf", "costs", "costs.svg.txt"])
def test_another_suffix_is_refused_before_anything_is_drawn(
    tmp_path: Path, book: PriceBook, name: str
) -> None:
    with pytest.raises(ValueError, match=r"must be a \.svg or \.png file"):
        draw(workload(), book, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_without_matplotlib_the_error_says_what_to_install(
    tmp_path: Path, book: PriceBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"pip install 'portabot\[costs\]'"):
        draw(workload(), book, tmp_path / "costs.svg")


def test_the_command_draws_and_says_so_in_one_line(tmp_path: Path) -> None:
    done = portabot(tmp_path, "costs", "--updates", "1M", "--chart", "costs.svg")
    assert done.returncode == 0, done.stderr
    assert ET.parse(tmp_path / "costs.svg").getroot().tag == f"{SVG}svg"
    refused = portabot(tmp_path, "costs", "--chart", "costs.gif")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "must be a .svg or .png file" in refused.stderr


def test_a_break_even_sits_where_the_two_targets_lines_meet(book: PriceBook) -> None:
    marks = crossings(FREE_LAMBDA, book)
    assert marks
    for mark in marks:
        near = [best_costs(FREE_LAMBDA.at(mark.updates * f), book) for f in (0.999, 1.001)]
        on_a_line = [
            abs(costs[target] - mark.monthly_usd) <= 0.02 * max(costs[target], 1.0)
            for costs in near
            for target in (mark.cheaper_below, mark.cheaper_above)
        ]
        assert any(on_a_line), mark


def test_the_volumes_widen_to_show_the_workload() -> None:
    usual = volumes(workload(), [])
    assert (usual[0], usual[-1]) == pytest.approx((1e3, 1e9))
    wide = volumes(workload(5e10), [])
    assert wide[0] == pytest.approx(1e3) and wide[-1] == pytest.approx(1e11)
    assert volumes(workload(20), [])[0] == pytest.approx(10)


def test_the_cheapest_option_is_labelled_where_it_meets_the_workload(
    tmp_path: Path, book: PriceBook
) -> None:
    for w in (workload(1e6), FREE_LAMBDA):
        best = cheapest(options(w, book))
        assert best is not None
        assert text_of(svg(tmp_path, book, w), "cheapest") == (
            f"{best.key} {usd(best.monthly_usd)}/month"
        )
    assert layout(workload(1e6), book).cheapest_label == "vps:digitalocean-512mb $4.00/month"


def test_break_evens_are_told_in_words_short_on_the_chart_in_full_below(
    tmp_path: Path, book: PriceBook
) -> None:
    root = svg(tmp_path, book, FREE_LAMBDA)
    marks = crossings(FREE_LAMBDA, book)
    assert len(marks) == 2
    notes = text_of(root, "notes")
    for n, mark in enumerate(marks):
        assert mark.sentence in " ".join(notes.split())  # the notes wrap long lines
        assert text_of(root, f"break-even-{n}") == mark.label
        assert "updates a month" not in mark.label and "(" not in mark.label
    assert marks[0].label.startswith(
        f"Lambda cheaper below {count_label(marks[0].updates)}, a VPS above:\n"
    )


def test_a_line_that_ends_is_marked_and_says_why(tmp_path: Path, book: PriceBook) -> None:
    w = workload(1e6)
    root = svg(tmp_path, book, w)
    chart = layout(w, book)
    assert [e.option for e in chart.endings] == ["heroku:eco", "heroku:basic"]
    notes = " ".join(text_of(root, "notes").split())
    for ending in chart.endings:
        assert root.find(f".//*[@id='end-{element_id(ending.option)}']") is not None
        assert text_of(root, f"ends-{element_id(ending.option)}") == f"({ending.number})"
        assert f"({ending.number}) {ending.option} no longer fits at 274M" in notes
        assert ending.why in notes and "runs one web dyno" in ending.why


def test_zero_is_drawn_at_zero_on_a_scale_linear_below_a_dollar(
    tmp_path: Path, book: PriceBook
) -> None:
    chart = layout(FREE_LAMBDA, book)
    free = chart.lines["lambda:arm64+function-url"][0]
    assert free is not None and free < 0.005  # a free option: it costs (almost) nothing
    ax = figure(chart).axes[0]
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] == 0
    (line,) = [li for li in ax.get_lines() if li.get_gid() == "option-lambda-arm64-function-url"]
    at = ax.transData.transform([(chart.volumes[0], line.get_ydata()[0])])[0][1]  # type: ignore[index]
    bottom = ax.transData.transform([(chart.volumes[0], 0.0)])[0][1]
    assert abs(at - bottom) < 0.5  # on the $0 line, not lifted to a floor
    texts = {
        "".join(n.itertext()).strip() for n in svg(tmp_path, book, FREE_LAMBDA).iter(f"{SVG}text")
    }
    assert {"$0", "$1", "$10"} <= texts and "$0.1" not in texts
    assert any("linear from $0 to $1" in t for t in texts)


def test_every_option_of_a_host_has_its_own_colour_dash_and_marker(
    tmp_path: Path, book: PriceBook
) -> None:
    root = svg(tmp_path, book, workload(1e6))
    drawn: dict[str, tuple[str, str, str]] = {}
    for option in options(workload(1e6), book):
        group = root.find(f".//{SVG}g[@id='{element_id(option.key)}']")
        assert group is not None
        line = next(p for p in group.iter(f"{SVG}path") if "stroke-width" in p.get("style", ""))
        style = dict(
            part.split(":", 1) for part in line.get("style", "").replace(" ", "").split(";") if part
        )
        marker = group.find(f"{SVG}defs/{SVG}path")
        assert marker is not None, option.key  # every line shows its markers
        drawn[option.key] = (
            style["stroke"],
            style.get("stroke-dasharray", "none"),
            marker.get("d", ""),
        )
    for target in ("heroku", "lambda", "vps"):
        mine = [v for k, v in drawn.items() if k.startswith(target + ":")]
        for part in range(3):  # colours, dashes, markers: all different within the host
            assert len({v[part] for v in mine}) == len(mine), (target, part)


def test_lines_that_coincide_are_named_together(book: PriceBook) -> None:
    styles = layout(workload(1e6), book).styles
    assert styles["lambda:x86_64+function-url"].note == (
        "within 2% of lambda:arm64+function-url below 133M"
    )
    assert (
        styles["lambda:x86_64+function-url"].marks_at
        != styles["lambda:arm64+function-url"].marks_at
    )
    assert styles["vps:digitalocean-512mb"].note == ""  # $4.00 and $4.85 are told apart


def test_tick_labels_read_as_people_say_them() -> None:
    counts = (1e3, 1e4, 1e6, 1e8, 1e9, 500, 1_500, 999_999)
    assert [count_label(v) for v in counts] == [
        "1k",
        "10k",
        "1M",
        "100M",
        "1B",
        "500",
        "1.5k",
        "1M",
    ]
    assert [usd_label(v) for v in (0, 0.1, 1, 10, 100, 1000)] == [
        "$0",
        "$0.1",
        "$1",
        "$10",
        "$100",
        "$1,000",
    ]


def test_serving_the_app_and_the_costs_api_never_imports_matplotlib() -> None:
    script = (
        "import sys, portabot.app\n"
        "from portabot.web.costs import comparison, parse_workload\n"
        "comparison(parse_workload({'updates': '1000000'}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'numpy')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
