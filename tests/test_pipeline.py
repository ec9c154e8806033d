"""The pipeline's shape: it, storage and maintenance name no feature; importing the pipeline (as
`portabot poll` and the harness do) brings neither the HTTP app nor the flow engine's features;
storage imports nothing from the flow."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import portabot

PACKAGE = Path(portabot.__file__).resolve().parent
FEATURE_WORDS = ("link", "passphrase", "bind")


def modules(*names: str) -> list[Path]:
    """The modules, a package's included; not migrations, which record history (features' tables
    that the first ones made included)."""
    found: list[Path] = []
    for name in names:
        path = PACKAGE / name
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")])
    return [path for path in found if "migrations" not in path.parts]


def run_time_imports(tree: ast.AST) -> set[str]:
    """The modules imported, but for those under `if TYPE_CHECKING:` (names for types only)."""
    imported: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        imported |= run_time_imports(node)
    return imported


@pytest.mark.parametrize(
    "path",
    modules("pipeline", "webhooks", "polling", "bot", "maintenance", "storage"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_pipeline_storage_and_maintenance_name_no_feature(path: Path) -> None:
    text = path.read_text().lower()
    assert not [word for word in FEATURE_WORDS if word in text], path


@pytest.mark.parametrize("path", modules("storage"), ids=lambda p: p.name)
def test_storage_imports_nothing_from_the_flow(path: Path) -> None:
    imported = run_time_imports(ast.parse(path.read_text()))
    flow = ("portabot.conversation", "portabot.features")
    found = sorted(name for name in imported if name.startswith(flow))
    assert not found, f"{path.name} imports {found}"


def test_the_pipeline_imports_without_the_http_app() -> None:
    probe = (
        "import sys, portabot.pipeline, portabot.polling, portabot.testing.harness\n"
        "print(sorted(m for m in sys.modules if m in ('portabot.app', 'portabot.webhooks')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_platform_s_models_are_imported_only_where_it_is_configured(tmp_path: Path) -> None:
    probe = (
        "import sys; from portabot.app import create_app; create_app()\n"
        "print(sorted(m for m in sys.modules if m.startswith('portabot.channels.')))"
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
        "TELEGRAM_TOKEN": "123:telegram-only",
        "TELEGRAM_SECRET": "telegram-only-secret",
        "SESSION_SECRET": "a-session-secret-for-the-probe",
    }
    env.pop("VK_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert "portabot.channels.telegram" in done.stdout
    assert "portabot.channels.vk" not in done.stdout
