"""The VPS target: the systemd unit as systemd-analyze judges it, and its command lines serving the
bot as systemd would run them; gunicorn.conf.py, install.sh and the Caddyfile as far as they can
be checked without root."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from portabot.app import MAX_CONNECTIONS
from portabot.channels.base import MAX_BODY
from portabot.testing.fakes import FakeTelegram, FakeVk, free_port
from tests.conftest import (
    SECRET,
    TOKEN,
    VK_GROUP,
    VK_SECRET,
    VK_TOKEN,
    post_telegram,
    post_vk,
    query,
    say_web,
    telegram_update,
    vk_event,
)
from tests.targets.conftest import copy_checkout
from tests.test_cli import environment as cli_environment
from tests.test_runner import put_due, sent_texts, wait_for

ROOT = Path(__file__).resolve().parents[2]
VPS = ROOT / "targets" / "vps"
BIN = Path(sys.executable).parent
# In CI a missing systemd-analyze fails the run; elsewhere its tests are skipped.
REQUIRE_SYSTEMD_ANALYZE = bool(os.environ.get("CI"))
CODE_LINE = re.compile(r"^/in ([a-z]+(?:-[a-z]+)+)$", re.MULTILINE)
# Read by gunicorn and set by systemd: the tests choose them, not the caller's shell.
GUNICORN_VARIABLES = {"BIND", "PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "FORWARDED_ALLOW_IPS"}
SYSTEMD_VARIABLES = {"RUNTIME_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET", "LISTEN_PID"}

UNDER_THE_UNITS_RULES = """
import ctypes, os, platform, struct, sys

libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, arg, pointer=0):
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(pointer), 0, 0) != 0:
        sys.exit(f"prctl {option}: {os.strerror(ctypes.get_errno())}")


# MemoryDenyWriteExecute=yes: PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3 and later).
prctl(65, 1)
# RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX as systemd does it, a seccomp filter that
# fails socket() for any other family with EAFNOSUPPORT (after NoNewPrivileges=yes).
machines = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
if platform.machine() not in machines:
    sys.exit(f"no seccomp filter written for {platform.machine()}")
