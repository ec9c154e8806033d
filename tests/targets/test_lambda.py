"""The Lambda target: the handler loaded from its file as Lambda loads it and fed the events of a
function URL, API Gateway (HTTP and REST APIs) and an ALB; the zip built, unpacked and run on its
own; the SAM template linted and checked against the settings."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from portabot.costs.model import LOG_RETENTION_DAYS
from portabot.costs.prices import PriceBook
from portabot.packaging import (
    LAMBDA_PYTHON,
    LOCK,
    MACHINES,
    UNZIPPED_LIMIT,
    ZIPPED_LIMIT,
    LambdaPackage,
    PackagingError,
    build_lambda_zip,
    checked_lock,
    copy_included,
    lambda_requirements,
    runtime_requirements,
    source_tree,
)
from portabot.settings import ConfigurationError, Settings, load_settings
from portabot.storage.database import Query
from portabot.testing.fakes import FakeTelegram
from tests.conftest import BOT_USERNAME, query
from tests.targets.conftest import pins
from tests.targets.lambda_runtime import (
    EVENTS,
    NOT_FOR_USERS,
    ROOT,
    SHAPES,
    TEMPLATE,
    UPDATE_CHAT,
    Answer,
    Container,
    load_handler,
    request,
    say_web,
    stored_event,
    with_secret,
)
from tests.test_maintain import Backlog, counts, fill


def telegram_updates(url: str) -> list[str]:
    sql = "SELECT update_id FROM updates WHERE platform = 'telegram' ORDER BY update_id"
    return [row["update_id"] for row in query(url, sql)]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_telegram_update_is_answered_in_the_response_once(
    container: Container, shape: str, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    event = stored_event(shape)
    answer = Answer.of(container.invoke(event))
    assert answer.status == 200
    reply = answer.json()
    assert reply["method"] == "sendMessage" and reply["chat_id"] == UPDATE_CHAT
    assert "/bind" in reply["text"]
    assert answer.headers["content-type"] == "application/json"

    # Telegram delivers it again (it did not see our answer in time): acknowledged, skipped.
    again = Answer.of(container.invoke(event))
    assert again.status == 200 and again.body == b""
    assert telegram_updates(empty_postgres) == ["846512001"]
    assert fake_telegram.calls == []  # the reply rode in the response: no call to the Bot API


@pytest.mark.parametrize("shape", SHAPES)
def test_a_wrong_secret_is_refused_through_every_shape(
    container: Container, shape: str, empty_postgres: str
) -> None:
    answer = Answer.of(container.invoke(with_secret(stored_event(shape), "not-the-secret")))
    assert answer.status == 403
    assert "secret" in answer.json()["error"]
    assert telegram_updates(empty_postgres) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_the_web_chat_keeps_its_visitor_through_the_cookie(
    container: Container, shape: str
) -> None:
    cookies: list[str] = []
    [code] = say_web(container, shape, "/bind", cookies)
    assert "/in " in code
    # Every way onto the web is HTTPS: the cookie carries the __Host- prefix.
    assert [c.split("=")[0] for c in cookies] == ["__Host-portabot_web"]
    # The same visitor (by the cookie) has a code to cancel; a new one would not.
    assert say_web(container, shape, "/cancel", cookies) == ["Linking cancelled."]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_home_page_and_health(container: Container, shape: str) -> None:
    home = Answer.of(container.invoke(request(shape, "GET", "/")))
    assert home.status == 200 and home.headers["content-type"].startswith("text/html")
    assert f"https://t.me/{BOT_USERNAME}" in home.body.decode()
    health = Answer.of(container.invoke(request(shape, "GET", "/healthz")))
    assert health.status == 200
    assert health.json()["status"] == "ok" and health.json()["database"] == "postgresql"


def test_one_connection_per_container_on_one_event_loop(container: Container) -> None:
    assert container.db.pool_size == 1  # the handler's default for DATABASE_POOL_SIZE
    loop = container.run(asyncio.get_event_loop)
    say_web(container, "function_url", "/help", [])
    pool = container.db._pool
    assert pool is not None

    async def backend_pid() -> int:
        async with container.db.autocommit() as conn:
            pid: int = await conn.fetch_val(Query("SELECT pg_backend_pid()"))
        return pid

    first = container.run_async(backend_pid)
    for update_id in ("846512002", "846512003"):
        update = stored_event("function_url")
        update["body"] = update["body"].replace("846512001", update_id)
        assert Answer.of(container.invoke(update)).status == 200
        say_web(container, "function_url", "/me", [])
    # Warm invocations: the same loop (Mangum keeps one), the same pool, the same connection.
    assert container.run(asyncio.get_event_loop) is loop and not loop.is_closed()
    assert container.db._pool is pool
    assert pool is not None and pool.get_size() == 1
    assert container.run_async(backend_pid) == first


def test_a_connection_that_died_while_frozen_is_replaced(
    container: Container, empty_postgres: str
) -> None:
    cookies: list[str] = []
    say_web(container, "function_url", "/bind", cookies)
    # The container sleeps; meanwhile the server (or a NAT, or an idle timeout) drops it.
    killed = query(
        empty_postgres,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert len(killed) >= 1
    answer = Answer.of(container.invoke(stored_event("function_url")))
    assert answer.status == 200, answer.body
    assert "/bind" in answer.json()["text"]
    assert say_web(container, "function_url", "/cancel", cookies) == ["Linking cancelled."]
    assert telegram_updates(empty_postgres) == ["846512001"]


def test_the_schedule_runs_maintenance_in_the_container(
    container: Container, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    backlog = Backlog(old_updates=1_000)
    fill(empty_postgres, backlog, time.time())
    # What the template's EventBridge rule sends every hour.
    result = container.invoke(stored_event("scheduled"))
    assert result["maintained"][0] == "updates: 1000 deleted (received more than 7 days ago)"
    assert result["maintained"][-1] == "outbox: sent 3, failed 0; 0 waiting for a later try"
    assert counts(empty_postgres)["updates"] == backlog.recent_updates + backlog.recent_web_updates
    assert [p["text"] for p in fake_telegram.sent()] == ["due 1", "due 2", "due 3"]
    # The same container then serves a webhook as before, on the same connection.
    assert Answer.of(container.invoke(stored_event("function_url"))).status == 200
    assert container.db._pool is not None
    assert container.db._pool.get_size() == 1


def test_the_tick_schedule_runs_what_is_due_in_the_container(
    container: Container, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    fill(empty_postgres, Backlog(due=2), time.time())
    # What the template's Tick rule sends every minute: its constant Input, as the whole event.
    event = stored_event("tick")
    assert event == container.module.TICK == json.loads(tick_rule()["Input"])
    assert container.invoke(event)["ran"][-1] == "outbox: sent 2, failed 0"
    assert [p["text"] for p in fake_telegram.sent()] == ["due 1", "due 2"]
    assert container.invoke(event)["ran"][-1] == "outbox: sent 0, failed 0"  # nothing twice
    assert counts(empty_postgres)["updates"] > 0  # no maintenance ran: nothing was purged
    # The same container then serves a webhook as before, on the same connection.
    assert Answer.of(container.invoke(stored_event("function_url"))).status == 200
    assert container.db._pool is not None
    assert container.db._pool.get_size() == 1


OTHER_EVENTS = {
    "custom-eventbridge-event": (
        {
            "version": "0",
            "id": "4c0c6c1a-8d1e-4a3f-9b7e-2f3d5c6b7a81",
            "detail-type": "Order Placed",
            "source": "com.example.shop",
            "account": "123456789012",
            "time": "2026-11-24T03:00:00Z",
            "region": "eu-central-1",
            "resources": [],
            "detail": {"card": "secret-4111111111111111"},
        },
        "source 'com.example.shop', detail-type 'Order Placed', keys account, detail, detail-type,",
    ),
    "s3": (
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "eu-central-1",
                    "eventTime": "2026-11-24T03:00:00.000Z",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": "secret-bucket"},
                        "object": {"key": "secret/key.txt", "size": 12},
                    },
                }
            ]
        },
        "source 'aws:s3', detail-type none, keys Records",
    ),
    "sqs": (
        {
            "Records": [
                {
                    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                    "body": "secret message body",
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:portabot",
                    "awsRegion": "eu-central-1",
                }
            ]
        },
        "source 'aws:sqs', detail-type none, keys Records",
    ),
    "another-input": ({"portabot": "tock"}, "source none, detail-type none, keys portabot"),
    "more-than-the-tick": (
        {"portabot": "tick", "at": "secret"},
        "source none, detail-type none, keys at, portabot",
    ),
    "empty": ({}, "source none, detail-type none, keys none"),
    "a-string": ("secret ping", "a JSON str"),
    "a-list": ([{"secret": 1}], "a JSON list"),
}


@pytest.mark.parametrize(("event", "described"), OTHER_EVENTS.values(), ids=OTHER_EVENTS)
def test_an_event_that_is_not_a_request_is_logged_and_answered(
    container: Container,
    caplog: pytest.LogCaptureFixture,
    empty_postgres: str,
    event: Any,
    described: str,
) -> None:
    portabot_log = logging.getLogger("portabot")  # it does not pass its records to the root
    portabot_log.addHandler(caplog.handler)
    try:
        result = container.invoke(event)
    finally:
        portabot_log.removeHandler(caplog.handler)
    assert result == {"ignored": "neither an HTTP request nor the tick or maintenance schedule"}
    [line] = [r.getMessage() for r in caplog.records if r.name == "portabot.lambda"]
    assert line.startswith("Lambda event ignored (neither an HTTP request nor a schedule): ")
    assert described in line and "secret" not in line and "\n" not in line
    assert telegram_updates(empty_postgres) == []
    # The container goes on serving as before.
    assert Answer.of(container.invoke(stored_event("function_url"))).status == 200
    assert telegram_updates(empty_postgres) == ["846512001"]


def test_sqlite_is_refused_on_lambda_when_the_handler_is_imported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "portabot")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"SQLite on Lambda.*PostgreSQL"):
        load_handler()


# The deployment package


@pytest.fixture(scope="module")
def local_package(tmp_path_factory: pytest.TempPathFactory) -> LambdaPackage:
    """The zip for this machine's Python and architecture, so that it can run here."""
    arch = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine())
    if sys.platform != "linux" or arch is None:
        pytest.skip("the package holds Linux wheels: it runs on Linux, x86_64 or aarch64")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    output = tmp_path_factory.mktemp("dist") / "lambda.zip"
    return build_lambda_zip(output, arch=arch, python_version=version)  # CLI's way: no root


