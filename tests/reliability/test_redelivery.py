"""Re-delivery under load, as a VPS runs the bot (gunicorn, four uvicorn workers, PostgreSQL):
each update delivered three times at once is processed once and answered once, on Telegram and
on VK; and one person's burst of messages spread over the workers loses none."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import query
from tests.reliability.load import (
    ECHO_FLOW,
    PLATFORMS,
    Answer,
    Gunicorn,
    deliver,
    fake_platforms,
    gunicorn,
    measure,
    plan,
    read_stored,
    recorded,
    tally,
)

WORKERS = 4
UPDATES = 1000
"""Distinct updates per platform, as in the load script: about 10 s each on this 2-core machine."""
COPIES = 3
PER_PERSON = 5
"""A person's updates follow each other, so several of theirs are in flight at once."""
BURST = 500


@pytest.fixture(scope="module")
def fakes() -> Iterator[str]:
    with fake_platforms() as url:
        yield url


@pytest.fixture
def bot(empty_postgres: str, fakes: str, tmp_path: Path) -> Iterator[Gunicorn]:
    """The counting bot with a second reply (Telegram sends that one through sendMessage)."""
    log = tmp_path / "gunicorn.log"
    with gunicorn(empty_postgres, fakes, workers=WORKERS, flow=ECHO_FLOW, log=log) as server:
        yield server
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_update_delivered_three_times_at_once_is_processed_and_answered_once(
    bot: Gunicorn, fakes: str, empty_postgres: str, platform: str
) -> None:
    planned = plan(platform, UPDATES, per_person=PER_PERSON)
    report = measure(bot, fakes, empty_postgres, planned, copies=COPIES, echo=True)
    print(report.summary())
    assert report.sent == UPDATES * COPIES and report.errors == 0
    [stored] = query(empty_postgres, "SELECT platform, count(*) AS n FROM updates GROUP BY 1")
    assert stored == {"platform": platform, "n": UPDATES}
    assert (report.processed, report.counted) == (UPDATES, UPDATES)
    assert (report.duplicate_updates, report.lost_updates) == (0, 0)
    # Every person got "That was message 1." up to their count, and each text back, once each.
    assert report.replies == 2 * UPDATES
    assert (report.duplicate_replies, report.lost_replies, report.unsent) == (0, 0, 0)
    if platform == "telegram":  # one copy's response carries the first reply, the others none
        assert report.inline_replies == UPDATES
    else:  # VK never even saw a repeated random_id: each reply was sent once
        assert (report.inline_replies, report.vk_dropped) == (0, 0)
    assert report.workers_used > 1, "the load did not reach more than one worker"


def test_one_persons_burst_over_every_worker_loses_no_update(
    bot: Gunicorn, fakes: str, empty_postgres: str
) -> None:
    planned = plan("telegram", BURST, per_person=BURST)
    report = measure(bot, fakes, empty_postgres, planned, copies=1, concurrency=BURST, echo=True)
    print(report.summary())
    assert report.errors == 0
    [person] = query(empty_postgres, "SELECT data FROM people")
    assert json.loads(person["data"])["count"] == BURST
    # Had two workers read the same count, two replies would say the same number.
    assert (report.duplicates, report.lost, report.replies) == (0, 0, 2 * BURST)
    assert report.workers_used > 1, "the burst did not reach more than one worker"


def test_two_workers_that_remember_one_person_race_on_their_updates(
    fakes: str, empty_postgres: str, tmp_path: Path
) -> None:
    """Both workers step the person from what they remember and save in one statement that
    holds only if the person's version has not moved: the one that lost the race finds it
    moved, reads the person again and steps again, so no count is taken twice or skipped."""
    most_warm, race = 200, 200
    planned = plan("telegram", most_warm + race, per_person=most_warm + race)  # one person
    log = tmp_path / "gunicorn.log"
    with gunicorn(
        empty_postgres, fakes, workers=2, flow=ECHO_FLOW, log=log, LOG_LEVEL="DEBUG"
    ) as server:
        # Until both workers have handled the person, so both remember them (one of them out of
        # date): the race below starts from warm memories on both sides.
        first: list[Answer] = []
        warm = 0
        while server.workers_on_the_database(empty_postgres) < 2:
            assert warm < most_warm, "the kernel never gave the second worker an update"
            chunk = planned[warm : warm + 10]
            first += asyncio.run(deliver(server.url, chunk, copies=1, concurrency=5))
            warm += len(chunk)
        planned = planned[: warm + race]
        then = asyncio.run(deliver(server.url, planned[warm:], copies=1, concurrency=race))
        report = tally(
            planned,
            first + then,
            read_stored(empty_postgres, planned),
            recorded(fakes),
            echo=True,
            workers=2,
        )
    output = server.output()
    assert "Traceback" not in output
    assert "its person moved on, stepping again" in output  # the race was lost, and told
    print(report.summary())
    assert report.errors == 0
    [person] = query(empty_postgres, "SELECT data, version FROM people")
    assert json.loads(person["data"])["count"] == warm + race
    assert person["version"] == warm + race  # each update saved the count once
    assert (report.duplicates, report.lost, report.replies) == (0, 0, 2 * (warm + race))
