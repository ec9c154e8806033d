"""The AWS Lambda deployment package: `portabot`, the handler and the dependencies' wheels for
Lambda's Linux, in one reproducible zip."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAMBDA_PYTHON = "3.13"
"""The Python of the Runtime in targets/lambda/template.yaml: the wheels are chosen for it."""

MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
"""Lambda's architecture names and the machine names in wheels' platform tags."""

EXTRAS = ("postgres", "lambda")
MIGRATION_ONLY = {"sqlalchemy", "alembic", "aiosqlite"}
"""What only `portabot migrate` needs: the function never migrates (its README says to run it
from your machine), and serving imports none of these."""
HANDLER = Path("targets/lambda/handler.py")
LOCK = Path("requirements/lambda.txt")
"""The exact versions and hashes of the function's dependencies (requirements/update.sh writes
it from runtime_requirements), at the versions CI tested."""
TEMPLATE = Path("targets/lambda/template.yaml")
ZIPPED_LIMIT = 50 * 1024 * 1024
"""What Lambda accepts as a .zip uploaded with the function (larger ones go through S3)."""
UNZIPPED_LIMIT = 250 * 1024 * 1024
"""What a function's code may unpack to, layers included."""

ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same bytes on every build
NOT_SHIPPED_AT_TOP = {
    "bin",
    "include",
    "pip",
    "setuptools",
    "wheel",
    "pkg_resources",
    "_distutils_hack",
}
"""pip's console scripts (their shebangs name this machine's Python) and C headers, and the
installers, which a function never runs."""
NOT_SHIPPED_ANYWHERE = {"__pycache__", "tests"}
NOT_SHIPPED_FILES = ("*.pyc", "*.pyo", "distutils-precedence.pth")
DIST_INFO = re.compile(r"^(pip|setuptools|wheel)-[^-]+\.dist-info$")


class PackagingError(Exception):
    """The package cannot be built, or would not fit in Lambda; the message is one line."""