RUN_UNPACKED = """
import json, sys
import handler, mangum, asyncpg, pydantic_core
modules = [m.__file__ for m in (handler, mangum, asyncpg, pydantic_core)]
event = json.load(open(sys.argv[1]))
first = handler.handler(event, None)
event["body"] = event["body"].replace("846512001", "846512002")
warm = handler.handler(event, None)
print(json.dumps({"responses": [first, warm], "path": sys.path, "modules": modules}))
"""


def test_the_unpacked_zip_runs_the_bot_on_its_own(
    local_package: LambdaPackage,
    tmp_path: Path,
    lambda_environment: dict[str, str],
    fake_telegram: FakeTelegram,
) -> None:
    task = tmp_path / "task"  # Lambda unpacks the zip into /var/task
    with zipfile.ZipFile(local_package.path) as archive:
        archive.extractall(task)
    # -S: no site-packages, so only the standard library and the unpacked zip can be imported.
    # PYTHONDONTWRITEBYTECODE: /var/task is read-only, nothing compiled can be kept.
    env = {**lambda_environment, "PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-S", "-c", RUN_UNPACKED, str(EVENTS / "function_url.json")],
        cwd=task,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ran = json.loads(result.stdout)
    assert not any("site-packages" in entry for entry in ran["path"])
    assert all(module.startswith(str(task)) for module in ran["modules"])
    first, warm = (Answer.of(response) for response in ran["responses"])
    assert first.status == warm.status == 200
    assert first.json()["chat_id"] == UPDATE_CHAT and "/bind" in first.json()["text"]
    assert telegram_updates(lambda_environment["DATABASE_URL"]) == ["846512001", "846512002"]
    assert fake_telegram.calls == []


