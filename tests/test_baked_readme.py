"""The baked README against the code it documents, for every messaging x discovery option set,
and with database=postgres on a broker and without one.

- Every variable in its configuration tables (the tables whose first column is ``variable``)
  is one the service reads, or one of the OpenTelemetry SDK's own ``OTEL_*`` variables; every
  variable the service reads is in them; a default written there is the code's default.
  The service reads: the fields of its ``Settings``; ``MessagingSettings`` and ``BROKER_URL``
  when it has messaging; ``DiscoverySettings`` with Consul; ``DatabaseSettings`` with a
  database; and for each downstream its app
  declares, ``<PREFIX>`` + each field of ``DownstreamSettings`` (``DOWNSTREAM_`` for the
  example's ``downstream``). The README names each variable in full; ``<PREFIX>_*`` may point
  at a group documented in full elsewhere.
- It mentions nothing the options did not bake (a broker without messaging, Consul without it),
  and a messaging setting it calls unused is one the broker's code does not use.
- It has the pointers a new user looks for first: lint, format and type check commands, the
  pre-commit hooks, the API explorer, and how to publish an event from a route; its Python
  blocks compile, import what exists and are ruff-format clean.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import httpx
import opentelemetry.environment_variables
import opentelemetry.sdk.environment_variables
import pytest
import yaml
from _pytest.mark.structures import ParameterSet
from cookiecutter.main import cookiecutter
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from opentelemetry.sdk.trace import TracerProvider
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings
from service_chassis import Downstream
from service_chassis.database.settings import LOCAL_URL, DatabaseSettings
from service_chassis.discovery.settings import DiscoverySettings
from service_chassis.messaging import event_publisher
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.resilience.settings import DownstreamSettings, env_prefix

from tests.conftest import TEMPLATE

OPTIONS = json.loads((TEMPLATE / "cookiecutter.json").read_text())
OPTION_SETS = [
    *(
        (messaging, discovery, "none")
        for messaging, discovery in itertools.product(OPTIONS["messaging"], OPTIONS["discovery"])
    ),
    ("nats", "kubernetes", "postgres"),
    ("none", "none", "postgres"),
]
HTTP_PORT = 8123  # not the default, so a default in the README must come from the answers
MESSAGING_CODE = Path(importlib.import_module("service_chassis.messaging").__file__ or "").parent
BROKER_MODULES = {"nats": "nats.py", "rabbitmq": "rabbitmq.py", "kafka": "kafka.py"}

# The OpenTelemetry SDK's own variables, which the README may document as such.
OTEL_SDK_VARIABLES = frozenset(
    value
    for module in (opentelemetry.environment_variables, opentelemetry.sdk.environment_variables)
    for name, value in vars(module).items()
    if name.startswith("OTEL_") and isinstance(value, str)
)

VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")
GROUP = re.compile(r"^([A-Z][A-Z0-9_]*_)\*$")
BACKTICKED = re.compile(r"`([^`]+)`")


@dataclass
class Baked:
    messaging: str
    discovery: str
    database: str
    root: Path
    package: str
    readme: str = field(repr=False)
    settings: type[BaseSettings] = field(repr=False)
    app: FastAPI = field(repr=False)


def bake_name(options: tuple[str, str, str]) -> str:
    messaging, discovery, database = options
    return f"{messaging}-{discovery}" + ("" if database == "none" else f"-{database}")


def bake_params(option_sets: list[tuple[str, str, str]]) -> list[ParameterSet]:
    # One xdist group per bake: its checks run on one worker, which bakes it once.
    return [
        pytest.param(
            options,
            marks=pytest.mark.xdist_group(f"readme-{bake_name(options)}"),
            id=bake_name(options),
        )
        for options in option_sets
    ]


def only(predicate: Callable[[str, str], bool]) -> pytest.MarkDecorator:
    """Run a test on the bakes it is about (the others have nothing for it to check)."""
    sets = [options for options in OPTION_SETS if predicate(options[0], options[1])]
    return pytest.mark.parametrize("baked", bake_params(sets), indirect=True)


@pytest.fixture(scope="module", params=bake_params(OPTION_SETS))
def baked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Baked]:
    messaging, discovery, database = request.param
    # A package name of its own per bake, so that every bake imports in this one process.
    name = f"readme-{bake_name(request.param)}"
    root = Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context={
                "service_name": name,
                "messaging": messaging,
                "discovery": discovery,
                "database": database,
                "http_port": HTTP_PORT,
            },
            output_dir=str(tmp_path_factory.mktemp(name)),
        )
    )
    package = name.replace("-", "_")
    src = str(root / "src")
    sys.path.insert(0, src)
    try:
        settings = importlib.import_module(f"{package}.settings").Settings
        create_app = importlib.import_module(f"{package}.app").create_app
        # The app as it is built (not started): it declares its downstreams.
        yield Baked(
            messaging=messaging,
            discovery=discovery,
            database=database,
            root=root,
            package=package,
            readme=(root / "README.md").read_text(),
            settings=settings,
            app=create_app(settings(), tracer_provider=TracerProvider()),
        )
    finally:
        sys.path.remove(src)
        for module in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[module]


# What the service reads --------------------------------------------------------------------


def variable_names(model: type[BaseSettings], name: str, info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [choice.upper() for choice in alias.choices if isinstance(choice, str)]
    return [(str(model.model_config.get("env_prefix", "")) + name).upper()]


def fields_of(model: type[BaseSettings], prefix: str | None = None) -> dict[str, object]:
    """Each variable the settings read, with its default (None when there is none)."""
    read: dict[str, object] = {}
    for name, info in model.model_fields.items():
        default = None if info.default is PydanticUndefined else info.default
        if prefix is not None:
            read[(prefix + name).upper()] = default
        else:
            read |= dict.fromkeys(variable_names(model, name, info), default)
    return read


def variables_read(baked: Baked) -> dict[str, object]:
    read = fields_of(baked.settings)
    if baked.messaging != "none":
        read |= fields_of(MessagingSettings)
        # No default of its own: each broker's module has one.
        broker = importlib.import_module(f"service_chassis.messaging.{baked.messaging}")
        read["BROKER_URL"] = broker.DEFAULT_URL
    if baked.discovery == "consul":
        read |= fields_of(DiscoverySettings)
    if baked.database != "none":
        read |= fields_of(DatabaseSettings)
        read["DATABASE_URL"] = LOCAL_URL  # a secret: its default is a SecretStr
    for downstream in baked.app.state.downstreams:
        read |= fields_of(DownstreamSettings, prefix=env_prefix(downstream))
    return read


# What the README documents -----------------------------------------------------------------


@dataclass
class Row:
    table: str
    variables: list[str]
    groups: list[str]
    defaults: list[str]
    what: str
    problems: list[str] = field(default_factory=list)


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def configuration_rows(readme: str) -> Iterator[Row]:
    """The rows of every table whose first column is `variable`."""
    lines = readme.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("|") or cells(line)[0] != "variable":
            continue
        header = cells(line)
        default_column = header.index("default")
        for row_line in itertools.takewhile(lambda text: text.startswith("|"), lines[index + 2 :]):
            row = cells(row_line)
            variables, groups, problems = [], [], []
            for token in BACKTICKED.findall(row[0]):
                if VARIABLE.match(token):
                    variables.append(token)
                elif group := GROUP.match(token):
                    groups.append(group.group(1))
                else:
                    problems.append(f"{token!r}: name each variable in full")
            yield Row(
                table=line,
                variables=variables,
                groups=groups,
                defaults=BACKTICKED.findall(row[default_column]),
                what=row[-1],
                problems=problems,
            )


def documented(baked: Baked) -> set[str]:
    return {name for row in configuration_rows(baked.readme) for name in row.variables}


# The tests ---------------------------------------------------------------------------------


def test_configuration_tables_name_variables_in_full(baked: Baked) -> None:
    rows = list(configuration_rows(baked.readme))
    assert len(rows) > 20
    assert [problem for row in rows for problem in row.problems] == []


def test_every_documented_variable_is_read(baked: Baked) -> None:
    unknown = documented(baked) - set(variables_read(baked)) - OTEL_SDK_VARIABLES
    assert unknown == set(), "the README documents variables the service does not read"


def test_every_variable_read_is_documented(baked: Baked) -> None:
    missing = set(variables_read(baked)) - documented(baked)
    assert missing == set(), "the service reads variables its README does not document"


def test_groups_point_at_variables_that_are_read(baked: Baked) -> None:
    read = set(variables_read(baked))
    for row in configuration_rows(baked.readme):
        for prefix in row.groups:
            assert any(name.startswith(prefix) for name in read), f"{prefix}*"


def same_value(written: str, default: object) -> bool:
    if isinstance(default, bool):
        return written == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(written) == float(default)
        except ValueError:
            return False
    if isinstance(default, tuple):
        return written == ",".join(str(item) for item in default)
    return written == str(default)


def test_documented_defaults_are_the_codes(baked: Baked) -> None:
    """A row's backticked defaults, one per variable, are the fields' defaults (a field with
    no default of its own, None or empty, may be described in words)."""
    read = variables_read(baked)
    wrong = []
    for row in configuration_rows(baked.readme):
        if len(row.defaults) != len(row.variables):
            continue
        for name, written in zip(row.variables, row.defaults, strict=True):
            default = read.get(name)
            if default is None or default == "":
                continue
            if not same_value(written, default):
                wrong.append(f"{name}: README {written!r}, code {default!r}")
    assert wrong == []


def test_the_example_downstream_is_documented_under_its_prefix(baked: Baked) -> None:
    assert list(baked.app.state.downstreams) == ["downstream"]
    names = documented(baked)
    assert {f"DOWNSTREAM_{name.upper()}" for name in DownstreamSettings.model_fields} <= names


# Nothing the options did not bake.
NOT_BAKED: dict[tuple[str, str], list[str]] = {
    ("messaging", "none"): [
        r"BROKER_URL",
        r"MESSAGING_(?!BROKER\b)",
        r"\bPublisher\b",
        r"service_chassis\.messaging",
        r"POST /events",
        r"subscriber",
        r"message handler",
        r"dead letter",
    ],
    ("discovery", "kubernetes"): [r"CONSUL_", r"consul://", r"Consul"],
    ("discovery", "none"): [r"CONSUL_", r"consul://", r"Consul"],
    ("database", "none"): [
        r"DATABASE_(?!SYSTEM\b)",
        r"OUTBOX_",
        r"INBOX_",
        r"\bmigrat",
        r"\boutbox\b",
    ],
}


def test_nothing_that_was_not_baked_is_mentioned(baked: Baked) -> None:
    patterns = [
        *NOT_BAKED.get(("messaging", baked.messaging), []),
        *NOT_BAKED.get(("discovery", baked.discovery), []),
        *NOT_BAKED.get(("database", baked.database), []),
    ]
    found = [
        f"{pattern}: {line.strip()}"
        for pattern in patterns
        for line in baked.readme.splitlines()
        if re.search(pattern, line)
    ]
    assert found == []


def test_the_secret_holds_what_the_overlay_generates(baked: Baked) -> None:
    overlay = baked.root / "deploy" / "k8s" / "overlays" / "example" / "kustomization.yaml"
    generators = yaml.safe_load(overlay.read_text()).get("secretGenerator", [])
    generated = {
        literal.partition("=")[0] for generator in generators for literal in generator["literals"]
    }
    said = re.search(r"-secrets` Secret(.*?)\), a Service", baked.readme, re.DOTALL)
    assert said is not None
    assert set(re.findall(r"`([A-Z][A-Z0-9_]*)`", said.group(1))) == generated
    assert ("generated\nSecret" in baked.readme) == bool(generated)


def uses(messaging_field: str, broker: str) -> bool:
    """Whether the messaging code the broker runs reads the setting."""
    others = {module for name, module in BROKER_MODULES.items() if name != broker}
    for path in MESSAGING_CODE.glob("*.py"):
        if path.name in others or path.name == "settings.py":
            continue
        if re.search(rf"\.{messaging_field}\b", path.read_text()):
            return True
    return False


@only(lambda messaging, discovery: messaging != "none")
def test_settings_called_unused_are_unused(baked: Baked) -> None:
    by_variable = {
        names[0]: name
        for name, info in MessagingSettings.model_fields.items()
        if (names := variable_names(MessagingSettings, name, info))
    }
    for row in configuration_rows(baked.readme):
        if re.search(r"\b(unused|not used)\b", row.what, re.IGNORECASE):
            for variable in row.variables:
                assert variable in by_variable, variable
                assert not uses(by_variable[variable], baked.messaging), (
                    f"{variable} is used with {baked.messaging}: {row.what}"
                )


@only(lambda messaging, discovery: messaging == "rabbitmq")
def test_rabbitmq_destination_and_group_are_described_as_they_work(baked: Baked) -> None:
    rows = {name: row for row in configuration_rows(baked.readme) for name in row.variables}
    assert "fanout exchange" in rows["MESSAGING_DESTINATION"].what
    group = rows["MESSAGING_CONSUMER_GROUP"].what
    assert "queue" in group
    assert "<destination>.<group>" in group


# The pointers a new user looks for first.


def test_lint_format_and_type_check_commands(baked: Baked) -> None:
    for command in ("uv run ruff check .", "uv run ruff format .", "uv run mypy"):
        assert command in baked.readme


def test_pre_commit_hooks(baked: Baked) -> None:
    config = yaml.safe_load((baked.root / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy"} <= hooks
    assert "`.pre-commit-config.yaml`" in baked.readme
    install = re.search(r"\b(uvx|uv run) pre-commit install\b", baked.readme)
    assert install is not None, "the README says how to install the pre-commit hooks"
    if install.group(1) == "uv run":
        # `uv run` finds pre-commit only when it is one of the project's dependencies.
        pyproject = tomllib.loads((baked.root / "pyproject.toml").read_text())
        dev = pyproject.get("dependency-groups", {}).get("dev", [])
        assert any(re.match(r"pre-commit\b", str(requirement)) for requirement in dev)


def test_api_explorer(baked: Baked) -> None:
    assert "Swagger UI" in baked.readme
    assert f"localhost:{HTTP_PORT}/docs" in baked.readme
    assert "`/openapi.json`" in baked.readme
    assert baked.app.docs_url == "/docs"
    assert baked.app.openapi_url == "/openapi.json"
    docs, document = asyncio.run(get(baked.app, "/docs", "/openapi.json"))
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "/openapi.json" in docs.text
    assert document.json()["info"]["title"] == baked.root.name


async def get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    """The app in process, not started: these pages need no broker or registry."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return [await client.get(path) for path in paths]