@dataclass(frozen=True)
class LambdaPackage:
    path: Path
    zipped: int
    unzipped: int
    files: int
    arch: str
    python_version: str
    precompiled: bool

    def describe(self) -> str:
        """What to tell the person who built it, and how to deploy it for its architecture."""
        deploy = (
            f"\n  deploy it with: sam deploy --template-file {TEMPLATE} "
            f"--parameter-overrides Architecture={self.arch}"
        )
        return self._sizes() + deploy

    def _sizes(self) -> str:
        sizes = (
            f"{self.path}: {megabytes(self.zipped)} zipped (Lambda takes up to "
            f"{megabytes(ZIPPED_LIMIT)}), {megabytes(self.unzipped)} unzipped (up to "
            f"{megabytes(UNZIPPED_LIMIT)}); {self.files} files for Python "
            f"{self.python_version} on {self.arch}"
        )
        if self.precompiled:
            return f"{sizes}, modules precompiled"
        return (
            f"{sizes}\n  modules not precompiled: no python{self.python_version} on this machine, "
            "so each cold start compiles them; build with it installed to save that time"
        )


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def source_tree() -> Path:
    """The checkout this `portabot` was imported from (installed with `pip install -e .`)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / HANDLER).is_file():
        raise PackagingError(
            f"{root} is not portabot's source tree: build the package from a checkout of the "
            "repository installed with pip install -e"
        )
    return root


def build_lambda_zip(
    output: Path,
    *,
    arch: str = "arm64",
    python_version: str = LAMBDA_PYTHON,
    include: Sequence[Path] = (),
    project_root: Path | None = None,
) -> LambdaPackage:
    """Build the zip for Lambda's `handler.handler`: the handler and `portabot` at the top, the
    runtime dependencies (pyproject's, plus the postgres and lambda extras) as wheels for
    Lambda's Linux on `arch`, and the files or directories `include` names (a BOT_FLOW module
    of your own, say). The project is the source tree `portabot` comes from unless given."""
    project_root = project_root if project_root is not None else source_tree()
    if arch not in MACHINES:
        raise PackagingError(f"architecture must be one of {', '.join(MACHINES)} (got {arch})")
    version = parse_version(python_version)
    pyproject = read_pyproject(project_root)
    lock = checked_lock(project_root, runtime_requirements(pyproject))
    with tempfile.TemporaryDirectory(prefix="portabot-lambda-") as temporary:
        staging = Path(temporary) / "package"
        install_wheels(staging, lock, arch, version)
        copy_package(project_root / "core", staging / "portabot", package_data(pyproject))
        shutil.copy2(project_root / HANDLER, staging / "handler.py")
        for extra in include:
            copy_included(Path(extra), staging)
        prune(staging)
        precompiled = precompile(staging, version)
        entries = sorted(staging.rglob("*"))
        files = [path for path in entries if path.is_file()]
        unzipped = sum(path.stat().st_size for path in files)
        if unzipped > UNZIPPED_LIMIT:
            raise PackagingError(
                f"the package unpacks to {megabytes(unzipped)}, over Lambda's "
                f"{megabytes(UNZIPPED_LIMIT)} limit for a function's code"
            )
        write_zip(staging, entries, output)
    zipped = output.stat().st_size
    if zipped > ZIPPED_LIMIT:
        output.unlink()
        raise PackagingError(
            f"the zip is {megabytes(zipped)}, over the {megabytes(ZIPPED_LIMIT)} Lambda accepts "
            "for a .zip uploaded with the function"
        )
    return LambdaPackage(
        output, zipped, unzipped, len(files), arch, f"{version[0]}.{version[1]}", precompiled
    )


def parse_version(python_version: str) -> tuple[int, int]:
    match = re.fullmatch(r"3\.(\d+)", python_version.strip())
    if match is None or int(match.group(1)) < 11:
        raise PackagingError(f"Python version must be 3.11 or newer, as X.Y (got {python_version})")
    return 3, int(match.group(1))


def read_pyproject(project_root: Path) -> dict[str, Any]:
    try:
        pyproject = tomllib.loads((project_root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PackagingError(f"cannot read the project's pyproject.toml: {exc}") from None
    if "name" not in pyproject.get("project", {}):
        raise PackagingError(f"{project_root / 'pyproject.toml'} has no [project] name")
    return pyproject


def runtime_requirements(pyproject: dict[str, Any]) -> list[str]:
    """The project's dependencies and those of the extras Lambda needs, less MIGRATION_ONLY."""
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    wanted = [*project.get("dependencies", []), *(r for e in EXTRAS for r in extras.get(e, []))]
    # An extra may name the project itself (portabot[postgres]); its code is copied instead.
    left_out = {_normalise(project["name"]), *MIGRATION_ONLY}
    return [r for r in wanted if _name(r) not in left_out]


def lambda_requirements(project_root: Path | None = None) -> list[str]:
    """What LOCK is resolved from: the runtime requirements of the project's pyproject.toml."""
    return runtime_requirements(read_pyproject(project_root or source_tree()))


def checked_lock(project_root: Path, requirements: list[str]) -> Path:
    """LOCK, once it is known to pin every requirement the package needs."""
    lock = project_root / LOCK
    try:
        text = lock.read_text(encoding="utf-8")
    except OSError:
        raise PackagingError(f"no {LOCK} in {project_root}: run requirements/update.sh") from None
    pinned = {_normalise(name) for name in re.findall(r"^([A-Za-z0-9._-]+)==", text, re.M)}
    missing = sorted({_name(r) for r in requirements} - pinned)
    if missing:
        raise PackagingError(
            f"{LOCK} pins no {', '.join(missing)}: run requirements/update.sh after changing "
            "pyproject.toml"
        )
    return lock


def _name(requirement: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def package_data(pyproject: dict[str, Any]) -> list[str]:
    """The patterns of the files besides modules that `portabot` ships (templates, migrations)."""
    data = pyproject.get("tool", {}).get("setuptools", {}).get("package-data", {})
    return list(data.get("portabot", []))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_platforms(arch: str, version: tuple[int, int]) -> list[str]:
    """The manylinux tags Lambda's Linux runs: glibc 2.34 on Amazon Linux 2023 (Python 3.12
    and later), 2.26 on Amazon Linux 2 (Python 3.11)."""
    machine = MACHINES[arch]
    newest = 34 if version >= (3, 12) else 26
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]  # pip reads this one as 2.17 and older too


