"""The Kubernetes manifests, checked offline: no cluster and no kustomize run here.

Every object of the base and of each overlay (built by ``kustomize.py``, a small model of
kustomize) is validated against the Kubernetes OpenAPI schemas that ``kubernetes-validate``
ships, in strict mode (unknown fields fail). The rest checks that the manifests agree with
the service: probes on its real routes, ports, shutdown timing, security, labels, settings.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from {{ cookiecutter.__package_name }} import DEFAULT_HTTP_PORT, OWNER, SERVICE_NAME, __version__

from .gateway_route import GATEWAY_API
from .kustomize import build, find
from .manifests import BASE, DOCKERFILE, OVERLAYS, app, has_extension, route_paths, setting_names

# The oldest Kubernetes minor still widely run, and the newest the package has schemas for.
VERSIONS = ("1.30", kubernetes_validate.latest_version())
LABELS = {
    "app.kubernetes.io/name": SERVICE_NAME,
    "app.kubernetes.io/version": __version__,
    "owner": OWNER,
}


def _builds() -> list[tuple[str, Path]]:
    return [("base", BASE)] + [(f"overlay {path.name}", path) for path in OVERLAYS]


@pytest.fixture(scope="module", params=_builds(), ids=lambda b: b[0])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return build(request.param[1])


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", SERVICE_NAME)["spec"]["template"]["spec"]
    return spec


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(objects)["containers"]
    return dict(container)


def test_there_is_an_example_overlay() -> None:
    assert [path.name for path in OVERLAYS] == ["example"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]], version: str
) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } <= kinds
    for obj in objects:
        if obj["apiVersion"].startswith(f"{GATEWAY_API}/"):
            continue  # not a built-in kind: test_gateway_route.py validates it against its CRD
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_wrong_manifest() -> None:
    """The schemas are really applied: a misspelt field fails."""
    broken = yaml.safe_load((BASE / "deployment.yaml").read_text())
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_references_between_objects_resolve(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment", SERVICE_NAME)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = find(objects, "Service", SERVICE_NAME)
    assert service["spec"]["selector"] == selector
    port_names = {port["name"] for port in _container(objects)["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    pdb = find(objects, "PodDisruptionBudget", SERVICE_NAME)
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    hpa = find(objects, "HorizontalPodAutoscaler", SERVICE_NAME)
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        SERVICE_NAME,
    )
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2
    find(objects, "ServiceAccount", _pod(objects)["serviceAccountName"])
    for source in _container(objects)["envFrom"]:
        ref = source.get("configMapRef") or source["secretRef"]
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        if not ref.get("optional"):
            find(objects, kind, ref["name"])


def test_probes_point_at_real_routes_on_the_served_port(objects: list[dict[str, Any]]) -> None:
    container = _container(objects)
    (port,) = container["ports"]
    config = find(objects, "ConfigMap", f"{SERVICE_NAME}-config")["data"]
    assert port["containerPort"] == int(config["HTTP_PORT"]) == DEFAULT_HTTP_PORT
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert {probe["port"] for probe in probes.values()} == {port["name"]}
    annotations = find(objects, "Deployment", SERVICE_NAME)["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    paths = {probe["path"] for probe in probes.values()} | {annotations["prometheus.io/path"]}
    assert paths <= route_paths(app())


async def test_probe_paths_answer_in_the_app() -> None:
    """Not a 404 or 405: the routes exist with GET (their status depends on dependencies)."""
    container = _container(build(BASE))
    paths = {container[kind]["httpGet"]["path"] for kind in ("livenessProbe", "readinessProbe")}
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
        for path in paths:
            assert (await client.get(path)).status_code in {200, 503}
        assert (await client.get("/health/live")).status_code == 200


def test_shutdown_fits_in_the_termination_grace_period(objects: list[dict[str, Any]]) -> None:
    pod = _pod(objects)
    container = _container(objects)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    config = find(objects, "ConfigMap", f"{SERVICE_NAME}-config")["data"]
    delay = float(config["SHUTDOWN_DELAY_SECONDS"])
    grace = float(config["SHUTDOWN_GRACE_SECONDS"])
    # Room after the drain for consumers to stop and spans to flush before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + delay + grace + 5
    assert pre_stop >= container["readinessProbe"]["periodSeconds"]


def test_runs_as_the_images_non_root_user_with_a_read_only_root(
    objects: list[dict[str, Any]],
) -> None:
    pod = _pod(objects)
    container = _container(objects)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    ids = pod["securityContext"]
    lines = DOCKERFILE.read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users[-1] == f"{ids['runAsUser']}:{ids['runAsGroup']}"
    assert pod["automountServiceAccountToken"] is False
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_labels_carry_the_service_version_and_owner(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] in {"Namespace", "Secret"} or obj["metadata"]["name"] != SERVICE_NAME:
            continue
        assert LABELS.items() <= obj["metadata"]["labels"].items(), obj["kind"]
    template = find(objects, "Deployment", SERVICE_NAME)["spec"]["template"]
    assert LABELS.items() <= template["metadata"]["labels"].items()
    image = _container(objects)["image"]
    assert image.rsplit(":", 1)[1] == __version__
    assert not image.endswith(":latest")


def test_settings_come_from_the_config_map_and_the_secret(objects: list[dict[str, Any]]) -> None:
    container = _container(objects)
    assert [next(iter(source)) for source in container["envFrom"]] == [
        "configMapRef",
        "secretRef",
    ]
    config = find(objects, "ConfigMap", f"{SERVICE_NAME}-config")["data"]
    assert {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"} <= (
        config.keys()
    )
    assert config["OTEL_SERVICE_NAME"] == SERVICE_NAME
    known = setting_names()
    env = {item["name"] for item in container["env"]}
    for name in set(config) | env:
        assert name.startswith(("OTEL_", "K8S_", "HOST_")) or name in known, name
    if has_extension("discovery"):
        assert {"CONSUL_HTTP_ADDR", "SERVICE_ADDRESS"} <= env


def test_the_overlay_provides_the_secrets_this_bake_needs() -> None:
    (overlay,) = OVERLAYS
    objects = build(overlay)
    wanted = set()
    if has_extension("messaging"):
        wanted.add("BROKER_URL")
    if has_extension("discovery"):
        wanted.add("CONSUL_HTTP_TOKEN")
    if has_extension("database"):
        wanted.add("DATABASE_URL")
    secrets = [o for o in objects if o["kind"] == "Secret"]
    found = {key for secret in secrets for key in secret["data"]}
    assert found == wanted
    for secret in secrets:
        for value in secret["data"].values():
            assert base64.b64decode(value)
