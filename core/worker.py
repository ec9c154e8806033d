"""gunicorn's worker for portabot: uvicorn's (httptools, uvloop), holding at most
MAX_CONNECTIONS connections. targets/heroku and targets/vps name it in gunicorn.conf.py."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from portabot.app import MAX_CONNECTIONS


class Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "limit_concurrency": MAX_CONNECTIONS,
    }
