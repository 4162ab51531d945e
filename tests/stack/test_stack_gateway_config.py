"""The gateway's configuration as code: the route table, the Caddyfile, the compose service and
the image build agree with one another and with the demo's baked services.

The Caddyfile is checked by the pinned Caddy itself (`caddy validate` provisions every module,
the edge module included; `caddy fmt` is Caddy's own formatting).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import BAKES
from tests.stack.gateway import CADDYFILE, GATEWAY_DIR, ROUTES, routes

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HTTP_PORT = json.loads((REPO / "cookiecutter.json").read_text())["http_port"]


@pytest.fixture(scope="module")
def caddy(stack_binaries: dict[str, Path]) -> Path:
    return stack_binaries["caddy"]


@pytest.fixture(scope="module")
def service(compose: dict[str, Any]) -> dict[str, Any]:
    gateway: dict[str, Any] = compose["services"]["gateway"]
    return gateway


def test_one_route_per_baked_service_of_the_demo() -> None:
    table = routes()
    assert sorted(route.service for route in table) == sorted(BAKES)
    for route in table:
        name = route.service
        assert route.variable == name.upper().replace("-", "_") + "_UPSTREAM"
        # On the compose network a baked service is its name at its default port.
        assert route.default == f"{name}:{DEFAULT_HTTP_PORT}"
        assert route.auth in {"jwt", "public"}
        assert route.events > 0
        assert re.fullmatch(r"\d+[smh]", route.window)
    # The e2e test and the demo enter at storefront without a token.
    assert {r.service: r.auth for r in table}["storefront"] == "public"


def test_the_route_table_parser_rejects_what_is_not_a_route() -> None:
    with pytest.raises(AssertionError, match="not a route line"):
        routes("import api /orders orders:8000 jwt 600 1m\n")  # upstream without its variable


def test_every_setting_the_caddyfile_reads_is_documented_in_its_header() -> None:
    text = CADDYFILE.read_text()
    header = text.split("\n{", 1)[0]
    read = set(re.findall(r"\{\$(\w+)", text))
    assert read, "the Caddyfile reads no environment variables"
    assert {name for name in read if name not in header} == set()
    # The route table's variables are documented as a family.
    assert "<SERVICE>_UPSTREAM" in header
    assert {r.variable for r in routes()} == set(re.findall(r"\{\$(\w+)", ROUTES.read_text()))


def environment(service: dict[str, Any], **extra: str) -> dict[str, str]:
    """The compose service's environment, its ${VAR:-default} resolved to the default."""
    resolved = {
        key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        for key, value in service["environment"].items()
    }
    return {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **resolved, **extra}


def validate(caddy: Path, env: dict[str, str], config: Path = CADDYFILE) -> Any:
    return subprocess.run(
        [str(caddy), "validate", "--config", str(config), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_pinned_caddy_validates_the_caddyfile_as_compose_runs_it(
    caddy: Path, service: dict[str, Any]
) -> None:
    result = validate(caddy, environment(service))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Valid configuration" in result.stdout + result.stderr


def test_without_a_jwt_secret_the_gateway_does_not_start(
    caddy: Path, service: dict[str, Any]
) -> None:
    env = environment(service)
    del env["GATEWAY_JWT_SECRET"]
    result = validate(caddy, env)
    assert result.returncode != 0
    assert "bearer_jwt: no key" in result.stderr
    short = validate(caddy, environment(service, GATEWAY_JWT_SECRET="too-short"))
    assert short.returncode != 0
    assert "at least 32 bytes" in short.stderr


@pytest.mark.parametrize("path", [CADDYFILE, ROUTES], ids=lambda p: p.name)
def test_the_config_is_in_caddys_own_format(caddy: Path, path: Path) -> None:
    formatted = subprocess.run(
        [str(caddy), "fmt", str(path)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert formatted.strip() == path.read_text().strip()


def test_the_compose_service_runs_these_files_from_this_folder(service: dict[str, Any]) -> None:
    assert service["build"] == {"context": "./gateway"}
    assert service["pull_policy"] == "build"
    assert set(service["volumes"]) == {
        "./gateway/Caddyfile:/etc/caddy/Caddyfile:ro",
        "./gateway/routes.caddy:/etc/caddy/routes.caddy:ro",
    }
    assert service["ports"] == ["127.0.0.1:8080:8080"]
    assert service["environment"]["OTEL_SERVICE_NAME"] == "gateway"
    # Jaeger's OTLP/HTTP receiver on the network, with the protocol to match.
    assert service["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert service["environment"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    # The healthcheck asks the management port, which is not published.
    assert ":2020/health/live" in " ".join(service["healthcheck"]["test"])
    assert "{$GATEWAY_MANAGEMENT_PORT:2020}" in CADDYFILE.read_text()


def test_the_image_tag_is_the_caddy_that_go_mod_requires(service: dict[str, Any]) -> None:
    tag = service["image"].rpartition(":")[2]
    go_mod = (GATEWAY_DIR / "go.mod").read_text()
    (required,) = re.findall(r"^\s*github\.com/caddyserver/caddy/v2 v(\S+)$", go_mod, re.M)
    assert tag == required


def test_the_image_builds_what_install_stack_builds_and_runs_the_same_files() -> None:
    dockerfile = (GATEWAY_DIR / "Dockerfile").read_text()
    go_version = re.search(r"^go (\d+\.\d+)", (GATEWAY_DIR / "go.mod").read_text(), re.M)
    assert go_version
    assert f"FROM golang:{go_version[1]}-alpine AS build" in dockerfile
    for copied in ("go.mod go.sum", "main.go", "edge/", "Caddyfile routes.caddy /etc/caddy/"):
        assert f"COPY {copied}" in dockerfile, copied
    assert '-mod=readonly -buildvcs=false" go build -trimpath' in dockerfile
    assert "/etc/caddy/Caddyfile" in dockerfile.rsplit("ENTRYPOINT", 1)[1]
