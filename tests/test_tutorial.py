"""The README's tutorial ("Write your own bot") is code that works as an author would save it:
its blocks, put together into `orders.py` and `test_orders.py`, pass their own tests (and a wrong
expected reply in the README fails them), `mypy --strict`, `ruff check` and `ruff format`, and the
line counts its closing note quotes against the aiogram 3 version are the true ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from portabot.conversation.loader import load_flow
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
AIOGRAM = ROOT / "docs" / "tutorial" / "aiogram_orders.py"
FILES = ("orders.py", "test_orders.py")


def section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Write your own bot\n", 1)[1].split("\n## ", 1)[0]


def extracted(name: str) -> str:
    """The file an author saves: the section's python blocks whose first line names it (`# name
    — ...` opens it, `# name, continued` goes on with it), in order, without the markers."""
    parts = []
    for block in re.findall(r"```python\n(.*?)```", section(), re.DOTALL):
        first, _, rest = block.partition("\n")
        if first == f"# {name}, continued":
            parts.append(rest)
        elif first.startswith(f"# {name} "):
            parts.append(block)
    assert parts and parts[0].startswith(f"# {name} "), f"no block opens {name}"
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def code_lines(source: str) -> int:
    """Lines that are neither blank nor only a comment (a docstring counts: it is code)."""
    return sum(1 for line in source.splitlines() if line.strip() and line.lstrip()[:1] != "#")


@pytest.fixture
def author(tmp_path: Path) -> Path:
    """A folder holding the tutorial's two files, and nothing else."""
    for name in FILES:
        (tmp_path / name).write_text(extracted(name), encoding="utf-8")
    return tmp_path


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A tool of this venv, run in the author's folder the way the tutorial says to run it (no
    project configuration applies there: the folder is outside the repository)."""
    command = [sys.executable, "-m", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=folder, timeout=300)


def pytest_in(folder: Path) -> subprocess.CompletedProcess[str]:
    return run(folder, "pytest", "-q", "-p", "no:cacheprovider", "test_orders.py")


def test_every_python_block_of_the_tutorial_is_part_of_a_file() -> None:
    blocks = re.findall(r"```python\n(.*?)\n", section())
    assert blocks and all(
        first.startswith(tuple(f"# {name}" for name in FILES)) for first in blocks
    ), blocks


def test_the_tutorial_bot_passes_its_own_tests(author: Path) -> None:
    done = pytest_in(author)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_a_wrong_reply_in_the_tutorial_fails_its_tests(author: Path) -> None:
    test = author / "test_orders.py"
    source = test.read_text(encoding="utf-8")
    assert source.count('"Please answer S, M or L."') == 1
    test.write_text(source.replace("Please answer S, M or L.", "Please answer S or M."), "utf-8")
    done = pytest_in(author)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 2 passed" in done.stdout
    assert "Please answer S or M." in done.stdout


def test_the_tutorial_passes_mypy_strict(author: Path) -> None:
    checked = run(author, "mypy", "--strict", "--no-incremental", *FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_tutorial_is_as_ruff_formats_and_checks_it(author: Path) -> None:
    # The line length is the project's, with which `ruff format` keeps the README's blocks.
    formatted = run(author, "ruff", "format", "--isolated", "--line-length=100", "--diff", *FILES)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    # The project's rules: typographic signs (× and –) are on purpose.
    rules = ["--select", "E,F,W,I,B,UP,SIM,RUF", "--ignore", "RUF001"]
    checked = run(author, "ruff", "check", "--isolated", "--line-length=100", *rules, *FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_run_command_serves_the_tutorial_flow(
    author: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert re.findall(r"```sh\n(.*?)\n```", section()) == [
        "BOT_FLOW=orders:flow .venv/bin/portabot serve --reload"
    ]
    monkeypatch.chdir(author)
    try:
        flow = load_flow(make_settings(bot_flow="orders:flow"))
    finally:
        sys.modules.pop("orders", None)
    assert [feature.name for feature in flow.features] == ["linking"]


def test_the_tutorial_bot_is_shorter_than_aiogram_s_and_says_by_how_much() -> None:
    ours = code_lines(extracted("orders.py"))
    theirs = code_lines(AIOGRAM.read_text(encoding="utf-8"))
    assert ours < theirs
    note = " ".join(section().split())
    quoted = r"(\d+) lines of code \(not counting blank lines and comments\) against portabot's"
    quoted += r" (\d+)"
    assert re.findall(quoted, note) == [(str(theirs), str(ours))]
