"""The HTTPRoute's schema and matching, for test_gateway_route.py.

The schema is the Gateway API's own (the `openAPIV3Schema` of the v1 HTTPRoute in the CRD that
the Go module sigs.k8s.io/gateway-api ships, standard channel, descriptions left out), kept in
schemas/ so the tests run offline; the file name says the release. The template's own tests
check the copy against the module.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

GATEWAY_API = "gateway.networking.k8s.io"
(SCHEMA_FILE,) = sorted((Path(__file__).parent / "schemas").glob("httproute-v1-*.json"))


def strict(node: Any) -> Any:
    """The schema with unknown fields refused, as `kubectl apply --validate=strict` does (the
    API server would drop them silently): every object that lists its properties and does not
    preserve unknown fields gets additionalProperties false."""
    node = copy.deepcopy(node)

    def close(schema: Any) -> None:
        if isinstance(schema, dict):
            if (
                "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")
            ):
                schema["additionalProperties"] = False
            for value in schema.values():
                close(value)
        elif isinstance(schema, list):
            for value in schema:
                close(value)

    close(node)
    # metadata is typed by Kubernetes itself, not by the CRD: left open.
    node["properties"]["metadata"].pop("additionalProperties", None)
    return node


def httproute_schema() -> dict[str, Any]:
    schema: dict[str, Any] = strict(json.loads(SCHEMA_FILE.read_text()))
    return schema


def _prefix_matches(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: a match by whole path elements (/items matches /items and
    /items/1, never /itemsx), a trailing slash ignored."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


def route(httproute: dict[str, Any], path: str) -> tuple[str, int, str] | None:
    """Where the route sends `path`: (Service, port, path it receives), or None when no rule
    matches (the Gateway's 404). The longest matching prefix wins, as the API requires."""
    best: tuple[int, dict[str, Any], str] | None = None
    for rule in httproute["spec"]["rules"]:
        for match in rule.get("matches", []):
            spec = match["path"]
            if spec["type"] == "PathPrefix" and _prefix_matches(spec["value"], path):
                if best is None or len(spec["value"]) > best[0]:
                    best = (len(spec["value"]), rule, spec["value"])
            elif spec["type"] == "Exact" and spec["value"] == path:
                best = (10**6, rule, spec["value"])
    if best is None:
        return None
    _, rule, matched = best
    forwarded = path
    for filter_ in rule.get("filters", []):
        if filter_["type"] == "URLRewrite":
            rewrite = filter_["urlRewrite"]["path"]
            if rewrite["type"] == "ReplacePrefixMatch":
                rest = path[len(matched.rstrip("/")) :]
                forwarded = rewrite["replacePrefixMatch"].rstrip("/") + rest or "/"
            else:
                forwarded = rewrite["replaceFullPath"]
    (backend,) = rule["backendRefs"]
    return backend["name"], backend["port"], forwarded
