"""A fresh Lambda container, as far as Python sees it: this file, run by a new interpreter, loads
targets/lambda/handler.py from its file as Lambda does, hands it a Telegram update in a function
URL event, then `warm` more updates of the same person; prints one JSON line with the moments
(time.monotonic(), comparable with the parent's) and the warm handler times. Standard library
only, so that it adds nothing to the start it measures.

    python bench/lambda_probe.py HANDLER_PATH UPDATE_ID USER_ID WARM SECRET
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
import time
from typing import Any


class Context:
    function_name = "portabot"
    memory_limit_in_mb = 256
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def event(update_id: int, user: int, secret: str) -> dict[str, Any]:
    """A Lambda function URL's event (payload 2.0) carrying one Telegram update."""
    body = json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id % 1_000_000,
                "from": {"id": user, "is_bot": False, "first_name": "Ann", "username": "ann_k"},
                "chat": {"id": user, "first_name": "Ann", "username": "ann_k", "type": "private"},
                "date": 1_795_484_400,
                "text": f"message {update_id}",
            },
        },
        separators=(",", ":"),
    )
    host = "bench.lambda-url.eu-central-1.on.aws"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhooks/telegram",
        "rawQueryString": "",
        "headers": {
            "content-length": str(len(body)),
            "content-type": "application/json",
            "host": host,
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": "91.108.6.81",
            "x-telegram-bot-api-secret-token": secret,
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "bench",
            "domainName": host,
            "domainPrefix": "bench",
            "http": {
                "method": "POST",
                "path": "/webhooks/telegram",
                "protocol": "HTTP/1.1",
                "sourceIp": "91.108.6.81",
                "userAgent": "",
            },
            "requestId": f"bench-{update_id}",
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": 1_795_484_400_123,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def replied(response: dict[str, Any]) -> bool:
    return response.get("statusCode") == 200 and '"sendMessage"' in (response.get("body") or "")


def main(handler_path: str, update_id: int, user: int, warm: int, secret: str) -> None:
    spec = importlib.util.spec_from_file_location("handler", handler_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    imported = time.monotonic()
    first = module.handler(event(update_id, user, secret), Context())
    answered = time.monotonic()
    warm_ms = []
    failures = 0 if replied(first) else 1
    for n in range(1, warm + 1):
        update = event(update_id + n, user, secret)
        started = time.perf_counter()
        response = module.handler(update, Context())
        warm_ms.append((time.perf_counter() - started) * 1000)
        failures += not replied(response)
    result = {
        "imported": imported,
        "replied": answered,
        "first_status": first.get("statusCode"),
        "warm_ms": warm_ms,
        "failures": failures,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6, 1),
    }
    print(json.dumps(result), flush=True)
    # A container is frozen or killed, never exited; and the app (Mangum's lifespan off) never
    # closes its database, whose aiosqlite thread would keep the interpreter from exiting.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
