"""`portabot costs --chart`: an SVG to commit or a PNG to look at, drawn only when asked for."""

from __future__ import annotations

import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from portabot.costs.chart import count_label, crossings, draw, element_id, usd_label, volumes
from portabot.costs.model import SECONDS, Workload, best_per_target, options
from portabot.costs.prices import PriceBook
from tests.test_cli import portabot

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load()


def workload(updates: float = 100_000) -> Workload:
    return Workload(updates=updates, peak=max(updates / SECONDS * 10, 0.01))


def test_the_svg_has_a_line_per_option_the_workload_and_the_break_evens(
    tmp_path: Path, book: PriceBook
) -> None:
    w = workload()
    path = tmp_path / "costs.svg"
    draw(w, book, path)
    root = ET.parse(path).getroot()
    ids = {node.get("id") for node in root.iter()}
    keys = [option.key for option in options(w, book)]
    assert {element_id(key) for key in keys} <= ids
    assert {"workload", "break-evens"} <= ids
    texts = {"".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")}
    assert set(keys) <= texts  # the legend names every option
    assert "your workload: 100k updates a month" in texts
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
    marks = crossings(workload(), book)
    assert marks
    for mark in marks:
        near = [best_per_target(workload().at(mark.updates * f), book) for f in (0.999, 1.001)]
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
    assert [usd_label(v) for v in (0.1, 1, 10, 100, 1000)] == [
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
