"""Optional parts of the service (messaging, discovery), found by the files the bake kept.

Each optional sub-package exposes ``install(app, context)``; the bake removes the ones its
options do not need, so the service wires exactly what exists, with no template logic in code.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Protocol, cast

from fastapi import FastAPI

from .context import ServiceContext

OPTIONAL_PACKAGES = ("messaging", "discovery")


class Installer(Protocol):
    def __call__(self, app: FastAPI, context: ServiceContext) -> None: ...


def installed_extensions() -> list[Installer]:
    installers = []
    for name in OPTIONAL_PACKAGES:
        qualified = f"{__package__}.{name}"
        if importlib.util.find_spec(qualified) is not None:
            module = importlib.import_module(qualified)
            installers.append(cast(Installer, module.install))
    return installers
