"""`portabot tick` as a scheduler runs it: once, printing what it did; and `--every`, as a
Heroku clock dyno runs it, until SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from portabot.testing.fakes import FakeTelegram, free_port
from tests.conftest import TOKEN
from tests.test_cli import PORTABOT, environment, portabot
from tests.test_runner import put_due, sent_texts, wait_for


def telegram(fake: FakeTelegram, **more: str) -> dict[str, str]:
    return {"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.url, **more}


NO_JOBS = "timers: 0 fired; replies sent later: 0\ncalls: 0 answered, 0 failed, 0 to try again\n"
"""What `tick` says first when no timer or call was due."""


def test_tick_sends_the_replies_that_are_due_and_says_so(
    tmp_path: Path, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    put_due(empty_postgres, "due 1", "due 2")
    env = telegram(fake_telegram, DATABASE_URL=empty_postgres)
    first = portabot(tmp_path, "tick", **env)
    assert (first.returncode, first.stdout, first.stderr) == (
        0,
        NO_JOBS + "outbox: sent 2, failed 0\n",
        "",
    )
    assert sent_texts(fake_telegram) == ["due 1", "due 2"]
    again = portabot(tmp_path, "tick", **env)
    assert again.stdout == NO_JOBS + "outbox: sent 0, failed 0\n"
    assert len(fake_telegram.sent()) == 2


def test_tick_migrates_a_new_sqlite_file_first(tmp_path: Path) -> None:
    result = portabot(tmp_path, "tick")
    assert (result.returncode, result.stdout) == (0, NO_JOBS + "outbox: sent 0, failed 0\n"), (
        result.stderr
    )
    assert (tmp_path / "portabot.db").exists()


def test_tick_says_in_one_line_that_the_database_is_down(tmp_path: Path) -> None:
    url = f"postgresql://postgres:pw-do-not-show@127.0.0.1:{free_port()}/x"
    result = portabot(tmp_path, "tick", DATABASE_URL=url)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(
        "portabot: cannot run what is due on postgresql://postgres:********@127.0.0.1:"
    )
    assert result.stderr.count("\n") == 1 and "pw-do-not-show" not in result.stderr


def test_tick_refuses_a_postgresql_database_that_is_not_migrated(
    tmp_path: Path, new_postgres: Callable[[str], str]
) -> None:
    result = portabot(tmp_path, "tick", DATABASE_URL=new_postgres("tick-unmigrated"))
    assert result.returncode == 1
    assert result.stderr.endswith("portabot: the database is not migrated: run portabot migrate\n")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("every", ["0", "3601", "1.5", "soon"])
def test_tick_every_takes_whole_seconds_up_to_an_hour(tmp_path: Path, every: str) -> None:
    result = portabot(tmp_path, "tick", "--every", every)
    assert result.returncode == 2 and "argument --every" in result.stderr


def start_ticking(cwd: Path, log: Path, **env: str) -> subprocess.Popen[str]:
    """`portabot tick --every 1`, its output (stdout and the log) going to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [PORTABOT, "tick", "--every", "1"],
            cwd=cwd,
            env=environment(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def stop(process: subprocess.Popen[str], how: signal.Signals) -> int:
    process.send_signal(how)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def test_tick_every_runs_what_becomes_due_and_stops_on_sigterm(
    tmp_path: Path, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    log = tmp_path / "clock.log"
    process = start_ticking(tmp_path, log, **telegram(fake_telegram, DATABASE_URL=empty_postgres))
    try:
        wait_for("the first run", lambda: "what is due runs every 1 s" in log.read_text())
        put_due(empty_postgres, "while ticking")  # due after the clock started
        wait_for("the reply sent", lambda: sent_texts(fake_telegram))
        wait_for("the run logged", lambda: "what is due: outbox" in log.read_text())
    finally:
        status = stop(process, signal.SIGTERM)  # what Heroku sends a dyno it stops
    output = log.read_text()
    assert status == 0, output
    # One line for the run that did something; none for the runs that did nothing.
    assert output.count("INFO portabot.runner: what is due: ") == 1, output
    assert "what is due: outbox: sent 1, failed 0" in output
    assert output.rstrip().splitlines()[-1].startswith("stopped after ")
    assert "Traceback" not in output and TOKEN not in output
    assert sent_texts(fake_telegram) == ["while ticking"]


def test_tick_every_goes_on_through_a_database_outage_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    url = f"postgresql://postgres:pw-do-not-show@127.0.0.1:{free_port()}/x"
    log = tmp_path / "clock.log"
    process = start_ticking(tmp_path, log, DATABASE_URL=url)
    try:
        failed = "WARNING portabot.runner: running what is due failed: ConnectionRefusedError"
        wait_for("two failed runs", lambda: log.read_text().count(failed) >= 2)
        assert process.poll() is None  # still running
    finally:
        status = stop(process, signal.SIGINT)
    output = log.read_text()
    assert status == 0, output
    lines = output.splitlines()
    assert lines[0].endswith("on postgresql://postgres:********@127.0.0.1:" + url.split(":")[-1])
    assert all(failed in line for line in lines[1:-1])  # one line per failed run
    assert lines[-1].startswith("stopped after ")
    assert "Traceback" not in output and "pw-do-not-show" not in output
