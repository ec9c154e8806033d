"""The peers we compare with, each installed (pinned) into its own virtualenv under bench/.venvs/
the first time it is needed, so that nothing of theirs lands in the project's environment."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.processes import ROOT, BenchError

VENVS = ROOT / "bench" / ".venvs"
BOTS = ROOT / "bench" / "bots"


@dataclass(frozen=True)
class Peer:
    name: str
    requirements: tuple[str, ...]
    script: str
    """The echo bot, a file under bench/bots/."""
    imports: str
    """What a bot on this framework imports before it can serve: its cold start."""

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def bot(self) -> Path:
        return BOTS / self.script


AIOGRAM = Peer(
    "aiogram",
    ("aiogram==3.31.0",),
    "aiogram_echo.py",
    "import aiogram; from aiogram.webhook.aiohttp_server import SimpleRequestHandler",
)
PTB = Peer(
    "ptb",
    ("python-telegram-bot[webhooks]==22.8",),
    "ptb_echo.py",
    "import telegram.ext",
)
PEERS = {peer.name: peer for peer in (AIOGRAM, PTB)}


def ensure_installed(peer: Peer) -> Path:
    """The peer's Python, its virtualenv made and its pinned requirements installed if needed."""
    marker = peer.venv / "bench-requirements.txt"
    wanted = "\n".join(peer.requirements) + "\n"
    if peer.python.exists() and marker.exists() and marker.read_text() == wanted:
        return peer.python
    print(f"bench: installing {', '.join(peer.requirements)} into {peer.venv}", flush=True)
    # The project's interpreter makes the venv: the peers run on the same Python as portabot.
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(peer.venv)],
        [str(peer.python), "-m", "pip", "install", "-q", *peer.requirements],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"installing {peer.name} failed: {done.stderr.strip()[-300:]}")
    marker.write_text(wanted)
    return peer.python
