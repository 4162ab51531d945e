"""The HTTPRoute that puts the service's API on the cluster's Gateway (deploy/k8s/base).

Validated against the Gateway API's own schema (see gateway_route.py; the CRD's CEL rules
are not evaluated offline, so the one this route relies on is checked by hand), and checked
against the app: every API path is reachable at /<service>/<path> with the prefix stripped,
and no management endpoint (/metrics, /health/*, /docs, /openapi.json, /sagas) is.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from {{ cookiecutter.__package_name }} import SERVICE_NAME

from .gateway_route import GATEWAY_API, SCHEMA_FILE, httproute_schema, route
from .kustomize import build, find
from .manifests import BASE, OVERLAYS, app, route_paths

# Management endpoints, and the example saga's operator routes (/sagas), stay inside.
MANAGEMENT = (
    "/metrics",
    "/health/live",
    "/health/ready",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/sagas",
)
PREFIX = f"/{SERVICE_NAME}"


@pytest.fixture(scope="module", params=[BASE, *OVERLAYS], ids=lambda p: p.name)
def httproute(request: pytest.FixtureRequest) -> dict[str, Any]:
    objects = build(request.param)
    found: dict[str, Any] = find(objects, "HTTPRoute", SERVICE_NAME)
    return found


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = httproute_schema()
    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
    return validator_class(schema)


def api_paths() -> set[str]:
    """The app's API paths (path parameters filled in), without its management endpoints."""
    paths = route_paths(app())
    inside = ("/health", "/metrics", "/docs", "/redoc", "/sagas")
    api = {p for p in paths if not p.startswith(inside)}
    api.discard("/openapi.json")
    return {re.sub(r"\{[^}]+\}", "1", p) for p in api}


def test_the_schema_is_the_gateway_apis_v1_httproute() -> None:
    assert re.fullmatch(r"httproute-v1-gateway-api-v\d+\.\d+\.\d+\.json", SCHEMA_FILE.name)
    assert set(httproute_schema()["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}


def test_the_route_is_valid_against_the_gateway_api_schema(
    httproute: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    assert httproute["apiVersion"] == f"{GATEWAY_API}/v1"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(httproute)]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    ["misspelt field", "unknown path type", "port out of range", "too many rules"],
)
def test_the_schema_refuses_a_wrong_route(
    httproute: dict[str, Any], validator: jsonschema.protocols.Validator, breakage: str
) -> None:
    broken = copy.deepcopy(httproute)
    rule = broken["spec"]["rules"][0]
    if breakage == "misspelt field":
        rule["backendRef"] = rule.pop("backendRefs")
    elif breakage == "unknown path type":
        rule["matches"][0]["path"]["type"] = "Prefix"
    elif breakage == "port out of range":
        rule["backendRefs"][0]["port"] = 70000
    else:
        broken["spec"]["rules"] = [rule] * 17
    assert not validator.is_valid(broken)


def test_prefix_rewrites_come_with_prefix_matches(httproute: dict[str, Any]) -> None:
    """The CEL rule of the CRD this route relies on: ReplacePrefixMatch needs exactly one
    PathPrefix match in its rule."""
    for rule in httproute["spec"]["rules"]:
        for filter_ in rule.get("filters", []):
            if filter_["urlRewrite"]["path"]["type"] == "ReplacePrefixMatch":
                (match,) = rule["matches"]
                assert match["path"]["type"] == "PathPrefix"


def test_every_api_path_is_routed_to_the_service_with_the_prefix_stripped(
    httproute: dict[str, Any],
) -> None:
    # A service whose example is deleted and whose own routers are not written yet has no API
    # path, and nothing to check here until it has.
    for path in sorted(api_paths()):
        assert route(httproute, PREFIX + path) == (SERVICE_NAME, 80, path), path


def test_management_endpoints_are_not_routed(httproute: dict[str, Any]) -> None:
    for path in MANAGEMENT:
        assert route(httproute, PREFIX + path) is None, path
        assert route(httproute, path) is None, path


def test_the_route_targets_the_service_port(httproute: dict[str, Any]) -> None:
    service = find(build(BASE), "Service", SERVICE_NAME)
    ports = {port["port"] for port in service["spec"]["ports"]}
    for rule in httproute["spec"]["rules"]:
        for backend in rule["backendRefs"]:
            assert backend["name"] == SERVICE_NAME
            assert backend["port"] in ports


def test_the_kustomization_lists_the_route() -> None:
    text = (BASE / "kustomization.yaml").read_text()
    assert "  - httproute.yaml" in text
    assert Path(BASE / "httproute.yaml").is_file()