arch, socket_call = machines[platform.machine()]
load, equal, answer = 0x20, 0x15, 0x06
program = [
    (load, 0, 0, 4),  # seccomp_data.arch
    (equal, 0, 7, arch),
    (load, 0, 0, 0),  # seccomp_data.nr
    (equal, 0, 5, socket_call),
    (load, 0, 0, 16),  # seccomp_data.args[0]: the address family
    (equal, 3, 0, 1),  # AF_UNIX
    (equal, 2, 0, 2),  # AF_INET
    (equal, 1, 0, 10),  # AF_INET6
    (answer, 0, 0, 0x00050000 | 97),  # SECCOMP_RET_ERRNO | EAFNOSUPPORT
    (answer, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
]
filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
fprog = ctypes.create_string_buffer(struct.pack("HP", len(program), ctypes.addressof(filters)))
prctl(38, 1)  # PR_SET_NO_NEW_PRIVS
prctl(22, 2, ctypes.addressof(fprog))  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
os.execv(sys.argv[1], sys.argv[1:])
"""
"""Runs a command under two of the unit's rules that a Python stack is most likely to trip over,
enforced by the kernel as systemd would: no memory both writable and executable, and sockets of
three families only (DNS lookups must not need netlink)."""


def read_unit(text: str) -> dict[str, list[str]]:
    """Each key's values in order (keys repeat: Environment=, IPAddressAllow=, ...)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


UNIT_TEXT = (VPS / "portabot.service").read_text(encoding="utf-8")
UNIT = read_unit(UNIT_TEXT)
MAINTENANCE = ("portabot-maintain.service", "portabot-maintain.timer")
MAINTAIN_TEXT = (VPS / "portabot-maintain.service").read_text(encoding="utf-8")
MAINTAIN = read_unit(MAINTAIN_TEXT)
TIMER = read_unit((VPS / "portabot-maintain.timer").read_text(encoding="utf-8"))
TICKING = ("portabot-tick.service", "portabot-tick.timer")
TICK_TEXT = (VPS / "portabot-tick.service").read_text(encoding="utf-8")
TICK = read_unit(TICK_TEXT)
TICK_TIMER = read_unit((VPS / "portabot-tick.timer").read_text(encoding="utf-8"))
INSTALL_SH = (VPS / "install.sh").read_text(encoding="utf-8")


def install_locations() -> dict[str, str]:
    """install.sh's APP, VENV, CONFIG_DIR, ENV_FILE and UNIT_FILE, expanded."""
    found: dict[str, str] = {}
    names = "APP|VENV|CONFIG_DIR|ENV_FILE|UNIT_FILE"
    for name, value in re.findall(rf"^({names})=(\S+)$", INSTALL_SH, re.MULTILINE):
        found[name] = re.sub(r"\$(\w+)", lambda m: found[m[1]], value.strip('"'))
    return found


def on_this_machine(text: str, tmp_path: Path) -> str:
    """The unit as if install.sh had run here: this venv and this repository stand in for
    /opt/portabot, tmp_path for /etc/portabot and for the state directory /var/lib/portabot."""
    places = {
        "/opt/portabot/venv/bin": str(BIN),
        "/opt/portabot": str(ROOT),
        "/etc/portabot": str(tmp_path / "etc"),
        "/var/lib/portabot": str(tmp_path / "state"),
    }
    pattern = re.compile("|".join(re.escape(place) for place in places))
    return pattern.sub(lambda m: places[m[0]], text)


def install_here(tmp_path: Path, settings: dict[str, str]) -> Path:
    """The units, the settings file (mode 0600, as install.sh writes it) and the state directory
    (which systemd makes), in tmp_path; returns the bot's unit."""
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "state").mkdir(exist_ok=True)
    env_file = tmp_path / "etc" / "portabot.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8")
    env_file.chmod(0o600)
    for name in ("portabot.service", *MAINTENANCE, *TICKING):
        text = (VPS / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(on_this_machine(text, tmp_path), encoding="utf-8")
    return tmp_path / "portabot.service"


def environment(**values: str) -> dict[str, str]:
    """This process's environment without portabot's, gunicorn's or systemd's variables."""
    ours = GUNICORN_VARIABLES | SYSTEMD_VARIABLES
    env = {k: v for k, v in cli_environment().items() if k not in ours}
    return {**env, **values}


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if REQUIRE_SYSTEMD_ANALYZE:
            pytest.fail("systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run([analyze, *args], capture_output=True, text=True, timeout=120)


def test_systemd_finds_nothing_wrong_with_the_installed_unit(tmp_path: Path) -> None:
    unit = install_here(tmp_path, {"SESSION_SECRET": "s"})
    result = systemd_analyze("verify", str(unit))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_finds_nothing_wrong_with_the_maintenance_timer(tmp_path: Path) -> None:
    install_here(tmp_path, {"SESSION_SECRET": "s"})
    result = systemd_analyze("verify", *(str(tmp_path / name) for name in MAINTENANCE))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_finds_nothing_wrong_with_the_tick_timer(tmp_path: Path) -> None:
    install_here(tmp_path, {"SESSION_SECRET": "s"})
    result = systemd_analyze("verify", *(str(tmp_path / name) for name in TICKING))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    "name", ["portabot.service", "portabot-maintain.service", "portabot-tick.service"]
)
def test_the_sandbox_exposure_is_low_and_the_readme_says_how_low(tmp_path: Path, name: str) -> None:
    install_here(tmp_path, {"SESSION_SECRET": "s"})
    result = systemd_analyze("security", "--offline=yes", str(tmp_path / name))
    found = re.search(
        rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+) \w+", result.stdout
    )
    assert found, result.stdout + result.stderr
    assert float(found[1]) <= 1.5, result.stdout
    assert found[0] in (VPS / "README.md").read_text(encoding="utf-8")


