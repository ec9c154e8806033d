"""Commands as people type them: `/cmd`, `/cmd args`, `/cmd@BotName args`."""

from __future__ import annotations

import pytest

from portabot.messages import parse_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", ("help", "")),
        ("/IN amber fox", ("in", "amber fox")),
        ("/in@my_bot  amber-fox ", ("in", "amber-fox")),
        ("/in@My_Bot\namber", ("in", "amber")),
        ("/in@other_bot amber", None),
        ("hello /help", None),
        ("/", None),
        ("/ help", None),
        ("", None),
    ],
)
def test_parse_command(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_command(text, "my_bot") == expected
