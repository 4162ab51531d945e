"""Validate the answers before cookiecutter writes a single file.

Cookiecutter renders this file with Jinja and runs it; the answers arrive as JSON in
``ANSWERS_JSON``. Imported without rendering (as the tests do), the functions below are plain
Python and ``ANSWERS_JSON`` is an inert string.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Mapping

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

MESSAGING = ("nats", "rabbitmq", "kafka", "none")
DISCOVERY = ("kubernetes", "consul", "none")
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")

# RFC 1123 label, lowercase: what Kubernetes, DNS and Prometheus labels all accept.
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
OWNER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
VERSION = re.compile(r"^\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)?$")

# Top-level modules the baked service imports: a package with one of these names would
# shadow it.
DEPENDENCY_MODULES = frozenset(
    {
        "aio_pika",
        "aiokafka",
        "anyio",
        "app",
        "confluent_kafka",
        "cruft",
        "fastapi",
        "faststream",
        "google",
        "httpcore",
        "httpx",
        "hypothesis",
        "mypy",
        "nats",
        "opentelemetry",
        "orjson",
        "prometheus_client",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "ruff",
        "src",
        "starlette",
        "structlog",
        "tests",
        "typing_extensions",
        "uvicorn",
    }
)

# Ports of the local stack and the brokers: a service listening on one of them collides with
# it on a developer's machine.
RESERVED_PORTS = {
    3000: "Grafana",
    4222: "NATS",
    4317: "OTLP/gRPC",
    4318: "OTLP/HTTP",
    5672: "RabbitMQ",
    8222: "NATS monitoring",
    8500: "Consul",
    9090: "Prometheus",
    9092: "Kafka",
    15672: "RabbitMQ management",
    16686: "Jaeger UI",
}

# Characters that would let an answer escape the string it is rendered into (TOML, YAML,
# Markdown, shell) or re-enter Jinja.
# The markers are built from halves so that cookiecutter's Jinja pass leaves this file alone.
TEMPLATE_MARKERS = ("{" + "{", "{" + "%", "{" + "#")
INJECTION = re.compile(
    "|".join(re.escape(marker) for marker in TEMPLATE_MARKERS)
    + r"""|["`\\;$<>|]|\.\./|[\r\n\x00]"""
)


def package_name(service_name: str) -> str:
    return service_name.replace("-", "_")


def _injection(field: str, value: str) -> str | None:
    if INJECTION.search(value):
        return (
            f"{field} {value!r} contains characters that cannot be used here "
            "(template markers, double quotes, backticks, backslashes, "
            "';', '$', '|', '<', '>', '../' or newlines): "
            "type plain text without them"
        )
    return None


def check_service_name(value: str) -> list[str]:
    if injected := _injection("service_name", value):
        return [injected]
    suggestion = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "orders"
    if not suggestion[0].isalpha():
        suggestion = f"svc-{suggestion}"
    if not DNS_LABEL.match(value):
        return [
            f"service_name {value!r} is not a DNS label: use 1-63 lowercase letters, digits "
            "and '-', starting with a letter and not ending with '-'; "
            f"for example {suggestion[:63]!r}"
        ]
    package = package_name(value)
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        return [
            f"service_name {value!r} gives the package name {package!r}, a Python keyword: "
            f"type {value + '-service'!r} instead"
        ]
    if package in sys.stdlib_module_names:
        return [
            f"service_name {value!r} gives the package name {package!r}, which shadows the "
            f"standard library module: type {value + '-service'!r} instead"
        ]
    if package in DEPENDENCY_MODULES:
        return [
            f"service_name {value!r} gives the package name {package!r}, which shadows a "
            f"dependency of the service: type {value + '-service'!r} instead"
        ]
    return []


def check_description(value: str) -> list[str]:
    if not value.strip():
        return ["description is empty: type one sentence on what the service does"]
    if len(value) > 200:
        return [
            f"description is {len(value)} characters long: keep it to one sentence (200 at most)"
        ]
    injected = _injection("description", value)
    return [injected] if injected else []


def check_owner(value: str) -> list[str]:
    if injected := _injection("owner", value):
        return [injected]
    if not OWNER.match(value):
        suggestion = re.sub(r"[^a-z0-9._-]+", "-", value.lower()).strip("-._") or "platform-team"
        return [
            f"owner {value!r} is not a slug: use lowercase letters, digits, '.', '_' and '-' "
            f"(it becomes a Kubernetes label); for example {suggestion[:63]!r}"
        ]
    return []


def check_version(value: str) -> list[str]:
    if not VERSION.match(value):
        return [f"version {value!r} is not a release number: type something like '0.1.0'"]
    return []


def check_http_port(value: object) -> list[str]:
    text = str(value).strip()
    if not text.isdigit():
        return [f"http_port {value!r} is not a number: type a port such as 8000"]
    port = int(text)
    if not 1024 <= port <= 65535:
        return [
            f"http_port {port} is out of range: the service runs as a non-root user, so type a "
            "port from 1024 to 65535, such as 8000"
        ]
    return []


def check_choice(field: str, value: object, choices: tuple[str, ...]) -> list[str]:
    if value not in choices:
        return [f"{field} {value!r} is not one of {', '.join(choices)}: type one of those"]
    return []


def check_combination(answers: Mapping[str, object]) -> list[str]:
    port_text = str(answers.get("http_port", "")).strip()
    if not port_text.isdigit():
        return []
    port = int(port_text)
    if port in RESERVED_PORTS:
        return [
            f"http_port {port} is {RESERVED_PORTS[port]}'s port in the local stack, so the "
            "service and it could not both run on one machine: type another, such as 8000"
        ]
    return []


def validate(answers: Mapping[str, object]) -> list[str]:
    """Every problem with the answers, each a sentence that says what to type instead."""
    errors: list[str] = []
    errors += check_service_name(str(answers.get("service_name", "")))
    errors += check_description(str(answers.get("description", "")))
    errors += check_owner(str(answers.get("owner", "")))
    errors += check_version(str(answers.get("version", "")))
    errors += check_http_port(answers.get("http_port", ""))
    errors += check_choice("messaging", answers.get("messaging"), MESSAGING)
    errors += check_choice("discovery", answers.get("discovery"), DISCOVERY)
    errors += check_choice("python_version", answers.get("python_version"), PYTHON_VERSIONS)
    errors += check_combination(answers)
    return errors


def main(answers_json: str) -> int:
    errors = validate(json.loads(answers_json))
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        print(
            "Nothing was generated. Run cookiecutter again with the values above.", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(ANSWERS_JSON))