def sandbox(unit_text: str) -> dict[str, list[str]]:
    return read_unit(unit_text.split("\nUMask=", 1)[1].split("\n[Install]", 1)[0])


def test_maintenance_runs_hourly_as_the_bot_in_the_same_sandbox() -> None:
    assert TIMER["OnCalendar"] == ["hourly"] and TIMER["Persistent"] == ["true"]
    assert TIMER["WantedBy"] == ["timers.target"]
    assert MAINTAIN["Type"] == ["oneshot"]
    assert MAINTAIN["ExecStart"] == [f"{install_locations()['VENV']}/bin/portabot maintain"]
    for same in ("DynamicUser", "User", "StateDirectory", "WorkingDirectory", "Environment"):
        assert MAINTAIN[same] == UNIT[same], same
    assert MAINTAIN["EnvironmentFile"] == UNIT["EnvironmentFile"]
    assert sandbox(MAINTAIN_TEXT) == sandbox(UNIT_TEXT)
    for name in MAINTENANCE:  # installed beside the bot's unit, the timer started
        assert name in INSTALL_SH
    assert "systemctl enable --quiet --now portabot-maintain.timer" in INSTALL_SH


def test_tick_runs_every_minute_as_the_bot_in_the_same_sandbox() -> None:
    assert TICK_TIMER["OnCalendar"] == ["minutely"] and TICK_TIMER["AccuracySec"] == ["1s"]
    assert TICK_TIMER["WantedBy"] == ["timers.target"]
    assert TICK["Type"] == ["oneshot"]
    assert TICK["ExecStart"] == [f"{install_locations()['VENV']}/bin/portabot tick"]
    for same in ("DynamicUser", "User", "StateDirectory", "WorkingDirectory", "Environment"):
        assert TICK[same] == UNIT[same], same
    assert TICK["EnvironmentFile"] == UNIT["EnvironmentFile"]
    assert sandbox(TICK_TEXT) == sandbox(UNIT_TEXT)
    for name in TICKING:  # installed beside the bot's unit, the timer started
        assert name in INSTALL_SH
    assert "systemctl enable --quiet --now portabot-tick.timer" in INSTALL_SH


