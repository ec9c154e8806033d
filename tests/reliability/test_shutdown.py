"""gunicorn stopped with SIGTERM in the middle of a load, as `systemctl stop` or a deploy does:
what was in flight finishes, nothing is half done, and what got no answer is processed exactly
once when the platform delivers it again to the next gunicorn on the same database."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from portabot.pipeline import RESEND_AFTER
from tests.conftest import query
from tests.reliability.load import (
    ECHO_FLOW,
    PLATFORMS,
    Answer,
    Gunicorn,
    Planned,
    deliver,
    delivered_replies,
    fake_platforms,
    graceful_timeout,
    gunicorn,
    plan,
    query_stored,
    read_stored,
    recorded,
    slow_down,
    tally,
)

WORKERS = 4
UPDATES = 900
PER_PERSON = 5
STOP_AFTER = UPDATES // 3
"""Answers received before SIGTERM: the load is in full swing by then."""


async def load_then_stop(server: Gunicorn, planned: list[Planned]) -> tuple[list[Answer], float]:
    """Deliver every update once; SIGTERM the master midway and go on delivering, as a platform
    does. Returns the answers and when the signal was sent."""
    answers: list[Answer] = []
    load = asyncio.create_task(deliver(server.url, planned, concurrency=32, answers=answers))
    while len(answers) < STOP_AFTER:
        await asyncio.sleep(0.001)
    server.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    await load
    return answers, stopped_at


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sigterm_under_load_loses_nothing_and_does_nothing_twice(
    empty_postgres: str, tmp_path: Path, platform: str
) -> None:
    planned = plan(platform, UPDATES, per_person=PER_PERSON)
    with fake_platforms() as fakes:
        with gunicorn(
            empty_postgres, fakes, workers=WORKERS, flow=ECHO_FLOW, log=tmp_path / "first.log"
        ) as first:
            answers, stopped_at = asyncio.run(load_then_stop(first, planned))
            status = first.process.wait(graceful_timeout() + 10)
            took = time.monotonic() - stopped_at
        output = first.output()
        assert status == 0, output
        assert took < graceful_timeout(), f"gunicorn took {took:.1f} s to stop"
        assert "Traceback" not in output and "Shutting down: Master" in output

        # Every request got a whole HTTP response or failed to connect: no 5xx, no half answer.
        assert {a.status for a in answers} <= {200, None}
        finished = [a for a in answers if a.status == 200 and a.answered_at > stopped_at]
        assert finished, "no request was in flight when SIGTERM came"
        acknowledged = [a.update for a in answers if a.status == 200]
        unanswered = [a.update for a in answers if a.status is None]
        assert unanswered, "gunicorn stopped after the load was over"

        # What was acknowledged is stored with its effects and replies; nothing else is stored.
        before = read_stored(empty_postgres, planned)
        assert before.updates == {u.update_id for u in acknowledged}
        done = tally(acknowledged, answers, before, recorded(fakes), echo=True)
        assert (done.duplicates, done.lost, done.unsent) == (0, 0, 0), done

        # The platform delivers the rest again, to a new gunicorn on the same database.
        with gunicorn(
            empty_postgres, fakes, workers=WORKERS, flow=ECHO_FLOW, log=tmp_path / "second.log"
        ) as second:
            again = asyncio.run(deliver(second.url, unanswered))
        assert {a.status for a in again} == {200}
        assert "Traceback" not in second.output()

        stored = read_stored(empty_postgres, planned)
        everything = tally(planned, answers + again, stored, recorded(fakes), echo=True)
    print(
        f"{platform}: SIGTERM after {STOP_AFTER} answers; {len(finished)} requests in flight "
        f"finished after it; {len(unanswered)} got no answer and were delivered again; "
        f"gunicorn stopped in {took:.1f} s"
    )
    assert (everything.processed, everything.counted) == (UPDATES, UPDATES)
    assert (everything.duplicates, everything.lost, everything.unsent) == (0, 0, 0), everything
    assert everything.replies == 2 * UPDATES


async def stop_once_committed(
    server: Gunicorn, planned: list[Planned], database_url: str
) -> list[Answer]:
    """Deliver, and SIGTERM the master once every update's transaction has committed."""
    answers: list[Answer] = []
    load = asyncio.create_task(deliver(server.url, planned, answers=answers))
    async with asyncio.timeout(30):
        while len((await query_stored(database_url, planned)).updates) < len(planned):
            await asyncio.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    await load
    return answers


def test_a_telegram_reply_survives_a_worker_killed_after_the_commit(
    empty_postgres: str, tmp_path: Path
) -> None:
    """The webhook answers only after sending the further replies, so a Bot API that hangs keeps
    the request past graceful_timeout and gunicorn kills the worker after the commit. Here 1 s
    and a 4 s API; the VPS config's 20 s does the same with an API that hangs for 30 s. The
    re-delivery is a duplicate, and it carries the inline reply the killed worker never sent."""
    planned = plan("telegram", 10, per_person=1)
    with fake_platforms() as fakes:
        slow_down(fakes, 4)
        with gunicorn(
            empty_postgres,
            fakes,
            workers=WORKERS,
            flow=ECHO_FLOW,
            log=tmp_path / "first.log",
            GUNICORN_CMD_ARGS="--graceful-timeout 1",
        ) as first:
            answers = asyncio.run(stop_once_committed(first, planned, empty_postgres))
        if {a.status for a in answers} != {None}:
            pytest.fail("the worker answered before it was killed: the scenario did not happen")
        slow_down(fakes, 0)
        # Telegram tries again later than RESEND_AFTER (after its own timeout).
        query(empty_postgres, f"UPDATE inline_replies SET replied_at = replied_at - {RESEND_AFTER}")
        with gunicorn(
            empty_postgres, fakes, workers=WORKERS, flow=ECHO_FLOW, log=tmp_path / "second.log"
        ) as second:
            again = asyncio.run(deliver(second.url, planned))  # Telegram tries again
        if {a.status for a in again} != {200}:
            pytest.fail(f"the re-delivery was not acknowledged: {again}")
        inline, api = delivered_replies(planned, answers + again, recorded(fakes))
    # Each update was processed once; the further replies wait in the outbox for their lease.
    stored = read_stored(empty_postgres, planned)
    if not len(stored.updates) == sum(stored.counts.values()) == len(planned):
        pytest.fail(f"an update was lost or processed twice: {stored}")
    got = inline + api
    missing = [u.user_id for u in planned if not got[(u.user_id, "That was message 1.")]]
    assert missing == [], f"{len(missing)} people never got their first reply"
