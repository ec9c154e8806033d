"""gunicorn on a VPS: uvicorn workers serving portabot.app:app on loopback, behind Caddy; logs go to
stdout and stderr, which journald collects. GUNICORN_CMD_ARGS overrides any of these."""

import os

_ON = {"1", "on", "t", "true", "y", "yes"}  # what the app's settings read as on

wsgi_app = "portabot.app:app"
# uvicorn's worker with httptools (the benchmark's fastest, bench/) and at most MAX_CONNECTIONS
# connections a worker (core/app.py): Caddy in front bounds headers, slow clients and body sizes
# (targets/vps/Caddyfile), which httptools does not.
worker_class = "portabot.worker.Worker"
# Loopback only: Caddy terminates TLS and is the one thing that talks to us. BIND replaces the
# whole address (say unix:/run/portabot/gunicorn.sock); PORT only the port.
bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT') or 8000}"
# Each async worker serves many requests at once, so workers are for using a second core and for
# keeping one serving while another restarts: a 1-2 vCPU VPS wants 2 (each about 50 MB of RAM).
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
# Build the app in the master before forking: a BOT_FLOW that cannot load fails the start, and
# the workers share the imported code.
preload_app = True
# Not a limit on requests (an async worker keeps beating while it waits): a worker whose event
# loop is stuck this long is killed. Its update was not committed, so Telegram delivers it again.
timeout = 30
# On SIGTERM, requests in flight get this long to finish (systemd waits 30 s: TimeoutStopSec).
graceful_timeout = 20
# Longer than Caddy's 2-minute idle timeout for upstream connections: Caddy closes an idle
# connection first, so a request never races our close and gets a 502.
keepalive = 125
# Caddy connects from loopback; its X-Forwarded-For and -Proto are believed from there only.
forwarded_allow_ips = "127.0.0.1,::1"
# A line per request only with ACCESS_LOG=on: Caddy logs every request already (its `log`),
# and the line costs a worker about 6% of its CPU under load.
accesslog = "-" if os.environ.get("ACCESS_LOG", "").strip().lower() in _ON else None
errorlog = "-"
loglevel = (os.environ.get("LOG_LEVEL") or "info").lower()
# gunicornc's control socket lives in systemd's RuntimeDirectory (/run/portabot); outside systemd
# there is none (gunicorn's default, ~/.gunicorn/gunicorn.ctl, is shared by all of a user's).
if "RUNTIME_DIRECTORY" in os.environ:
    control_socket = os.path.join(os.environ["RUNTIME_DIRECTORY"], "gunicorn.ctl")
else:
    control_socket_disable = True
