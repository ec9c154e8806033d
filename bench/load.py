"""The load: wrk (1 thread, 32 connections) posting Telegram updates with distinct update_ids from
a spread of people, the secret header on each; its Lua script counts 2xx answers and answers that
carry a Bot API call (a reply riding in the webhook response) and prints them as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bench.processes import BenchError

THREADS = 1
CONNECTIONS = 32
PEOPLE = 1_000
FIRST_USER = 5_100_000_000
"""Telegram user ids are this large today; chat id = user id (private chats)."""
MARK = "BENCH-WRK "

SCRIPT = Template(r"""
local path, secret = "$path", "$secret"
local first_update, first_user, people = $first_update, $first_user, $people
local kind = "$kind"
local threads, created = {}, 0

function setup(thread)
  thread:set("index", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  sent, ok, failed, replies = 0, 0, 0, 0
  math.randomseed(1000 + index)
  headers = {["Content-Type"] = "application/json"}
  if secret ~= "" then headers["X-Telegram-Bot-Api-Secret-Token"] = secret end
end

function request()
  sent = sent + 1
  local id = first_update + index * 100000000 + sent
  local user = first_user + math.random(people) - 1
  local body
  if kind == "send" then
    body = string.format('{"chat_id":%.0f,"text":"message %.0f"}', user, id)
  else
    body = string.format(
      '{"update_id":%.0f,"message":{"message_id":%.0f,"from":{"id":%.0f,"is_bot":false,' ..
      '"first_name":"Ann","username":"ann_k","language_code":"en"},"chat":{"id":%.0f,' ..
      '"first_name":"Ann","username":"ann_k","type":"private"},"date":1795484400,' ..
      '"text":"message %.0f"}}', id, sent, user, user, id)
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else failed = failed + 1 end
  if body ~= nil and string.find(body, '"method"', 1, true) then replies = replies + 1 end
end

function done(summary, latency, requests)
  local ok_all, failed_all, replies_all = 0, 0, 0
  for _, thread in ipairs(threads) do
    ok_all = ok_all + thread:get("ok")
    failed_all = failed_all + thread:get("failed")
    replies_all = replies_all + thread:get("replies")
  end
  local e = summary.errors
  io.write(string.format(
    '$mark{"requests":%d,"duration_us":%d,"ok":%d,"failed":%d,"inline_replies":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, ok_all, failed_all, replies_all,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout))
end
""")


@dataclass(frozen=True)
class Load:
    """What wrk saw, and when it ran (time.monotonic() of this process)."""

    requests: int
    ok: int
    failed: int
    inline_replies: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    started: float

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    @property
    def acks_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """wrk's path; installed with apt-get when missing and we are root, else a one-line error."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("bench: wrk is missing; install it with `sudo apt-get install -y wrk`")
    print("bench: installing wrk (apt-get install -y wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True, check=False)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is missing and `apt-get install -y wrk` did not install it")
    return found


def write_script(
    directory: Path, *, path: str, secret: str, first_update: int, kind: str = "update"
) -> Path:
    script = directory / f"load-{kind}-{first_update}.lua"
    script.write_text(
        SCRIPT.substitute(
            path=path,
            secret=secret,
            first_update=first_update,
            first_user=FIRST_USER,
            people=PEOPLE,
            kind=kind,
            mark=MARK,
        )
    )
    return script


def run_wrk(url: str, script: Path, seconds: float) -> Load:
    """wrk against `url` for `seconds`; generous timeout so a slow answer is a latency, not an
    error."""
    command = [
        ensure_wrk(),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-300:]}")
    found = json.loads(lines[-1][len(MARK) :])
    return Load(
        requests=found["requests"],
        ok=found["ok"],
        failed=found["failed"],
        inline_replies=found["inline_replies"],
        seconds=found["duration_us"] / 1e6,
        p50_ms=found["p50_us"] / 1e3,
        p99_ms=found["p99_us"] / 1e3,
        max_ms=found["max_us"] / 1e3,
        socket_errors=sum(
            found[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        started=started,
    )
