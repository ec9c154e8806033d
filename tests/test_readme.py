"""The README's two commands are the ones that work: CI runs the second one verbatim."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
from pathlib import Path

import pytest

from portabot.conversation.loader import load_flow
from portabot.messages import Account, Conversation, Kind, Message
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert commands[0].endswith("portabot serve")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert quick_start_commands()[1] in ci


def test_the_flow_example_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```python\n(# counter\.py.+?)```", readme, re.DOTALL)
    (tmp_path / "counter.py").write_text(example, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    flow = load_flow(make_settings(bot_flow="counter:flow"))
    message = Message(Account("web", "a", "a"), Kind.TEXT, "hi")
    conversation = Conversation()
    for n in (1, 2):
        step = asyncio.run(flow.step(conversation, message, platforms=("web",), now=0.0))
        conversation = step.conversation
        assert [r.text for r in step.replies] == [f"That was message {n}."]


@pytest.mark.parametrize(
    ("module", "test"),
    [
        ("counter", "test_counting_and_linking"),
        ("menu", "test_a_size_is_picked_and_confirmed"),
        ("deadline", "test_the_deadline_and_the_price"),
    ],
)
def test_the_testing_examples_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, test: str
) -> None:
    """`# <module>.py` and `# test_<module>.py`, saved as the README names them: the test
    passes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = (module, f"test_{module}")
    for name in names:
        [example] = re.findall(rf"```python\n(# {name}\.py.+?)```", readme, re.DOTALL)
        (tmp_path / f"{name}.py").write_text(example, encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    try:
        getattr(importlib.import_module(f"test_{module}"), test)()
    finally:
        for name in names:
            sys.modules.pop(name, None)
