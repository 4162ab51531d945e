from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]


def load_hook(name: str) -> ModuleType:
    """Import a hook as the plain module it is before cookiecutter renders it."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pre_gen() -> ModuleType:
    return load_hook("pre_gen_project")


@pytest.fixture(scope="session")
def post_gen() -> ModuleType:
    return load_hook("post_gen_project")
