"""The processes a scenario runs: started with their output in a log, ready when they answer on
loopback, stopped by their own pid; and what /proc says about their memory."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from portabot.testing.fakes import free_port as free_port  # the scenarios take it from here

ROOT = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    """A scenario that could not be measured; the message is one line."""


@dataclass
class Process:
    """A child process whose output goes to `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise BenchError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextmanager
def running(
    name: str,
    command: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> Iterator[Process]:
    """Start `command`; SIGTERM (then SIGKILL) it on the way out."""
    with log.open("wb") as output:
        popen = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    process = Process(name, popen, log)
    try:
        yield process
    finally:
        process.stop()


def wait_until_answering(url: str, process: Process, timeout: float = 60) -> None:
    """Until a GET of `url` gets any HTTP answer (a 404 is an answer: the server is up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            pass
        process.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{process.name} did not answer {url} in {timeout:.0f} s")
        time.sleep(0.05)


def children(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            found.append(int(name))
    return found


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (the peak) of a process, in MB (10^6 bytes)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key.lower()] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
    return values


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used, user and system (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_environment(**values: str) -> dict[str, str]:
    """The caller's environment without anything that would configure the bot or gunicorn
    behind our back, plus `values`."""
    dropped = ("DATABASE_", "TELEGRAM_", "VK_", "BOT_", "SESSION_", "PUBLIC_URL", "OUTBOX_")
    others = ("PORT", "BIND", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "LOG_LEVEL", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k not in others}
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    env.pop("DYNO", None)
    return {**env, **values}