def test_the_zip_holds_portabot_the_handler_and_wheels_within_lambdas_limits(
    local_package: LambdaPackage,
) -> None:
    with zipfile.ZipFile(local_package.path) as archive:
        entries = archive.infolist()
    names = {entry.filename for entry in entries}
    assert local_package.zipped <= ZIPPED_LIMIT and local_package.unzipped <= UNZIPPED_LIMIT
    assert sum(entry.file_size for entry in entries) == local_package.unzipped
    assert local_package.files == sum(not entry.is_dir() for entry in entries)
    assert {
        "handler.py",
        "portabot/app.py",
        "portabot/web/index.html",
        "portabot/features/linking/words.txt",
        "portabot/storage/migrations/env.py",
        "portabot/storage/migrations/script.py.mako",
        "portabot/storage/migrations/versions/0001_initial.py",
        "mangum/adapter.py",
        "asyncpg/__init__.py",
    } <= names
    tops = {name.split("/")[0] for name in names}
    assert not tops & {"tests", "examples", "targets", "bin", "include", "pip", "setuptools"}
    assert not [name for name in names if "/tests/" in name or name.endswith("conftest.py")]
    assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}


def test_the_zip_ships_hash_checked_bytecode_for_lambdas_python_only(
    local_package: LambdaPackage,
) -> None:
    # Lambda cannot write __pycache__ into /var/task: without these, each cold start compiles.
    assert local_package.precompiled
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(local_package.path) as archive:
        names = set(archive.namelist())
        compiled = sorted(name for name in names if name.endswith(".pyc"))
        assert compiled and f"__pycache__/handler.{tag}.pyc" in names
        for name in compiled:
            pyc = PurePosixPath(name)
            source = pyc.parent.parent / f"{pyc.name.split('.')[0]}.py"
            assert pyc.parent.name == "__pycache__" and pyc.name.endswith(f".{tag}.pyc"), name
            assert str(source) in names, name
            flags = int.from_bytes(archive.read(name)[4:8], "little")
            assert flags == 0b11, name  # hash-based and checked: no file times involved


