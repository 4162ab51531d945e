"""Validate the answers before cookiecutter writes a single file.

Cookiecutter renders this file with Jinja and runs it; the answers arrive as JSON in
``ANSWERS_JSON``. Imported without rendering (as the tests do), the functions below are plain
Python and ``ANSWERS_JSON`` is an inert string. Standard library only: it runs on whatever
Python runs cookiecutter.

A service name must not be the name of a package the service depends on (uv refuses a project
that depends on a package of its own name) nor give a package name that shadows one of their
modules (``python -m <package>`` would run the library). Both lists come from the template:
the distributions from the seed locks (``<service folder>/uv-*.lock``), the modules each
installs from ``hooks/locked_modules.txt``, which ``scripts/lock.py`` writes next to this hook.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

MESSAGING = ("nats", "rabbitmq", "kafka", "none")
DISCOVERY = ("kubernetes", "consul", "none")
DATABASES = ("none", "postgres")
SAGAS = ("none", "place-order")
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")

# RFC 1123 label, lowercase: what Kubernetes, DNS and Prometheus labels all accept.
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
OWNER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
VERSION = re.compile(r"^\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)?$")

# The service's own layout: a package with one of these names would be shadowed by, or shadow,
# a folder or module of the bake itself.
LAYOUT_NAMES = frozenset({"app", "src", "tests"})

# Ports of the local stack and the brokers: a service listening on one of them collides with
# it on a developer's machine.
RESERVED_PORTS = {
    3000: "Grafana",
    4222: "NATS",
    4317: "OTLP/gRPC",
    4318: "OTLP/HTTP",
    5432: "PostgreSQL",
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


# The service folder of the template, spelt in halves like the markers above.
SERVICE_FOLDER = "{" + "{cookiecutter.service_name}" + "}"
LOCKED_MODULES = Path("hooks") / "locked_modules.txt"
# Every [[package]] entry of a uv.lock starts with its name (tomllib is Python 3.11+ only).
LOCK_PACKAGE = re.compile(r'^\[\[package\]\]\r?\nname = "([^"]+)"', re.MULTILINE)


def package_name(service_name: str) -> str:
    return service_name.replace("-", "_")


def normalize(name: str) -> str:
    """A distribution name as package indexes and uv compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_distribution_names(lock_text: str) -> set[str]:
    """The packages of a seed lock, without the project's own entry (a template variable)."""
    return {name for name in LOCK_PACKAGE.findall(lock_text) if "{" not in name}


