"""Where the deployment files are, and small readers the deployment tests share."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from fastapi import FastAPI
from pydantic_settings import BaseSettings
from service_chassis.resilience.settings import DownstreamSettings, env_prefix

from {{ cookiecutter.__package_name }} import BROKER, DATABASE, DISCOVERY
from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.settings import Settings

# Imported by name: a bake without a broker does not have the broker's packages.
MESSAGING = "service_chassis.messaging.settings"
DISCOVERY_SETTINGS = "service_chassis.discovery.settings"
DATABASE_SETTINGS = "service_chassis.database.settings"

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(path for path in (K8S / "overlays").iterdir() if path.is_dir())
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def has_extension(name: str) -> bool:
    """Whether this bake has messaging (a broker), discovery (Consul) or a database."""
    return {
        "messaging": BROKER != "none",
        "discovery": DISCOVERY == "consul",
        "database": DATABASE != "none",
    }[name]


def app() -> FastAPI:
    return create_app(Settings(otel_traces_exporter="none"))


def route_paths(application: FastAPI) -> set[str]:
    """Every path the app serves: its own routes and those of the routers it includes."""
    paths = {str(route.path) for route in application.routes if hasattr(route, "path")}
    return paths | set(application.openapi()["paths"])


def setting_names() -> set[str]:
    """The environment variables the service reads (besides the SDK's own ``OTEL_*``)."""
    names: set[str] = set()
    for settings, prefix in _settings_classes():
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            names.add(alias.upper() if isinstance(alias, str) else prefix + name.upper())
    return names


def _settings_classes() -> list[tuple[type[BaseSettings], str]]:
    classes: list[tuple[type[BaseSettings], str]] = [(Settings, "")]
    for declared in app().state.downstreams.declarations:
        classes.append((DownstreamSettings, env_prefix(declared.name)))
    if has_extension("messaging"):
        classes.append((importlib.import_module(MESSAGING).MessagingSettings, ""))
    if has_extension("discovery"):
        classes.append((importlib.import_module(DISCOVERY_SETTINGS).DiscoverySettings, ""))
    if has_extension("database"):
        classes.append((importlib.import_module(DATABASE_SETTINGS).DatabaseSettings, ""))
    return classes


def seconds(text: str) -> float:
    """A compose duration such as ``40s`` or ``1m30s``."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts, f"not a duration: {text}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(float(number) * units[unit] for number, unit in parts)