def test_rebuilding_gives_the_same_bytes(local_package: LambdaPackage, tmp_path: Path) -> None:
    again = build_lambda_zip(
        tmp_path / "lambda.zip",
        arch=local_package.arch,
        python_version=local_package.python_version,
    )
    assert again.path.read_bytes() == local_package.path.read_bytes()


def test_the_zip_holds_the_locked_versions_ci_tested(local_package: LambdaPackage) -> None:
    with zipfile.ZipFile(local_package.path) as archive:
        metadata = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        shipped = {}
        for name in metadata:
            text = archive.read(name).decode()
            [package] = re.findall(r"^Name: (.+)$", text, re.MULTILINE)
            [version] = re.findall(r"^Version: (.+)$", text, re.MULTILINE)
            shipped[re.sub(r"[-_.]+", "-", package.lower())] = version
    assert shipped == pins(ROOT / LOCK)
    tested = pins(ROOT / "requirements" / "test.txt")
    assert {name: tested[name] for name in shipped} == shipped
    assert not {"sqlalchemy", "alembic", "aiosqlite"} & set(shipped)


def test_the_lock_pins_what_pyproject_asks_for() -> None:
    names = {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in lambda_requirements()}
    assert names <= set(pins(ROOT / LOCK)) and {"mangum", "asyncpg", "starlette"} <= names


def test_a_lock_behind_pyproject_is_refused(tmp_path: Path) -> None:
    (tmp_path / LOCK).parent.mkdir()
    (tmp_path / LOCK).write_text("starlette==1.0 \\\n    --hash=sha256:00\n")
    with pytest.raises(PackagingError, match=r"pins no asyncpg, mangum: run requirements/upd"):
        checked_lock(tmp_path, ["starlette>=0.49.1", "asyncpg>=0.29", "mangum>=0.19"])
    with pytest.raises(PackagingError, match=r"no requirements/lambda.txt in .*update.sh"):
        checked_lock(tmp_path / "elsewhere", ["starlette"])


def test_the_package_takes_the_runtime_dependencies_and_the_lambda_extras() -> None:
    pyproject = {
        "project": {
            "name": "portabot",
            "dependencies": ["starlette>=0.47", "sqlalchemy[asyncio]>=2", "alembic>=1.13"],
            "optional-dependencies": {
                "postgres": ["asyncpg>=0.29"],
                "lambda": ["mangum>=0.19"],
                "server": ["gunicorn>=23"],
                "test": ["portabot[postgres]", "pytest>=8"],
            },
        }
    }
    assert runtime_requirements(pyproject) == [  # the function never migrates the schema
        "starlette>=0.47",
        "asyncpg>=0.29",
        "mangum>=0.19",
    ]