def test_the_tick_command_runs_as_systemd_would(
    tmp_path: Path, bot_settings: dict[str, str], fake_telegram: FakeTelegram
) -> None:
    """ExecStart of portabot-tick.service with the unit's environment and settings file: it sends
    a reply that is due."""
    with run_like_systemd(tmp_path, {**bot_settings, "TICK_SECONDS": "0"}):
        pass  # the bot's start migrates the database
    url = bot_settings.get("DATABASE_URL", f"sqlite:///{tmp_path}/state/portabot.db")
    put_due(url, "sent by the timer")
    unit = read_unit((tmp_path / "portabot-tick.service").read_text(encoding="utf-8"))
    unit_env = dict(e.partition("=")[::2] for e in unit["Environment"])
    [command] = unit["ExecStart"]
    [cwd] = unit["WorkingDirectory"]
    result = subprocess.run(
        shlex.split(command),
        cwd=cwd,
        env=environment(**{**unit_env, **bot_settings}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\noutbox: sent 1, failed 0\n")
    assert sent_texts(fake_telegram) == ["sent by the timer"]


def test_the_bots_workers_run_what_is_due_by_themselves_once(
    tmp_path: Path, bot_settings: dict[str, str], fake_telegram: FakeTelegram
) -> None:
    """Both gunicorn workers run what is due every TICK_SECONDS, with no request and no timer;
    each reply goes out once."""
    with run_like_systemd(tmp_path, {**bot_settings, "TICK_SECONDS": "1"}) as service:
        url = bot_settings.get("DATABASE_URL", f"sqlite:///{tmp_path}/state/portabot.db")
        texts = [f"due {n}" for n in range(20)]
        put_due(url, *texts)
        wait_for("every reply sent", lambda: len(fake_telegram.sent()) >= len(texts))
        sql = "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"
        wait_for("every reply recorded as sent", lambda: query(url, sql)[0]["n"] == 0)
    assert service.returncode == 0, service.output
    assert sorted(sent_texts(fake_telegram)) == sorted(texts)
    assert "what is due: outbox: sent " in service.output
    assert "Traceback" not in service.output


def test_the_maintenance_command_runs_as_systemd_would(
    tmp_path: Path, bot_settings: dict[str, str]
) -> None:
    """ExecStart of portabot-maintain.service with the unit's environment and settings file,
    against the database the bot's unit migrated."""
    with run_like_systemd(tmp_path, bot_settings):
        pass  # the bot's start migrates the database
    unit = read_unit((tmp_path / "portabot-maintain.service").read_text(encoding="utf-8"))
    unit_env = dict(e.partition("=")[::2] for e in unit["Environment"])
    [command] = unit["ExecStart"]
    [cwd] = unit["WorkingDirectory"]
    result = subprocess.run(
        shlex.split(command),
        cwd=cwd,
        env=environment(**{**unit_env, **bot_settings}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "updates: 0 deleted" in result.stdout
    assert "outbox: sent 0, failed 0; 0 waiting for a later try" in result.stdout


def test_the_unit_runs_what_install_sh_puts_where_it_puts_it() -> None:
    places = install_locations()
    venv, app = places["VENV"], places["APP"]
    assert places["UNIT_FILE"] == "/etc/systemd/system/portabot.service"
    assert UNIT["ExecStartPre"] == [f"{venv}/bin/portabot migrate"]
    assert UNIT["ExecStart"] == [f"{venv}/bin/gunicorn --config {app}/targets/vps/gunicorn.conf.py"]
    assert UNIT["WorkingDirectory"] == [app]
    # No '-' in front: without its settings file the bot does not start without its secrets.
    assert UNIT["EnvironmentFile"] == [places["ENV_FILE"]]
    # The lock CI tested, then the app (the extras' packages are in the lock).
    assert '-r "$APP/requirements/deploy.txt"' in INSTALL_SH
    assert '--no-deps --force-reinstall "$APP"' in INSTALL_SH
    # SQLite lives in the state directory systemd makes, by default and in a new settings file.
    assert UNIT["DynamicUser"] == ["yes"] and UNIT["StateDirectory"] == ["portabot"]
    database = "DATABASE_URL=sqlite:////var/lib/portabot/portabot.db"
    assert UNIT["Environment"] == [database] and f"\n{database}\n" in INSTALL_SH


Network = TypeVar("Network", ipaddress.IPv4Network, ipaddress.IPv6Network)


def all_but(everything: Network, holes: list[Network]) -> list[Network]:
    networks = [everything]
    for hole in holes:
        networks = [
            part
            for network in networks
            if not network.subnet_of(hole)
            for part in (network.address_exclude(hole) if hole.subnet_of(network) else [network])
        ]
    return list(ipaddress.collapse_addresses(networks))


def test_the_bot_may_reach_any_unicast_address_but_no_link_local_or_multicast_one() -> None:
    assert UNIT["IPAddressDeny"] == ["any"]
    allowed = " ".join(UNIT["IPAddressAllow"]).split()
    assert "localhost" in allowed
    v4 = [ipaddress.IPv4Network(n) for n in allowed if "." in n]
    v6 = [ipaddress.IPv6Network(n) for n in allowed if ":" in n]
    assert len(v4) + len(v6) + 1 == len(allowed)
    # 169.254.169.254 is the cloud's metadata service; 0.0.0.0/8 is "this network".
    v4_holes = ["0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"]
    assert list(ipaddress.collapse_addresses(v4)) == all_but(
        ipaddress.IPv4Network("0.0.0.0/0"), [ipaddress.IPv4Network(n) for n in v4_holes]
    )
    v6_holes = ["fe80::/10", "ff00::/8"]
    assert list(ipaddress.collapse_addresses(v6)) == all_but(
        ipaddress.IPv6Network("::/0"), [ipaddress.IPv6Network(n) for n in v6_holes]
    )


def gunicorn_settings(tmp_path: Path, **env: str) -> dict[str, str]:
    """The settings as gunicorn resolves them from the unit's command line and the environment."""
    [command] = UNIT["ExecStart"]
    result = subprocess.run(
        [*shlex.split(on_this_machine(command, tmp_path)), "--print-config"],
        cwd=ROOT,
        env=environment(DATABASE_URL=f"sqlite:///{tmp_path}/bot.db", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pairs = (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    return {name.strip(): value.strip() for name, value in pairs}


@pytest.mark.parametrize(
    ("env", "bind", "workers"),
    [
        ({}, "['127.0.0.1:8000']", "2"),
        # Unlike gunicorn's own default for PORT (0.0.0.0), only Caddy may reach the bot.
        ({"PORT": "9000", "WEB_CONCURRENCY": "3"}, "['127.0.0.1:9000']", "3"),
        ({"BIND": "unix:/run/portabot/gunicorn.sock"}, "['unix:/run/portabot/gunicorn.sock']", "2"),
        ({"GUNICORN_CMD_ARGS": "--bind [::1]:8080 --workers 1"}, "['[::1]:8080']", "1"),
    ],
)
def test_gunicorn_settings(tmp_path: Path, env: dict[str, str], bind: str, workers: str) -> None:
    settings = gunicorn_settings(tmp_path, **env)
    assert (settings["bind"], settings["workers"]) == (bind, workers)
    assert settings["wsgi_app"] == "portabot.app:app"
    assert settings["worker_class"] == "portabot.worker.Worker"
    assert settings["preload_app"] == "True"
    assert settings["errorlog"] == "-"  # to journald
    assert settings["accesslog"] == "None"  # Caddy logs each request
    assert settings["forwarded_allow_ips"] == "['127.0.0.1', '::1']"
    assert int(settings["timeout"]) <= 30
    # Requests in flight get to finish before systemd's patience runs out.
    assert int(settings["graceful_timeout"]) < int(UNIT["TimeoutStopSec"][0].removesuffix("s"))
    assert int(settings["keepalive"]) > 120  # Caddy's idle upstream connections last 2 minutes
    assert settings["control_socket_disable"] == "True"  # outside systemd: no RUNTIME_DIRECTORY


@dataclass
class Service:
    client: httpx.Client
    notified: str = ""
    output: str = ""
    returncode: int | None = None


@contextmanager
def run_like_systemd(
    tmp_path: Path, settings: dict[str, str], wrapper: tuple[str, ...] = ()
) -> Iterator[Service]:
    """ExecStartPre, then ExecStart with what systemd passes (the unit's Environment= overridden by
    its EnvironmentFile=, RUNTIME_DIRECTORY, NOTIFY_SOCKET); yields once gunicorn has told
    systemd it is ready and /healthz answers; then sends SIGTERM, as `systemctl stop` does."""
    unit = read_unit(install_here(tmp_path, settings).read_text(encoding="utf-8"))
    runtime = tmp_path / "run"
    runtime.mkdir()
    notify_name = f"portabot-test-{uuid.uuid4().hex}"
    unit_env = {key: value for key, _, value in (e.partition("=") for e in unit["Environment"])}
    systemd_env = {"RUNTIME_DIRECTORY": str(runtime), "NOTIFY_SOCKET": f"@{notify_name}"}
    env = environment(**{**unit_env, **settings, **systemd_env})
    [cwd] = unit["WorkingDirectory"]
    for command in unit["ExecStartPre"]:
        pre = subprocess.run(
            [*wrapper, *shlex.split(command)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pre.returncode == 0, pre.stdout + pre.stderr
    [command] = unit["ExecStart"]
    port = settings.get("PORT", "8000")
    service = Service(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(f"\0{notify_name}")
        notify.settimeout(0.2)
        process = subprocess.Popen(
            [*wrapper, *shlex.split(command)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not service.notified:
                try:
                    service.notified = notify.recv(4096).decode()
                except TimeoutError:
                    assert process.poll() is None, "gunicorn exited before it was ready"
                    assert time.monotonic() < deadline, "gunicorn never said READY=1"
            while True:
                try:
                    if service.client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "no /healthz"
                time.sleep(0.1)
            yield service
        finally:
            service.client.close()
            process.send_signal(signal.SIGTERM)
            try:
                service.output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                service.output, _ = process.communicate()
            service.returncode = process.returncode


@pytest.fixture(params=["sqlite", "postgresql"])
def bot_settings(
    request: pytest.FixtureRequest, fake_telegram: FakeTelegram, fake_vk: FakeVk
) -> dict[str, str]:
    """What a user writes into /etc/portabot/portabot.env, here for the fake platforms. On SQLite
    the unit's own DATABASE_URL (in the state directory) is kept."""
    settings = {
        "PORT": str(free_port()),
        "TELEGRAM_TOKEN": TOKEN,
        "TELEGRAM_SECRET": SECRET,
        "TELEGRAM_API_URL": fake_telegram.url,
        "VK_TOKEN": VK_TOKEN,
        "VK_GROUP_ID": str(VK_GROUP),
        "VK_SECRET": VK_SECRET,
        "VK_API_URL": fake_vk.url,
        "SESSION_SECRET": "vps-session-secret",
    }
    if request.param == "postgresql":
        settings["DATABASE_URL"] = request.getfixturevalue("empty_postgres")
    return settings


def chat_on_every_platform(service: Service, fake_vk: FakeVk) -> None:
    """Web, Telegram and VK: a person links two accounts, each request on any worker."""
    [bind] = say_web(service.client, "/bind")
    code = CODE_LINE.search(bind)
    assert code, bind
    linked = post_telegram(service.client, telegram_update(1, f"/in {code[1]}", user_id=9))
    assert linked.json() == {
        "method": "sendMessage",
        "chat_id": 9,
        "text": "Linked! Your platforms: telegram, web.",
    }
    assert say_web(service.client, "/me") == ["Linked platforms: telegram, web."]
    # VK's replies go out through its API (aiohttp), after the webhook's transaction.
    assert post_vk(service.client, vk_event("e1", "/me", user_id=31)).text == "ok"
    assert fake_vk.texts() == [("31", "Linked platforms: vk.")]


def test_the_units_commands_serve_the_bot(
    tmp_path: Path, bot_settings: dict[str, str], fake_vk: FakeVk
) -> None:
    with run_like_systemd(tmp_path, bot_settings) as service:
        assert service.notified.startswith("READY=1")
        chat_on_every_platform(service, fake_vk)
        gunicornc = BIN / "gunicornc"
        control_socket = tmp_path / "run" / "gunicorn.ctl"
        shown = subprocess.run(
            [gunicornc, "-s", control_socket, "-c", "show workers", "-j"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert json.loads(shown.stdout)["count"] == 2, shown.stderr  # WEB_CONCURRENCY's default
    assert service.returncode == 0, service.output
    assert service.output.count("Booting worker with pid") == 2
    assert '"POST /webhooks/telegram HTTP/1.1" 200' not in service.output  # Caddy logs requests
    assert "Shutting down: Master" in service.output
    for secret in (TOKEN, SECRET, VK_TOKEN, VK_SECRET, "vps-session-secret"):
        assert secret not in service.output
    if "DATABASE_URL" not in bot_settings:
        assert (tmp_path / "state" / "portabot.db").exists()


def test_the_bot_runs_under_the_units_memory_and_socket_rules(
    tmp_path: Path, bot_settings: dict[str, str], fake_vk: FakeVk
) -> None:
    """MemoryDenyWriteExecute=yes and RestrictAddressFamilies=: migrations, gunicorn, uvicorn, the
    database drivers and aiohttp (looking up a host name) all keep to them."""
    wrapper = (sys.executable, "-c", UNDER_THE_UNITS_RULES)
    probe = subprocess.run([*wrapper, "/bin/true"], capture_output=True, text=True)
    if probe.returncode != 0:  # PR_SET_MDWE needs Linux 6.3
        pytest.skip(f"this kernel cannot enforce the rules: {probe.stderr.strip()}")
    # A name, not an address, so that aiohttp resolves it (glibc asks netlink first).
    bot_settings["VK_API_URL"] = fake_vk.url.replace("127.0.0.1", "localhost")
    with run_like_systemd(tmp_path, bot_settings, wrapper) as service:
        chat_on_every_platform(service, fake_vk)
    assert service.returncode == 0, service.output


def test_install_sh_is_valid_bash() -> None:
    assert INSTALL_SH.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in INSTALL_SH
    assert os.access(VPS / "install.sh", os.X_OK)
    result = subprocess.run(["bash", "-n", VPS / "install.sh"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_install_sh_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run([shellcheck, VPS / "install.sh"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def install_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", VPS / "install.sh", *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_sh_says_how_it_is_used() -> None:
    usage = install_sh("--help")
    assert usage.returncode == 0 and "--source DIR|GIT-URL" in usage.stdout
    for args, problem in [
        (["--frobnicate"], "unknown argument: --frobnicate (see --help)"),
        (["--domain", "https://bot.example.com"], "--domain takes a bare name"),
    ]:
        result = install_sh(*args)
        assert result.returncode == 1 and problem in result.stderr


def test_install_sh_changes_nothing_without_root_or_systemd() -> None:
    if os.geteuid() == 0 and Path("/run/systemd/system").is_dir():
        pytest.skip("this machine could really be installed on")
    result = install_sh("--source", str(ROOT))
    expected = "systemd is not running on this machine" if os.geteuid() == 0 else "run me as root"
    assert result.returncode == 1 and expected in result.stderr and result.stdout == ""


IN_A_SANDBOX = r"""
set -euo pipefail
sandbox="$1" && shift
# /etc writable in this mount namespace only (the mounts under it put back on top), and empty
# /opt and /run/systemd (with the system/ that says systemd runs): nothing outside is touched.
mount -t tmpfs -o mode=0755 tmpfs "$sandbox/layer"
mkdir "$sandbox/layer/etc" "$sandbox/layer/work" "$sandbox/lower"
mount --rbind /etc "$sandbox/lower"
layer="$sandbox/layer"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$layer/etc,workdir=$layer/work" /etc
{ grep -o ' /etc/[^ ]* ' /proc/self/mountinfo || true; } | while read -r inner; do
	mount --bind "$sandbox/lower/${inner#/etc/}" "$inner" 2>/dev/null || true
done
mount -t tmpfs -o mode=0755 tmpfs /opt
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system
"$@"
# What the service's user (any user but root: systemd's DynamicUser) cannot read of the app
# (the venv's links to the system's Python aside: they lead out of it).
as_service() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
closed() { as_service find /opt/portabot ! -type l \( ! -readable -o -type d ! -executable \); }
echo "unreadable: $(closed | wc -l)" && closed | head -5
as_service test -r /etc/portabot/portabot.env && echo "env file readable by the service"
cd /opt/portabot && stat -c "%a %U %n" /etc/portabot/portabot.env core/app.py targets/vps/install.sh
"""
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$(basename "$0") $*" >>"$(dirname "$0")/calls.log"
"""


@pytest.mark.parametrize("where", ["copied", "in place"])
def test_install_sh_leaves_the_app_readable_by_the_service_after_a_umask_077_clone(
    tmp_path: Path, where: str
) -> None:
    """install.sh run for real as root, in a mount namespace of its own with systemctl faked; the
    checkout made as `git clone` makes it under umask 077 (files 600, directories 700). Needs
    root, unshare and PyPI."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("needs root, unshare and setpriv")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    sandbox = tmp_path / "sandbox"
    (sandbox / "layer").mkdir(parents=True)
    fakes = sandbox / "bin"
    fakes.mkdir()
    for name in ("systemctl", "journalctl"):
        (fakes / name).write_text(FAKE_SYSTEMCTL)
        (fakes / name).chmod(0o755)
    clone = copy_checkout(tmp_path / "clone", umask=0o077)
    install = ["bash", str(clone / "targets/vps/install.sh")]
    if where == "in place":  # cloned straight into /opt/portabot (inside the namespace)
        here = 'cp -a "$1" /opt/portabot && exec bash /opt/portabot/targets/vps/install.sh'
        install = ["sh", "-c", here, "sh", str(clone)]
    env = {**environment(), "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}"}
    outside = Path("/etc/portabot").exists(), Path("/opt/portabot").exists()
    result = subprocess.run(
        ["unshare", "--mount", "bash", "-c", IN_A_SANDBOX, "sandbox", str(sandbox), *install],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "unreadable: 0\n" in result.stdout
    assert "env file readable" not in result.stdout  # the secrets stay root's
    assert "600 root /etc/portabot/portabot.env\n" in result.stdout
    assert "644 root core/app.py\n" in result.stdout
    assert "755 root targets/vps/install.sh\n" in result.stdout
    calls = (fakes / "calls.log").read_text()
    assert "systemctl restart portabot.service\n" in calls
    assert "portabot is running" in result.stdout
    # Nothing of it outside the namespace.
    assert (Path("/etc/portabot").exists(), Path("/opt/portabot").exists()) == outside


def test_caddy_serves_the_domain_over_https_and_proxies_to_gunicorn(tmp_path: Path) -> None:
    caddyfile = (VPS / "Caddyfile").read_text(encoding="utf-8")
    assert re.search(r"^bot\.example\.com \{$", caddyfile, re.MULTILINE)
    [upstream] = re.findall(r"^\s*reverse_proxy (\S+)$", caddyfile, re.MULTILINE)
    assert gunicorn_settings(tmp_path)["bind"] == f"['{upstream}']"
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed: the Caddyfile was not validated")
    adapted = subprocess.run(
        [caddy, "adapt", "--config", VPS / "Caddyfile", "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert adapted.returncode == 0, adapted.stderr
    [server] = json.loads(adapted.stdout)["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    validated = subprocess.run(
        [caddy, "validate", "--config", VPS / "Caddyfile", "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stderr
    assert "automatic HTTP->HTTPS redirects" in validated.stderr
    # Slow and large requests stop at Caddy; browsers are told to keep to HTTPS.
    assert server["read_header_timeout"] == server["read_timeout"] == 10 * 10**9
    assert server["max_header_bytes"] <= 64 * 1024
    handlers = {h["handler"]: h for h in server["routes"][0]["handle"][0]["routes"][0]["handle"]}
    assert handlers["request_body"]["max_size"] == MAX_BODY
    hsts = handlers["headers"]["response"]["set"]["Strict-Transport-Security"]
    assert hsts == ["max-age=31536000"]


def test_the_unit_gives_a_worker_descriptors_for_all_its_connections() -> None:
    assert int(UNIT["LimitNOFILE"][0]) >= 2 * MAX_CONNECTIONS