def install_wheels(staging: Path, lock: Path, arch: str, version: tuple[int, int]) -> None:
    """The lock's wheels for Lambda's Linux, each checked against the lock's hashes."""
    command = [sys.executable, "-m", "pip", "install", "--target", str(staging)]
    command += ["--require-hashes", "--no-deps", "-r", str(lock)]
    command += ["--implementation", "cp", "--python-version", f"{version[0]}.{version[1]}"]
    command += ["--only-binary=:all:", "--no-compile", "--disable-pip-version-check"]
    command += ["--no-input", "--quiet"]
    for platform in wheel_platforms(arch, version):
        command += ["--platform", platform]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
        reason = errors[0] if errors else f"exit status {result.returncode}"
        raise PackagingError(f"pip could not install the wheels for Lambda: {reason}")


def copy_package(source: Path, target: Path, data: list[str]) -> None:
    """The package as a wheel of it would hold: its modules and its declared package data."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" or any(fnmatch.fnmatchcase(relative, p) for p in data):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)


def copy_included(source: Path, staging: Path) -> None:
    target = staging / source.name
    if not source.exists():
        raise PackagingError(f"cannot include {source}: no such file or directory")
    if target.exists():
        raise PackagingError(f"cannot include {source}: the package has a {source.name} already")
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
    else:
        shutil.copy2(source, target)


def prune(staging: Path) -> None:
    """Drop what a function never uses (see NOT_SHIPPED_*); *.dist-info stays, since packages
    read their own metadata (importlib.metadata) and it tells what the zip holds."""
    for path in sorted(staging.iterdir()):
        if path.name in NOT_SHIPPED_AT_TOP or DIST_INFO.match(path.name):
            _remove(path)
    for directory, subdirectories, files in os.walk(staging):
        for name in subdirectories:
            if name in NOT_SHIPPED_ANYWHERE:
                _remove(Path(directory, name))
        subdirectories[:] = [d for d in subdirectories if d not in NOT_SHIPPED_ANYWHERE]
        for name in files:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in NOT_SHIPPED_FILES):
                Path(directory, name).unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def precompile(staging: Path, version: tuple[int, int]) -> bool:
    """Compile every module with Lambda's Python, when this machine has it: the function's
    directory is read-only, so Python cannot keep what it compiles and would compile each
    module again at every cold start. Hash-checked .pyc files do not depend on file times."""
    if sys.version_info[:2] == version and sys.implementation.name == "cpython":
        python: str | None = sys.executable
    else:
        python = shutil.which(f"python{version[0]}.{version[1]}")
    if python is None:
        return False
    command = [python, "-m", "compileall", "-qq", "--invalidation-mode", "checked-hash"]
    # Names inside the .pyc files say /var/task (Lambda's LAMBDA_TASK_ROOT), not this machine.
    command += ["-s", str(staging), "-p", "/var/task", str(staging)]
    subprocess.run(command, capture_output=True)  # a file it cannot compile stays source only
    if (staging / "__pycache__" / f"handler.cpython-{version[0]}{version[1]}.pyc").exists():
        return True
    prune(staging)  # that was not Lambda's Python after all: ship the sources alone
    return False


def write_zip(staging: Path, entries: list[Path], output: Path) -> None:
    """Sorted entries, fixed times and modes: rebuilding from the same wheels gives the same
    bytes. Lambda needs files readable by all (644) and directories searchable (755)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        _write_entries(staging, entries, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)


def _write_entries(staging: Path, entries: list[Path], output: Path) -> None:
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in entries:
            name = path.relative_to(staging).as_posix()
            if path.is_dir():
                info = zipfile.ZipInfo(name + "/", ZIP_TIME)
                info.external_attr = (0o40755 << 16) | 0x10  # and MS-DOS's directory flag
                info.create_system = 3
                archive.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(name, ZIP_TIME)
            executable = path.stat().st_mode & 0o111
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