class LockedDependencies:
    """The service's locked dependency closure: distribution names (normalized) and the
    top-level modules they install, each with the distributions it comes from."""

    # A plain class: a dataclass needs its module in sys.modules, which a hook run as a
    # script or loaded from its file by the tests does not promise.
    def __init__(
        self,
        distributions: frozenset[str] = frozenset(),
        modules: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.distributions = distributions
        # Module -> the distributions that install it (several share a namespace package).
        self.modules: Mapping[str, tuple[str, ...]] = dict(modules or {})

    @classmethod
    def read(cls, template: Path | None) -> LockedDependencies | None:
        """From the template's seed locks and hooks/locked_modules.txt; None when missing."""
        if template is None:
            return None
        locks = sorted((template / SERVICE_FOLDER).glob("uv-*.lock"))
        data = template / LOCKED_MODULES
        if not locks or not data.is_file():
            return None
        distributions: set[str] = set()
        for lock in locks:
            names = lock_distribution_names(lock.read_text("utf-8"))
            distributions |= {normalize(name) for name in names}
        installs: dict[str, list[str]] = {}
        for line in data.read_text("utf-8").splitlines():
            name, colon, names = line.partition(":")
            if line.startswith("#") or not colon:
                continue
            installs[normalize(name.strip())] = [m for m in names.split() if m.isidentifier()]
        modules: dict[str, tuple[str, ...]] = {}
        for distribution in sorted(distributions):
            # One the data file does not list yet: its own name is the best guess.
            for module in installs.get(distribution, [distribution.replace("-", "_")]):
                modules[module] = (*modules.get(module, ()), distribution)
        return cls(frozenset(distributions), modules)


@lru_cache(maxsize=8)
def _read_cached(template: Path | None) -> LockedDependencies | None:
    return LockedDependencies.read(template)


def from_invocation(path: object) -> Path:
    """A path cookiecutter was given, made absolute. A relative one is relative to where
    cookiecutter ran, which the shell's PWD still names: hooks run inside the new project."""
    given = Path(str(path or ".")).expanduser()
    if given.is_absolute():
        return given
    return Path(os.environ.get("PWD") or Path.cwd()) / given


def _cookiecutters_directory() -> Path | None:
    # Cookiecutter runs hooks from inside the template (cruft's renders give no _repo_dir).
    try:
        return Path(os.readlink(f"/proc/{os.getppid()}/cwd"))
    except (OSError, AttributeError):
        return None


def template_dir(answers: Mapping[str, object]) -> Path | None:
    """The template this bake renders: where its seed locks and hooks/ are."""
    candidates = []
    if answers.get("_repo_dir"):
        candidates.append(from_invocation(answers["_repo_dir"]))
    candidates.append(_cookiecutters_directory())
    # This file, when it runs unrendered from the template (as the tests import it).
    candidates.append(Path(__file__).resolve().parent.parent)
    for candidate in candidates:
        if candidate is not None and (candidate / LOCKED_MODULES).is_file():
            return candidate
    return None


def locked_dependencies(template: Path | None) -> LockedDependencies | None:
    return _read_cached(template)


def _injection(field: str, value: str) -> str | None:
    if INJECTION.search(value):
        return (
            f"{field} {value!r} contains characters that cannot be used here "
            "(template markers, double quotes, backticks, backslashes, "
            "';', '$', '|', '<', '>', '../' or newlines): "
            "type plain text without them"
        )
    return None


def check_service_name(value: str, dependencies: LockedDependencies | None = None) -> list[str]:
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
    if package in LAYOUT_NAMES:
        return [
            f"service_name {value!r} gives the package name {package!r}, which the service's "
            f"own layout uses (src/, tests/, app.py): type {value + '-service'!r} instead"
        ]
    locked = dependencies or LockedDependencies()
    if normalize(value) in locked.distributions:
        return [
            f"service_name {value!r} is the name of {normalize(value)!r}, a locked dependency "
            "of the service, and a project cannot depend on a package of its own name: "
            f"type {value + '-service'!r} instead"
        ]
    if package in locked.modules:
        first, *others = locked.modules[package]
        of = f"{first!r}, a locked dependency of the service"
        if others:
            more = "dependency" if len(others) == 1 else "dependencies"
            of = f"{first!r} and {len(others)} other locked {more} of the service"
        return [
            f"service_name {value!r} gives the package name {package!r}, which shadows the "
            f"module of {of}: type {value + '-service'!r} instead"
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
    saga = answers.get("saga", "none")
    if saga in SAGAS[1:] and answers.get("database") != "postgres":
        return [
            f"saga {saga!r} keeps each saga's state in the service's own database: type "
            "postgres for database, or none for saga"
        ]
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


def validate(
    answers: Mapping[str, object], dependencies: LockedDependencies | None = None
) -> list[str]:
    """Every problem with the answers, each a sentence that says what to type instead.
    ``dependencies``: the template's locked dependencies, found from the answers if not given."""
    if dependencies is None:
        dependencies = locked_dependencies(template_dir(answers))
    errors: list[str] = []
    errors += check_service_name(str(answers.get("service_name", "")), dependencies)
    errors += check_description(str(answers.get("description", "")))
    errors += check_owner(str(answers.get("owner", "")))
    errors += check_version(str(answers.get("version", "")))
    errors += check_http_port(answers.get("http_port", ""))
    errors += check_choice("messaging", answers.get("messaging"), MESSAGING)
    errors += check_choice("discovery", answers.get("discovery"), DISCOVERY)
    errors += check_choice("database", answers.get("database"), DATABASES)
    errors += check_choice("saga", answers.get("saga", "none"), SAGAS)
    errors += check_choice("python_version", answers.get("python_version"), PYTHON_VERSIONS)
    errors += check_combination(answers)
    return errors


def main(answers_json: str) -> int:
    answers = json.loads(answers_json)
    dependencies = locked_dependencies(template_dir(answers))
    if dependencies is None:
        print(
            f"WARNING: the template's {LOCKED_MODULES.as_posix()} or seed locks were not found, "
            "so service_name was not checked against the service's dependencies",
            file=sys.stderr,
        )
    errors = validate(answers, dependencies or LockedDependencies())
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
