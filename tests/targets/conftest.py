"""Fixtures of the targets' tests: a Lambda container with the environment the template gives;
a checkout copied as git would make it, and the versions a lock pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from portabot.testing.fakes import FakeTelegram
from tests.conftest import BOT_USERNAME, SECRET, TOKEN
from tests.targets.lambda_runtime import Container


@pytest.fixture
def lambda_environment(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    empty_postgres: str,
    fake_telegram: FakeTelegram,
) -> dict[str, str]:
    """What the template gives the function, plus what Lambda sets in every container."""
    monkeypatch.chdir(tmp_path)  # Lambda's working directory holds no .env
    values = {
        "AWS_LAMBDA_FUNCTION_NAME": "portabot",
        "DATABASE_URL": empty_postgres,
        "TELEGRAM_TOKEN": TOKEN,
        "TELEGRAM_SECRET": SECRET,
        "TELEGRAM_API_URL": fake_telegram.url,
        "TELEGRAM_BOT_USERNAME": BOT_USERNAME,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("VK_TOKEN", "VK_GROUP_ID", "SESSION_SECRET", "BOT_PASSPHRASE", "BOT_FLOW"):
        monkeypatch.delenv(name, raising=False)
    # Set, then removed: the handler's default is then undone after the test.
    monkeypatch.setenv("DATABASE_POOL_SIZE", "4")
    monkeypatch.delenv("DATABASE_POOL_SIZE")
    return values


@pytest.fixture
def container(lambda_environment: dict[str, str]) -> Iterator[Container]:
    started = Container()
    yield started
    started.close()


ROOT = Path(__file__).resolve().parents[2]


def copy_checkout(target: Path, umask: int = 0o022) -> Path:
    """The repository's files as `git clone` writes them under `umask` (uncommitted changes
    included): what a deployment is made from."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    target.mkdir(parents=True)
    directories = {target}
    for name in sorted({n for n in listed.stdout.decode().split("\0") if n}):
        source = ROOT / name
        copy = target / name
        if source.is_symlink():  # `portabot -> core`, as git writes it
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.symlink_to(source.readlink())
            continue
        if not source.is_file():  # deleted but not yet committed
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        directories |= {target / d for d in Path(name).parents}
        shutil.copyfile(source, copy)
        executable = source.stat().st_mode & 0o100
        copy.chmod((0o777 if executable else 0o666) & ~umask)
    for directory in directories:
        directory.chmod(0o777 & ~umask)
    return target


def pins(lock: Path) -> dict[str, str]:
    """A lock's package names (normalised) and versions."""
    found = re.findall(r"^([a-z0-9._-]+)==([^\s;]+)", lock.read_text(), re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name): version for name, version in found}


def installed(python: Path) -> dict[str, str]:
    """The distributions in `python`'s environment (normalised names) and their versions."""
    frozen = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    ).stdout
    pairs = (line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    return {re.sub(r"[-_.]+", "-", name.lower()): version for name, version in pairs}
