"""Where the deployment files are, and small readers the deployment tests share."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from fastapi import FastAPI
from pydantic_settings import BaseSettings

from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.settings import Settings

from ..conftest import PACKAGE

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(path for path in (K8S / "overlays").iterdir() if path.is_dir())
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def has_extension(name: str) -> bool:
    """Whether this bake kept an optional sub-package (messaging, discovery)."""
    return importlib.util.find_spec(f"{PACKAGE}.{name}") is not None


def app() -> FastAPI:
    return create_app(Settings(otel_traces_exporter="none"))


def route_paths(application: FastAPI) -> set[str]:
    """Every path the app serves: its own routes and those of the routers it includes."""
    paths = {str(route.path) for route in application.routes if hasattr(route, "path")}
    return paths | set(application.openapi()["paths"])


def setting_names() -> set[str]:
    """The environment variables the service reads (besides the SDK's own ``OTEL_*``)."""
    names = {"BROKER_URL"} if has_extension("messaging") else set()
    for settings in _settings_classes():
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            names.add(alias.upper() if isinstance(alias, str) else name.upper())
    return names


def _settings_classes() -> list[type[BaseSettings]]:
    classes: list[type[BaseSettings]] = [Settings]
    if has_extension("discovery"):
        classes.append(importlib.import_module(f"{PACKAGE}.discovery.settings").DiscoverySettings)
    return classes


def seconds(text: str) -> float:
    """A compose duration such as ``40s`` or ``1m30s``."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts, f"not a duration: {text}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(float(number) * units[unit] for number, unit in parts)
