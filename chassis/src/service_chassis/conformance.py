"""Conformance: check a running service against the platform's HTTP contract, from outside.

    python conformance.py http://127.0.0.1:8000

Prints one line per rule (PASS, FAIL or SKIP, the rule, why) and exits 1 when a rule fails,
0 otherwise. It needs nothing but httpx and works on any service, baked from the template or
not. The rules (the template's design, "The contract"):

- liveness and readiness answer ``application/health+json``; readiness 200 or 503 with a
  ``checks`` object;
- the OpenAPI document is served at ``/openapi.json`` and is structurally valid;
- an unknown route (404), a wrong method (405) and an invalid body (422) each answer
  ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``, ``instance``
  and a ``trace_id``; the wrong method and the invalid body are found in the OpenAPI document;
- an incoming W3C ``traceparent`` is continued: the problem's ``trace_id`` is its trace id;
- ``/metrics`` has ``http_server_request_duration_seconds`` with the standard labels, labelled
  by route template (never the raw path), and OpenMetrics exemplars carrying ``trace_id``.

With ``--min-chassis-version X.Y.Z`` one more rule asks that ``service_build_info`` names a
``chassis_version`` at least that: how a platform team makes a fix of the chassis a standard.

The rules run in order and the metric rules last, so that the earlier requests have made the
series they look for.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

HEALTH_JSON = "application/health+json"
PROBLEM_JSON = "application/problem+json"
OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROBLEM_MEMBERS = ("type", "title", "status", "detail", "instance", "trace_id")
SERVER_METRIC = "http_server_request_duration_seconds"
SERVER_LABELS = ("http_request_method", "http_route", "http_response_status_code")
# Methods tried, in order, for the wrong-method rule.
METHODS = ("delete", "put", "patch", "post", "get")
# Probes and scrapes are often left unobserved (no span, so no trace_id): the wrong-method and
# invalid-body rules prefer the service's own paths.
INFRASTRUCTURE_PREFIXES = ("/health", "/metrics", "/openapi", "/docs", "/redoc")
# A JSON value of another type than the schema asks for.
WRONG_TYPE: dict[str, Any] = {
    "object": ["not", "an", "object"],
    "array": {"not": "an array"},
    "string": ["not a string"],
    "integer": "not a number",
    "number": "not a number",
    "boolean": ["not a boolean"],
}
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>(?:[^\"}]|\"(?:[^\"\\]|\\.)*\")*)\})?"
    r"\s+(?P<value>\S+)(?:\s+(?P<timestamp>[^#\s]\S*))?"
    r"(?:\s+#\s+\{(?P<exemplar>(?:[^\"}]|\"(?:[^\"\\]|\\.)*\")*)\}.*)?$"
)
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\]|\\.)*)\"")


class RuleFailed(Exception):
    """The service broke the rule; the message says how."""


class RuleSkipped(Exception):
    """The rule does not apply to this service (for example: no operation takes a body)."""


@dataclass(frozen=True)
class Result:
    rule: str
    status: str  # PASS, FAIL or SKIP
    why: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.rule:<14}  {self.why}"


@dataclass
class Probe:
    """The client and what earlier rules learnt (the OpenAPI document, a path never routed)."""

    client: httpx.Client
    unknown_path: str = field(default_factory=lambda: f"/conformance-{secrets.token_hex(8)}")
    _openapi: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            response = self.client.get("/openapi.json")
            if response.status_code != 200:
                raise RuleFailed(f"GET /openapi.json answered {response.status_code}, expected 200")
            document = _json(response, "GET /openapi.json")
            if not isinstance(document, dict):
                raise RuleFailed("GET /openapi.json: the document is not a JSON object")
            self._openapi = document
        return self._openapi


def new_traceparent() -> tuple[str, str]:
    """A sampled W3C traceparent and its trace id."""
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


def media_type(response: httpx.Response) -> str:
    header: str = response.headers.get("content-type", "")
    return header.split(";")[0].strip().lower()


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise RuleFailed(f"{what}: the body is not JSON: {response.text[:80]!r}") from None


def check_problem(response: httpx.Response, what: str, status: int) -> dict[str, Any]:
    """Raise unless ``response`` is an RFC 9457 problem with ``status`` and a trace id."""
    if response.status_code != status:
        raise RuleFailed(f"{what} answered {response.status_code}, expected {status}")
    if media_type(response) != PROBLEM_JSON:
        found = media_type(response) or "no content-type"
        raise RuleFailed(f"{what} answered {found}, expected {PROBLEM_JSON}")
    body = _json(response, what)
    if not isinstance(body, dict):
        raise RuleFailed(f"{what}: the problem is not a JSON object")
    missing = [member for member in PROBLEM_MEMBERS if member not in body]
    if missing:
        raise RuleFailed(f"{what}: the problem lacks {', '.join(missing)}")
    if body["status"] != status:
        raise RuleFailed(f"{what}: the problem's status is {body['status']!r}, not {status}")
    trace_id = body["trace_id"]
    if not isinstance(trace_id, str) or not TRACE_ID.match(trace_id) or set(trace_id) == {"0"}:
        raise RuleFailed(f"{what}: the problem's trace_id {trace_id!r} is not a W3C trace id")
    return body


# --- the rules ------------------------------------------------------------------------------


def liveness(probe: Probe) -> str:
    response = probe.client.get("/health/live")
    if response.status_code != 200:
        raise RuleFailed(f"GET /health/live answered {response.status_code}, expected 200")
    _health_document(response, "GET /health/live")
    return f"GET /health/live: 200 {HEALTH_JSON}"


def readiness(probe: Probe) -> str:
    response = probe.client.get("/health/ready")
    if response.status_code not in (200, 503):
        raise RuleFailed(f"GET /health/ready answered {response.status_code}, expected 200 or 503")
    document = _health_document(response, "GET /health/ready")
    checks = document.get("checks")
    if not isinstance(checks, dict):
        raise RuleFailed("GET /health/ready: no `checks` object")
    names = ", ".join(sorted(checks)) or "none"
    return f"GET /health/ready: {response.status_code} {HEALTH_JSON}, checks: {names}"


def _health_document(response: httpx.Response, what: str) -> dict[str, Any]:
    if media_type(response) != HEALTH_JSON:
        found = media_type(response) or "no content-type"
        raise RuleFailed(f"{what} answered {found}, expected {HEALTH_JSON}")
    document = _json(response, what)
    if not isinstance(document, dict) or "status" not in document:
        raise RuleFailed(f"{what}: not a health document (an object with `status`)")
    return document


def openapi(probe: Probe) -> str:
    document = probe.openapi()
    version = document.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise RuleFailed(f"/openapi.json: `openapi` is {version!r}, expected 3.x")
    info = document.get("info")
    if not isinstance(info, dict) or not all(
        isinstance(info.get(k), str) for k in ("title", "version")
    ):
        raise RuleFailed("/openapi.json: `info` needs a `title` and a `version`")
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise RuleFailed("/openapi.json: no `paths` object")
    operations = 0
    for path, item in paths.items():
        if not path.startswith("/") or not isinstance(item, dict):
            raise RuleFailed(f"/openapi.json: path {path!r} is not a path item")
        for method, operation in _operations(item):
            if not isinstance(operation.get("responses"), dict) or not operation["responses"]:
                raise RuleFailed(f"/openapi.json: {method.upper()} {path} has no `responses`")
            operations += 1
    broken = [ref for ref in _refs(document) if _resolve(document, ref) is None]
    if broken:
        raise RuleFailed(f"/openapi.json: unresolved $ref {', '.join(sorted(set(broken)))}")
    return f"/openapi.json: OpenAPI {version}, {len(paths)} paths, {operations} operations"


def unknown_route(probe: Probe) -> str:
    what = f"GET {probe.unknown_path}"
    check_problem(probe.client.get(probe.unknown_path), what, 404)
    return f"{what}: 404 {PROBLEM_JSON} with {', '.join(PROBLEM_MEMBERS)}"


def wrong_method(probe: Probe) -> str:
    found = _path_and_wrong_method(probe.openapi())
    if found is None:
        raise RuleSkipped("every path in the OpenAPI document allows every method")
    path, method, documented = found
    what = f"{method.upper()} {path}"
    response = probe.client.request(method.upper(), path)
    check_problem(response, what, 405)
    if "allow" not in response.headers:
        raise RuleFailed(f"{what}: 405 without an Allow header (RFC 9110)")
    listed = {m.strip().lower() for m in response.headers["allow"].split(",") if m.strip()}
    missing = sorted(m.upper() for m in documented - listed)
    if missing:
        raise RuleFailed(
            f"{what}: Allow: {response.headers['allow']} leaves out {', '.join(missing)}, "
            "which the OpenAPI document lists for the path (RFC 9110 wants every method)"
        )
    return f"{what}: 405 {PROBLEM_JSON}, Allow: {response.headers['allow']}"


def invalid_body(probe: Probe) -> str:
    document = probe.openapi()
    found = _operation_with_json_body(document)
    if found is None:
        raise RuleSkipped("no operation in the OpenAPI document takes a JSON body")
    path, method, body = found
    what = f"{method.upper()} {path} with body {json.dumps(body)}"
    response = probe.client.request(
        method.upper(), path, content=json.dumps(body), headers={"content-type": "application/json"}
    )
    check_problem(response, what, 422)
    return f"{what}: 422 {PROBLEM_JSON}"


def traceparent(probe: Probe) -> str:
    header, trace_id = new_traceparent()
    what = f"GET {probe.unknown_path} with traceparent {header}"
    body = check_problem(
        probe.client.get(probe.unknown_path, headers={"traceparent": header}), what, 404
    )
    if body["trace_id"] != trace_id:
        raise RuleFailed(
            f"{what}: the problem's trace_id is {body['trace_id']}, not the caller's {trace_id}"
        )
    return f"the problem's trace_id is the incoming traceparent's ({trace_id})"


def metrics(probe: Probe) -> str:
    response = probe.client.get("/metrics", headers={"accept": "text/plain"})
    if response.status_code != 200:
        raise RuleFailed(f"GET /metrics answered {response.status_code}, expected 200")
    buckets = list(_samples(response.text, f"{SERVER_METRIC}_bucket"))
    if not buckets:
        raise RuleFailed(f"GET /metrics: no {SERVER_METRIC} histogram series")
    missing = sorted(
        {label for labels, _ in buckets for label in SERVER_LABELS if label not in labels}
    )
    if missing:
        raise RuleFailed(f"GET /metrics: {SERVER_METRIC} lacks the labels {', '.join(missing)}")
    raw = [
        labels["http_route"] for labels, _ in buckets if probe.unknown_path in labels["http_route"]
    ]
    if raw:
        raise RuleFailed(f"GET /metrics: http_route {raw[0]!r} is a raw path, not a route template")
    routes = sorted({labels["http_route"] for labels, _ in buckets})
    return f"{SERVER_METRIC} labelled {', '.join(SERVER_LABELS)}; routes: {', '.join(routes)}"


def exemplars(probe: Probe) -> str:
    response = probe.client.get("/metrics", headers={"accept": OPENMETRICS_ACCEPT})
    if response.status_code != 200:
        raise RuleFailed(
            f"GET /metrics (OpenMetrics) answered {response.status_code}, expected 200"
        )
    if media_type(response) != "application/openmetrics-text":
        found = media_type(response) or "no content-type"
        raise RuleFailed(f"GET /metrics with Accept: {OPENMETRICS_ACCEPT} answered {found}")
    if not response.text.rstrip().endswith("# EOF"):
        raise RuleFailed("GET /metrics (OpenMetrics): the exposition does not end with # EOF")
    traced = [
        exemplar["trace_id"]
        for _, exemplar in _samples(response.text, f"{SERVER_METRIC}_bucket")
        if TRACE_ID.match(exemplar.get("trace_id", ""))
    ]
    if not traced:
        raise RuleFailed(f"GET /metrics (OpenMetrics): no {SERVER_METRIC} exemplar with a trace_id")
    return f"{len(traced)} {SERVER_METRIC} bucket(s) with trace_id exemplars, e.g. {traced[0]}"


RULES: tuple[tuple[str, Callable[[Probe], str]], ...] = (
    ("liveness", liveness),
    ("readiness", readiness),
    ("openapi", openapi),
    ("unknown-route", unknown_route),
    ("wrong-method", wrong_method),
    ("invalid-body", invalid_body),
    ("traceparent", traceparent),
    ("metrics", metrics),
    ("exemplars", exemplars),
)


# --- OpenAPI helpers --------------------------------------------------------------------------


def _operations(item: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for method in (*METHODS, "head", "options", "trace"):
        operation = item.get(method)
        if isinstance(operation, dict):
            yield method, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document: Mapping[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _concrete(path: str) -> str:
    # Path parameters get "1": a valid integer and a valid string alike.
    return re.sub(r"\{[^}/]+\}", "1", path)


def _candidate_paths(document: Mapping[str, Any]) -> list[str]:
    paths = [p for p, item in document.get("paths", {}).items() if isinstance(item, dict)]
    # The service's own paths first, then those without parameters.
    return sorted(paths, key=lambda p: (p.startswith(INFRASTRUCTURE_PREFIXES), "{" in p, p))


def _path_and_wrong_method(
    document: Mapping[str, Any],
) -> tuple[str, str, set[str]] | None:
    """A path, a method it does not allow, and the methods it documents: the path with the
    most methods first, so that the Allow header has the most to list."""
    candidates = []
    for path in _candidate_paths(document):
        allowed = {method for method, _ in _operations(document["paths"][path])}
        for method in METHODS:
            if method not in allowed:
                candidates.append((-len(allowed), path, method, allowed))
                break
    if not candidates:
        return None
    _, path, method, allowed = min(candidates, key=lambda entry: entry[0])
    return _concrete(path), method, allowed


def _operation_with_json_body(document: Mapping[str, Any]) -> tuple[str, str, Any] | None:
    found: list[tuple[bool, str, str, Any]] = []
    for path in _candidate_paths(document):
        for method, operation in _operations(document["paths"][path]):
            body = operation.get("requestBody")
            if isinstance(body, dict) and "$ref" in body:
                body = _resolve(document, body["$ref"])
            content = body.get("content", {}) if isinstance(body, dict) else {}
            media = content.get("application/json") if isinstance(content, dict) else None
            if not isinstance(media, dict):
                continue
            schema = media.get("schema", {})
            if isinstance(schema, dict) and "$ref" in schema:
                schema = _resolve(document, schema["$ref"]) or {}
            kind = schema.get("type") if isinstance(schema, dict) else None
            # A schema with a plain type is sure to reject a value of another type.
            typed = isinstance(kind, str) and kind in WRONG_TYPE
            wrong = WRONG_TYPE[str(kind)] if typed else WRONG_TYPE["object"]
            found.append((not typed, _concrete(path), method, wrong))
    if not found:
        return None
    _, path, method, wrong = min(found, key=lambda entry: entry[0])
    return path, method, wrong


def _samples(text: str, name: str) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The labels and exemplar labels of every sample called ``name``."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        labels = dict(LABEL.findall(match["labels"] or ""))
        exemplar = dict(LABEL.findall(match["exemplar"] or ""))
        yield labels, exemplar


BUILD_INFO = re.compile(r'^service_build_info\{[^}]*chassis_version="([^"]+)"', re.MULTILINE)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def chassis_version_at_least(minimum: str) -> Callable[[Probe], str]:
    def rule(probe: Probe) -> str:
        response = probe.client.get("/metrics")
        found = BUILD_INFO.search(response.text) if response.status_code == 200 else None
        if found is None:
            raise RuleFailed("GET /metrics has no service_build_info with a chassis_version")
        running = found.group(1)
        if version_tuple(running) < version_tuple(minimum):
            raise RuleFailed(f"chassis {running} is older than the required {minimum}")
        return f"chassis {running}, at least {minimum}"

    return rule


# --- running --------------------------------------------------------------------------------


def run_checks(
    base_url: str, *, timeout: float = 5.0, min_chassis_version: str | None = None
) -> list[Result]:
    """Run every rule against the service at ``base_url``, in order."""
    rules = list(RULES)
    if min_chassis_version:
        rules.append(("chassis-version", chassis_version_at_least(min_chassis_version)))
    results = []
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout) as client:
        probe = Probe(client)
        for name, rule in rules:
            try:
                results.append(Result(name, "PASS", rule(probe)))
            except RuleSkipped as skipped:
                results.append(Result(name, "SKIP", str(skipped)))
            except RuleFailed as failed:
                results.append(Result(name, "FAIL", str(failed)))
            except httpx.HTTPError as error:
                results.append(Result(name, "FAIL", _unanswered(error)))
    return results


def _unanswered(error: httpx.HTTPError) -> str:
    try:
        request = error.request
    except RuntimeError:  # raised before a request was made
        return f"{type(error).__name__}: {error}"
    return f"{request.method} {request.url.path}: {type(error).__name__}: {error}"


def report(results: Sequence[Result]) -> str:
    counts = {status: sum(r.status == status for r in results) for status in ("PASS", "FAIL")}
    skipped = sum(r.status == "SKIP" for r in results)
    summary = f"{counts['PASS']} passed, {counts['FAIL']} failed" + (
        f", {skipped} skipped" if skipped else ""
    )
    return "\n".join([*(r.line() for r in results), f"conformance: {summary}"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check a running service against the platform's HTTP contract."
    )
    parser.add_argument("base_url", help="the service's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument(
        "--min-chassis-version", help="fail unless the service runs this chassis or newer"
    )
    args = parser.parse_args(argv)
    results = run_checks(
        args.base_url, timeout=args.timeout, min_chassis_version=args.min_chassis_version
    )
    print(report(results))
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
