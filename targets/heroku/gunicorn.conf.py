"""gunicorn on a Heroku dyno: uvicorn workers serving portabot.app:app on $PORT, logs to stdout."""

import os

_ON = {"1", "on", "t", "true", "y", "yes"}  # what the app's settings read as on

wsgi_app = "portabot.app:app"
# uvicorn's worker with httptools and at most MAX_CONNECTIONS connections a worker (core/app.py).
# httptools bounds no header, but Heroku's router does: it refuses a request line or a header line
# over 8 KB before anything reaches the dyno.
worker_class = "portabot.worker.Worker"
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Heroku sets WEB_CONCURRENCY from the dyno's memory; each worker holds up to DATABASE_POOL_SIZE
# connections, so mind the Postgres plan's limit (`portabot check --target heroku` does the sums).
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# The router gives up on a request after 30 s (H12): answer (or fail, and be re-delivered) first.
timeout = 25
# Heroku sends SIGTERM and waits 30 s before SIGKILL: let requests in flight finish.
graceful_timeout = 25
# Only Heroku's router can reach the dyno; trust its X-Forwarded-* headers.
forwarded_allow_ips = "*"
control_socket_disable = True  # gunicorn 25+ would open one in ~/.gunicorn
# A line per request only with ACCESS_LOG=on: Heroku's router logs every request already (with
# its status and time), and the line costs a worker about 6% of its CPU under load.
accesslog = "-" if os.environ.get("ACCESS_LOG", "").strip().lower() in _ON else None
errorlog = "-"
