"""Per update, on PostgreSQL: database round trips counted on the wire by our proxy, and outbound
calls counted at the fake Bot API; updates sent one at a time to portabot under gunicorn, first
the first contact of new people, then an ordinary update of each of them (the worker remembers
them: warm), then one more from each after a restart (a worker that has not seen them: cold)."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.database import address, fresh_postgres, with_address
from bench.pgwire import ROUND_TRIPS, CountingProxy, counting_proxy
from bench.processes import BenchError
from bench.throughput import SECRET, WEBHOOK, Setup, gunicorn, portabot_environment

FIRST_UPDATE = 800_000_000
FIRST_USER = 6_100_000_000
WARM_UP_PEOPLE = 20
COUNTED = "round trips = client Sync ('S') + simple Query ('Q') messages seen by the proxy"


@dataclass
class Sender:
    """Posts Telegram updates one at a time on one keep-alive connection, as Telegram does."""

    connection: http.client.HTTPConnection
    next_update: int = FIRST_UPDATE

    def send(self, user: int) -> tuple[bool, float]:
        """Posts an update from `user`; returns whether its reply rode in the response, and the
        time it took."""
        self.next_update += 1
        body = json.dumps(
            {
                "update_id": self.next_update,
                "message": {
                    "message_id": self.next_update,
                    "from": {"id": user, "is_bot": False, "first_name": "Ann"},
                    "chat": {"id": user, "type": "private", "first_name": "Ann"},
                    "date": 1_795_484_400,
                    "text": "hello",
                },
            }
        )
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
        started = time.perf_counter()
        self.connection.request("POST", WEBHOOK, body, headers)
        response = self.connection.getresponse()
        answer = response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise BenchError(f"update {self.next_update} got {response.status}: {answer[:200]!r}")
        return b'"method"' in answer, seconds


def phase(sender: Sender, proxy: CountingProxy, setup: Setup, users: range) -> dict[str, Any]:
    """One update from each of `users`; what it took per update."""
    setup.fake.reset()
    before = proxy.snapshot()
    inline, seconds = 0, []
    for user in users:
        replied, took = sender.send(user)
        inline += replied
        seconds.append(took)
    # Nothing is left to count: the webhook answers only after its API calls and its COMMIT.
    messages = proxy.snapshot() - before
    api = setup.fake.stats()
    n = len(users)
    return {
        "updates": n,
        "round_trips_per_update": round(sum(messages[k] for k in ROUND_TRIPS) / n, 2),
        "messages_per_update": {k: round(v / n, 2) for k, v in sorted(messages.items())},
        "outbound_calls_per_update": round(api.total / n, 3),
        "inline_replies_per_update": round(inline / n, 3),
        "median_ms": round(statistics.median(seconds) * 1000, 2),
    }


def measure(setup: Setup, updates: int) -> dict[str, Any]:
    fresh_postgres(setup.postgres_url)
    with counting_proxy(address(setup.postgres_url)) as proxy:
        database_url = with_address(setup.postgres_url, "127.0.0.1", proxy.port)
        env = portabot_environment(database_url, setup.fake.url)
        warm_up = range(FIRST_USER, FIRST_USER + WARM_UP_PEOPLE)
        people = range(FIRST_USER + WARM_UP_PEOPLE, FIRST_USER + WARM_UP_PEOPLE + updates)
        with gunicorn("round-trips", setup, env) as server:
            sender = Sender(connect(server.url))
            phase(sender, proxy, setup, warm_up)  # statements prepared, connections made
            phase(sender, proxy, setup, warm_up)
            first = phase(sender, proxy, setup, people)
            ordinary = phase(sender, proxy, setup, people)
            sender.connection.close()
            server.process.check_alive()
        with gunicorn("round-trips", setup, env) as server:  # a worker that remembers no one
            sender.connection = connect(server.url)  # update ids go on from the first worker's
            phase(sender, proxy, setup, warm_up)  # its statements prepared too
            phase(sender, proxy, setup, warm_up)
            cold = phase(sender, proxy, setup, people)
            sender.connection.close()
            server.process.check_alive()
    return {"first_contact": first, "ordinary": ordinary, "cold": cold, "counted": COUNTED}


def connect(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)