def test_the_package_is_built_from_the_source_tree_portabot_comes_from() -> None:
    assert source_tree() == ROOT


def test_a_flow_of_your_own_is_included_at_the_top(tmp_path: Path) -> None:
    staging = tmp_path / "package"
    (staging / "portabot").mkdir(parents=True)
    copy_included(ROOT / "examples", staging)  # for BOT_FLOW=examples.support:flow
    assert (staging / "examples" / "support.py").is_file()
    assert not list(staging.rglob("__pycache__"))
    with pytest.raises(PackagingError, match="has a portabot already"):
        copy_included(ROOT / "portabot", staging)
    with pytest.raises(PackagingError, match="no such file"):
        copy_included(ROOT / "counter.py", staging)


@pytest.mark.parametrize(
    ("arch", "version", "message"),
    [("i386", "3.13", "architecture"), ("arm64", "3.10", "3.11 or newer"), ("arm64", "3", "X.Y")],
)
def test_what_lambda_cannot_run_is_refused(
    tmp_path: Path, arch: str, version: str, message: str
) -> None:
    with pytest.raises(PackagingError, match=message):
        build_lambda_zip(tmp_path / "x.zip", project_root=ROOT, arch=arch, python_version=version)
    assert not (tmp_path / "x.zip").exists()


# The SAM template


def template_parameters() -> dict[str, dict[str, str]]:
    """Each parameter's simple properties, read from the template's text."""
    text = TEMPLATE.read_text()
    section = text.split("\nParameters:\n", 1)[1].split("\nConditions:\n", 1)[0]
    parameters: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"^  (\w+):\n((?:    .*\n)+)", section + "\n", re.MULTILINE):
        properties = re.findall(r"^    (\w+): ?(.*)$", body, re.MULTILINE)
        parameters[name] = {key: value.strip().strip('"') for key, value in properties}
    return parameters


def template_environment() -> dict[str, str]:
    """The function's environment variables and the parameter each one takes."""
    text = TEMPLATE.read_text()
    return dict(re.findall(r"^ {10}([A-Z_]+): !Ref (\w+)$", text, re.MULTILINE))