def python_blocks(readme: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)


def test_python_blocks_compile_and_import_what_exists(baked: Baked) -> None:
    blocks = python_blocks(baked.readme)
    assert blocks
    for block in blocks:
        compile(block, "README.md", "exec")
        for module, names in re.findall(r"^from ([\w.]+) import ([\w, ]+)$", block, re.MULTILINE):
            if not module.startswith(("service_chassis", baked.package, "fastapi", "typing")):
                continue
            imported: ModuleType = importlib.import_module(module)
            for name in names.split(","):
                assert hasattr(imported, name.strip()), f"from {module} import {name.strip()}"


def test_python_blocks_are_ruff_format_clean(baked: Baked) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--diff", "README.md"],
        cwd=baked.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@only(lambda messaging, discovery: messaging != "none")
def test_publishing_an_event_from_a_route(baked: Baked) -> None:
    blocks = "\n".join(python_blocks(baked.readme))
    assert "from service_chassis.messaging import Event, NewEvent, Publisher" in blocks
    assert "publisher: Publisher" in blocks
    assert "await publisher.publish(Event.create(NewEvent(" in blocks
    # The way the example itself publishes.
    example = (baked.root / "src" / baked.package / "example" / "events.py").read_text()
    assert "from service_chassis.messaging import Event, NewEvent, Publisher" in example
    assert "publisher: Publisher" in example
    assert "await publisher.publish(event)" in example
    assert "Publisher" in importlib.import_module("service_chassis.messaging").__all__


def test_the_route_example_builds_its_route(baked: Baked) -> None:
    """The block that shows a module of routes runs as it is and makes the route it says."""
    (block,) = [block for block in python_blocks(baked.readme) if "APIRouter(" in block]
    namespace: dict[str, object] = {"__name__": f"{baked.package}.api"}
    exec(compile(block, "README.md", "exec"), namespace)
    downstream = namespace["PAYMENTS"]
    assert isinstance(downstream, Downstream)
    router = namespace["router"]
    assert isinstance(router, APIRouter)
    (route,) = router.routes
    assert isinstance(route, APIRoute)
    assert (route.path, route.methods) == ("/orders", {"POST"})
    dependencies = {dependency.call for dependency in route.dependant.dependencies}
    assert downstream in dependencies
    assert (event_publisher in dependencies) == (baked.messaging != "none")
