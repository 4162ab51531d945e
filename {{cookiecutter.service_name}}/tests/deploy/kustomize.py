"""Just enough of kustomize to check a base and its overlays offline.

kustomize is not installed here, so this builds what ``kubectl apply -k`` would from the parts
these manifests use: ``resources`` (files and directories), strategic-merge ``patches`` (lists
of named items merged by ``name``), ``namespace``, ``images``, and ``configMapGenerator`` /
``secretGenerator`` literals. Generated names keep no hash suffix, which kustomize would add
and write into every reference alike. Anything else in a kustomization is an error here, so a
manifest cannot quietly rely on a feature these checks do not model.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "namespace",
    "images",
    "configMapGenerator",
    "secretGenerator",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


class KustomizeError(AssertionError):
    pass


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def build(directory: Path) -> list[dict[str, Any]]:
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    (kustomization,) = load_all(kustomization_file)
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kustomization_file} uses {sorted(unknown)}, not modelled here")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += build(path)
        elif path.is_file():
            objects += load_all(path)
        else:
            raise KustomizeError(f"{kustomization_file} lists {entry}, which does not exist")
    objects += _generated(kustomization)
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(image, objects)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise KustomizeError(f"expected one {kind}/{name}, found {len(found)}")
    return found[0]


def strategic_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise KustomizeError(f"patch directive {key} is not modelled here")
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and _named(value + current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    strategic_merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _apply_patch(directory: Path, patch: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    if "path" not in patch:
        raise KustomizeError(f"only file patches are modelled here, not {patch}")
    path = directory / patch["path"]
    if not path.is_file():
        raise KustomizeError(f"patch {path} does not exist")
    (body,) = load_all(path)
    target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
    matches = [
        o
        for o in objects
        if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
    ]
    if not matches:
        raise KustomizeError(
            f"patch {path.name} targets {target['kind']}/{target['name']}, "
            "which no resource defines"
        )
    for obj in matches:
        if body.get("apiVersion", obj["apiVersion"]) != obj["apiVersion"]:
            raise KustomizeError(f"patch {path.name} has another apiVersion than its target")
        strategic_merge(obj, body)


def _generated(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    objects = []
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(key, []):
            if set(generator) - {"name", "literals"}:
                raise KustomizeError(f"{key} options {sorted(generator)} are not modelled here")
            data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
            obj: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": generator["name"]},
            }
            if kind == "Secret":
                obj["type"] = "Opaque"
                obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            else:
                obj["data"] = data
            objects.append(obj)
    return objects


def _set_image(image: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    used = False
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name = container["image"].split("@")[0].rsplit(":", 1)[0]
            if name == image["name"]:
                used = True
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    if not used:
        raise KustomizeError(f"images entry {image['name']} matches no container image")
