"""AWS Lambda's entry point, `handler.handler`: the portabot app behind Mangum."""

from __future__ import annotations

import os

from mangum import Mangum

from core.app import create_app
from core.settings import load_settings

# A container serves one request at a time, so one connection is all it can use; the pool's
# size is also what ReservedConcurrency multiplies into the database's connection count.
os.environ.setdefault("DATABASE_POOL_SIZE", "1")

app = create_app(load_settings())

# lifespan="off": Mangum would run startup and shutdown around every invocation
# (Kludex/mangum#342). The database connects on the first request and stays for warm ones, on
# the one event loop Mangum keeps for the container.
handler = Mangum(app, lifespan="off")
