"""What a deployment's processes ask of its database: the connections they open, counted one
way for `portabot check --target` (the configuration as it is set) and `portabot costs` (the
database plan a workload needs). Pure arithmetic: nothing here imports a driver or settings."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INSTANCES = {"heroku": 1, "lambda": 10, "vps": 1}
"""Web dynos, Lambda's reserved concurrency (the SAM template's default), machines."""
DEFAULT_MAX_CONNECTIONS = {"heroku": 20, "lambda": 100, "vps": 100}
"""Heroku Postgres Essential-0's limit; PostgreSQL's own default (max_connections) elsewhere."""
DEFAULT_WORKERS = 2
"""gunicorn workers when WEB_CONCURRENCY is unset (both gunicorn.conf.py files)."""
DEFAULT_POOL_SIZE = 4
"""DATABASE_POOL_SIZE's default: connections one worker process may hold."""
DEFAULT_WORKER_DYNOS = 0
"""Heroku dynos of the Procfile's `worker:` type (`portabot poll`): off until scaled up."""
DEFAULT_CLOCK_DYNOS = 0
"""Heroku dynos of the Procfile's `clock:` type (`portabot tick --every 60`): off until scaled
up."""
DEFAULT_SCHEDULER_DYNOS = 1
"""Heroku Scheduler's one-off dynos running `portabot maintain` at once (one hourly job)."""
MAINTAIN_CONNECTIONS = 2
"""`portabot maintain`: a pool of one, and its advisory lock's own connection."""
ONE_OFF = 1
"""Room for `portabot migrate` (a release phase) or an operator's console."""


@dataclass(frozen=True, slots=True)
class Connections:
    """The connections a deployment opens at most, term by term."""

    terms: tuple[tuple[int, str], ...]

    @property
    def needed(self) -> int:
        return sum(count for count, _ in self.terms) + ONE_OFF

    def sentence(self, limit: int) -> str:
        """The sum in words, as in "2 web dynos × 2 workers × DATABASE_POOL_SIZE 4 + … + 1 = 19
        connections of the database's 20"."""
        parts = " + ".join(text for _, text in self.terms)
        return f"{parts} + {ONE_OFF} = {self.needed} connections of the database's {limit}"


def connections(
    target: str,
    instances: int,
    *,
    workers: int = DEFAULT_WORKERS,
    pool: int = DEFAULT_POOL_SIZE,
    worker_dynos: int = DEFAULT_WORKER_DYNOS,
    clock_dynos: int = DEFAULT_CLOCK_DYNOS,
    scheduler_dynos: int = DEFAULT_SCHEDULER_DYNOS,
) -> Connections:
    """What `instances` web dynos, machines or concurrent Lambda containers open: each web
    worker its pool; a Lambda container one connection; on Heroku also the `worker:` dynos
    (`portabot poll`), the `clock:` dynos (`portabot tick`; counted only when scaled up) and
    the Scheduler's `portabot maintain`."""
    if target == "lambda":
        plural = "" if instances == 1 else "s"
        terms = [(instances, f"{instances} concurrent Lambda container{plural} × 1 connection")]
    else:
        unit = "web dyno" if target == "heroku" else "machine"
        plural = "" if instances == 1 else "s"
        terms = [
            (
                instances * workers * pool,
                f"{instances} {unit}{plural} × {workers} workers × DATABASE_POOL_SIZE {pool}",
            )
        ]
    if target == "heroku":
        terms.append(_dynos(worker_dynos, "worker", "portabot poll", pool))
        if clock_dynos:
            terms.append(_dynos(clock_dynos, "clock", "portabot tick", pool))
        terms.append(
            _dynos(scheduler_dynos, "Scheduler", "portabot maintain", MAINTAIN_CONNECTIONS)
        )
    return Connections(tuple(terms))


def _dynos(count: int, kind: str, command: str, each: int) -> tuple[int, str]:
    """The term for `count` dynos of a kind, as in "2 worker dynos (portabot poll) × 4"."""
    return count * each, f"{count} {kind} dyno{'' if count == 1 else 's'} ({command}) × {each}"
