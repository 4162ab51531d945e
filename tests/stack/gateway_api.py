"""The Gateway API's HTTPRoute schema, as the baked services' tests check their HTTPRoute with.

The schema comes from the Gateway API's own CRD (config/crd/standard/ in the Go module
sigs.k8s.io/gateway-api, standard channel): the `openAPIV3Schema` of its v1 version, with the
prose descriptions left out. A baked service keeps a copy (its tests run without Go or the
network); tests/stack/test_stack_gateway_api.py checks that copy against the module. After
changing GATEWAY_API_VERSION, write the new copy with

    .venv/bin/python -m tests.stack.gateway_api
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.stack.programs import REPO

MODULE = "sigs.k8s.io/gateway-api"
# The newest release the module proxy serves that builds with Go 1.26 (v1.7.0 needs Go 1.27;
# only its CRD files are read here, but `go mod download` checks the go directive).
GATEWAY_API_VERSION = "v1.6.0"
CRD = "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
BAKED_SCHEMAS = REPO / "{{cookiecutter.service_name}}" / "tests" / "deploy" / "schemas"
BAKED_COPY = BAKED_SCHEMAS / f"httproute-v1-gateway-api-{GATEWAY_API_VERSION}.json"


def module_dir(version: str = GATEWAY_API_VERSION) -> Path:
    """The module's source, through `go mod download` (the module proxy, then Go's cache)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{version}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        why = info.get("Error", result.stderr)
        raise RuntimeError(f"go mod download {MODULE}@{version}: {why}")
    return Path(info["Dir"])


def crd() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((module_dir() / CRD).read_text())
    return document


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: without_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [without_descriptions(value) for value in node]
    return node


def httproute_v1_schema() -> dict[str, Any]:
    (v1,) = [version for version in crd()["spec"]["versions"] if version["name"] == "v1"]
    schema: dict[str, Any] = without_descriptions(v1["schema"]["openAPIV3Schema"])
    return schema


def serialised(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    for old in BAKED_SCHEMAS.glob("httproute-*.json"):
        old.unlink()
    BAKED_SCHEMAS.mkdir(parents=True, exist_ok=True)
    BAKED_COPY.write_text(serialised(httproute_v1_schema()))
    print(f"wrote {BAKED_COPY.relative_to(REPO)}")