def test_cfn_lint_passes_the_template() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_template_runs_the_handler_of_the_package() -> None:
    text = TEMPLATE.read_text()
    assert "Transform: AWS::Serverless-2016-10-31" in text
    assert "      Handler: handler.handler\n" in text
    assert f"      Runtime: python{LAMBDA_PYTHON}\n" in text  # the wheels are built for it
    assert "      Architectures: [!Ref Architecture]\n" in text
    assert "      CodeUri: ../../dist/lambda.zip\n" in text  # portabot package lambda's output
    assert "        AuthType: NONE" in text
    # `portabot maintain` every hour: an EventBridge rule whose event the handler recognises.
    maintain = schedule_rule("Maintain")
    assert maintain["Schedule"] == "rate(1 hour)" and "Input" not in maintain
    # `portabot tick` every minute, known by its Input, unless the Tick parameter says off.
    tick = tick_rule()
    assert tick["Schedule"] == "rate(1 minute)"
    assert tick["State"] == "!If [Ticks, ENABLED, DISABLED]"
    assert '  Ticks: !Equals [!Ref Tick, "on"]\n' in text
    parameter = template_parameters()["Tick"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("on", '["on", "off"]')


def schedule_rule(name: str) -> dict[str, str]:
    """The properties of one of the function's Schedule events, read from the template's text."""
    events = TEMPLATE.read_text().split("\n      Events:\n", 1)[1].split("\n\nOutputs:", 1)[0]
    [body] = re.findall(rf"^        {name}:\n((?:          .*\n|\s*#.*\n)+)", events + "\n", re.M)
    assert "          Type: Schedule\n" in body
    properties = body.split("          Properties:\n", 1)[1]
    found = re.findall(r"^            (\w+): (.*)$", properties, re.MULTILINE)
    return {key: value.strip().strip("'") for key, value in found}


def tick_rule() -> dict[str, str]:
    return schedule_rule("Tick")


def test_the_template_sets_every_setting_and_hides_the_secrets() -> None:
    environment = template_environment()
    parameters = template_parameters()
    settable = {name.upper() for name in Settings.model_fields} - {n.upper() for n in NOT_FOR_USERS}
    assert set(environment) == settable
    assert set(environment.values()) <= set(parameters)
    secret = re.compile(r"DATABASE_URL|TOKEN|SECRET|PASSPHRASE")
    for variable, parameter in environment.items():
        assert (parameters[parameter].get("NoEcho") == "true") == bool(secret.search(variable))
    assert parameters["MemorySize"]["Default"] == "256"
    assert parameters["Timeout"]["Default"] == "15"
    assert "ReservedConcurrency" in parameters


def test_no_concurrency_is_reserved_unless_asked() -> None:
    """A reservation fails the first deploy on accounts whose concurrency quota is low."""
    reserved = template_parameters()["ReservedConcurrency"]
    assert (reserved["Default"], reserved["MinValue"]) == ("0", "0")
    text = TEMPLATE.read_text()
    assert "  ReservesConcurrency: !Not [!Equals [!Ref ReservedConcurrency, 0]]\n" in text
    assert (
        "      ReservedConcurrentExecutions: !If\n        - ReservesConcurrency\n"
        "        - !Ref ReservedConcurrency\n        - !Ref AWS::NoValue\n"
    ) in text


def test_the_logs_are_kept_as_long_as_the_parameter_says() -> None:
    """A log group Lambda makes on its own keeps, and bills, every line for ever."""
    text = TEMPLATE.read_text()
    assert (
        "  BotLogGroup:\n"
        "    # Made here so that it has a retention; one Lambda made on its own would keep logs"
    ) in text
    assert (
        "    Type: AWS::Logs::LogGroup\n    Properties:\n"
        "      LogGroupName: !Sub /aws/lambda/${AWS::StackName}\n"
        "      RetentionInDays: !Ref LogRetentionDays\n"
    ) in text
    # The function writes to it (so it exists first) and keeps its generated name: an existing
    # stack's function, and its URL the webhooks point at, are not replaced.
    assert "      LoggingConfig:\n        LogGroup: !Ref BotLogGroup\n" in text
    assert "FunctionName: !Ref AWS::StackName" not in text
    retention = template_parameters()["LogRetentionDays"]
    assert (retention["Type"], retention["Default"]) == ("Number", str(LOG_RETENTION_DAYS))
    assert "14" in retention["AllowedValues"].strip("[]").split(", ")  # cfn-lint checks the rest


def test_the_retention_parameter_says_what_logs_cost() -> None:
    section = TEMPLATE.read_text().split("\n  LogRetentionDays:\n", 1)[1]
    folded = section.split("    Description: >-\n", 1)[1]
    description = " ".join(re.findall(r"^      (.*)$", re.split(r"\n  (?=\S)", folded)[0], re.M))
    prices = PriceBook.load()
    assert f"${prices.value('cloudwatch.logs_ingest'):.2f} a GB " in description
    assert f"${prices.value('cloudwatch.logs_storage'):.2f} a GB-month" in description


def test_the_architecture_is_the_one_the_package_was_built_for() -> None:
    architecture = template_parameters()["Architecture"]
    assert architecture["AllowedValues"] == f"[{', '.join(MACHINES)}]"
    assert architecture["Default"] == "arm64"  # build_lambda_zip's and the CLI's default too
    for arch in MACHINES:
        built = LambdaPackage(Path("dist/lambda.zip"), 1, 2, 3, arch, LAMBDA_PYTHON, True)
        deploy = built.describe().splitlines()[-1].strip()
        assert deploy == (
            "deploy it with: sam deploy --template-file targets/lambda/template.yaml "
            f"--parameter-overrides Architecture={arch}"
        )


def test_the_templates_defaults_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    parameters = template_parameters()
    for variable, parameter in template_environment().items():
        monkeypatch.setenv(variable, parameters[parameter].get("Default", ""))
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:pw@db.example.com/bot?sslmode=require")
    settings = load_settings(env_file=None)
    assert not settings.telegram_enabled and not settings.vk_enabled
    assert settings.public_url is None and settings.bot_passphrase is None
    assert settings.database_url.endswith("?ssl=require")
