"""scripts/install-stack.sh: what it builds, from which module versions, and its cache.

Most tests run the script against a stand-in `go` that serves fake module sources and "builds"
small scripts, so they take milliseconds; the last ones check the real, cached programs against
the compose file's pins.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.programs import INSTALL_SCRIPT

REPO = Path(__file__).resolve().parents[2]

# `go mod download -json M@V` answers with the module's source directory under $FAKE_MODULES;
# `go build ... -o OUT ./PKG` writes a script that prints what it was built from.
FAKE_GO = r"""#!/bin/sh
echo "go $*" >> "$CALLS"
case "$1" in
  mod)
    dir="$FAKE_MODULES/$4"
    [ -d "$dir" ] || { echo "go: $4: not found" >&2; exit 1; }
    printf '{\n\t"Path": "%s",\n\t"Dir": "%s",\n\t"Sum": "h1:x"\n}\n' "${4%@*}" "$dir"
    ;;
  build)
    shift
    while [ "$#" -gt 0 ]; do
      case "$1" in
        -o) out="$2"; shift ;;
        -ldflags) flags="$2"; shift ;;
        ./*) package="$1" ;;
      esac
      shift
    done
    printf '#!/bin/sh\necho "built %s from %s with %s"\n' "${out##*/}" "$package" "$flags" > "$out"
    chmod +x "$out"
    ;;
esac
"""


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def compose_with(jaeger: str, prometheus: str) -> str:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    compose["services"]["jaeger"]["image"] = f"jaegertracing/jaeger:{jaeger}"
    compose["services"]["prometheus"]["image"] = f"prom/prometheus:v{prometheus}"
    return yaml.safe_dump(compose)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_executable(bin_dir / "go", FAKE_GO)
    modules = tmp_path / "modules"
    prometheus = modules / "github.com/prometheus/prometheus@v0.314.0"
    for command in ("prometheus", "promtool"):
        (prometheus / "cmd" / command).mkdir(parents=True)
    (prometheus / "VERSION").write_text("3.14.0\n")
    jaeger = modules / "github.com/jaegertracing/jaeger@v1.76.0"
    (jaeger / "cmd" / "jaeger").mkdir(parents=True)
    (jaeger / "CHANGELOG.md").write_text(
        "Changes by Version\n\nv1.76.0 / v2.13.0 (2025-12-03)\n---\n"
        "\nv1.75.0 / v2.12.0 (2025-11-13)\n---\n"
    )
    (tmp_path / "compose.yml").write_text(compose_with("2.13.0", "3.14.0"))
    # The gateway builds from a folder of the repository: a copy, so a test may edit it.
    shutil.copytree(REPO / "gateway", tmp_path / "gateway")
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CALLS": str(tmp_path / "calls.log"),
        "FAKE_MODULES": str(modules),
        "STACK_CACHE_DIR": str(tmp_path / "cache"),
        "STACK_COMPOSE_FILE": str(tmp_path / "compose.yml"),
        "STACK_GATEWAY_DIR": str(tmp_path / "gateway"),
    }


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def printed_paths(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(INSTALL_SCRIPT)], check=True)


def test_builds_the_compose_files_versions_from_their_modules(sandbox: dict[str, str]) -> None:
    result = run_script(sandbox)
    assert result.returncode == 0, result.stderr
    cache = Path(sandbox["STACK_CACHE_DIR"])
    printed = printed_paths(result)
    gateway = Path(printed.pop("caddy"))
    assert printed == {
        "jaeger": str(cache / "jaeger-2.13.0" / "jaeger"),
        "prometheus": str(cache / "prometheus-3.14.0" / "prometheus"),
        "promtool": str(cache / "prometheus-3.14.0" / "promtool"),
    }
    # The gateway: Caddy at the compose file's tag, its directory named by a digest too.
    assert gateway.name == "caddy"
    assert re.fullmatch(r"gateway-2\.11\.9-[0-9a-f]{12}", gateway.parent.name), gateway
    assert gateway.parent.parent == cache
    go = calls(sandbox)
    assert "go mod download -json github.com/jaegertracing/jaeger@v1.76.0" in go
    assert "go mod download -json github.com/prometheus/prometheus@v0.314.0" in go
    assert any(call.startswith("go build -trimpath -o ") for call in go)
    built = {
        name: subprocess.run([path], capture_output=True, text=True, check=True).stdout
        for name, path in printed_paths(result).items()
    }
    assert built["caddy"].startswith("built caddy from  ")  # the module's root package, "."
    assert built["jaeger"].startswith("built jaeger from ./cmd/jaeger ")
    assert "internal/version.latestVersion=v2.13.0" in built["jaeger"]
    assert built["prometheus"].startswith("built prometheus from ./cmd/prometheus ")
    assert "common/version.Version=3.14.0" in built["prometheus"]
    assert built["promtool"].startswith("built promtool from ./cmd/promtool ")
    # Nothing is left half-built in the cache.
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".lock")) == [
        gateway.parent.name,
        "jaeger-2.13.0",
        "prometheus-3.14.0",
    ]


def test_a_second_run_uses_the_cache(sandbox: dict[str, str]) -> None:
    first = run_script(sandbox)
    assert first.returncode == 0, first.stderr
    before = calls(sandbox)
    second = run_script(sandbox)
    assert second.returncode == 0, second.stderr
    assert calls(sandbox) == before, "a cached program was built again"
    assert second.stdout == first.stdout


def test_builds_only_what_is_named(sandbox: dict[str, str]) -> None:
    result = run_script(sandbox, "jaeger")
    assert result.returncode == 0, result.stderr
    assert set(printed_paths(result)) == {"jaeger"}
    assert not [call for call in calls(sandbox) if "prometheus" in call]


def test_check_builds_nothing_and_fails_on_a_missing_program(sandbox: dict[str, str]) -> None:
    result = run_script(sandbox, "--check")
    assert result.returncode == 1
    assert "jaeger 2.13.0 is not built" in result.stderr
    assert "run scripts/install-stack.sh" in result.stderr
    assert calls(sandbox) == []
    assert run_script(sandbox).returncode == 0
    checked = run_script(sandbox, "--check")
    assert checked.returncode == 0, checked.stderr
    assert set(printed_paths(checked)) == {"jaeger", "prometheus", "promtool", "caddy"}


def test_an_edited_gateway_is_a_new_build(sandbox: dict[str, str]) -> None:
    """The gateway's sources are this repository's: a change to them builds again, a
    second run without one does not."""
    first = printed_paths(run_script(sandbox, "gateway"))["caddy"]
    assert printed_paths(run_script(sandbox, "gateway"))["caddy"] == first
    builds = [call for call in calls(sandbox) if call.startswith("go build")]
    assert len(builds) == 1
    edge = Path(sandbox["STACK_GATEWAY_DIR"]) / "edge" / "problems.go"
    edge.write_text(edge.read_text() + "\n// edited\n")
    second = printed_paths(run_script(sandbox, "gateway"))["caddy"]
    assert second != first
    assert len([call for call in calls(sandbox) if call.startswith("go build")]) == 2


def test_a_gateway_pin_that_go_mod_does_not_require_is_refused(sandbox: dict[str, str]) -> None:
    """The compose file's tag and gateway/go.mod's Caddy change together."""
    compose = yaml.safe_load(Path(sandbox["STACK_COMPOSE_FILE"]).read_text())
    compose["services"]["gateway"]["image"] = "service-template/gateway:2.11.8"
    Path(sandbox["STACK_COMPOSE_FILE"]).write_text(yaml.safe_dump(compose))
    result = run_script(sandbox, "gateway")
    assert result.returncode == 1
    assert "does not require github.com/caddyserver/caddy/v2 v2.11.8" in result.stderr
    assert not [call for call in calls(sandbox) if call.startswith("go build")]


def test_a_new_pin_is_a_new_build(sandbox: dict[str, str]) -> None:
    assert run_script(sandbox).returncode == 0
    modules = Path(sandbox["FAKE_MODULES"])
    older = modules / "github.com/prometheus/prometheus@v0.305.0"
    (older / "cmd" / "prometheus").mkdir(parents=True)
    (older / "cmd" / "promtool").mkdir(parents=True)
    (older / "VERSION").write_text("3.5.0\n")
    Path(sandbox["STACK_COMPOSE_FILE"]).write_text(compose_with("2.13.0", "3.5.0"))
    result = run_script(sandbox)
    assert result.returncode == 0, result.stderr
    assert printed_paths(result)["prometheus"].endswith("/prometheus-3.5.0/prometheus")
    assert "go mod download -json github.com/prometheus/prometheus@v0.305.0" in calls(sandbox)


def test_a_jaeger_release_without_a_go_module_is_refused(sandbox: dict[str, str]) -> None:
    """Jaeger 2.14 and later are not released from the v1 module line: the script says so
    instead of building whatever v1.77 might be."""
    Path(sandbox["STACK_COMPOSE_FILE"]).write_text(compose_with("2.12.0", "3.14.0"))
    result = run_script(sandbox, "jaeger")
    assert result.returncode == 1
    assert "github.com/jaegertracing/jaeger@v1.75.0" in result.stderr  # not served here

    modules = Path(sandbox["FAKE_MODULES"])
    (modules / "github.com/jaegertracing/jaeger@v1.75.0").mkdir(parents=True)
    (modules / "github.com/jaegertracing/jaeger@v1.75.0" / "CHANGELOG.md").write_text(
        "v1.74.0 / v2.11.0 (2025-10-02)\n"
    )
    result = run_script(sandbox, "jaeger")
    assert result.returncode == 1
    assert "does not name v2.12.0" in result.stderr
    assert not (Path(sandbox["STACK_CACHE_DIR"]) / "jaeger-2.12.0").exists()


def test_a_failed_build_leaves_nothing_in_the_cache(sandbox: dict[str, str]) -> None:
    write_executable(
        Path(sandbox["PATH"].split(":")[0]) / "go",
        FAKE_GO.replace("  build)\n", '  build)\n    echo "compile error" >&2; exit 2\n'),
    )
    result = run_script(sandbox, "prometheus")
    assert result.returncode != 0
    assert "compile error" in result.stderr
    cache = Path(sandbox["STACK_CACHE_DIR"])
    assert [p.name for p in cache.iterdir() if p.name != ".lock"] == []


# --- the real programs, as built for this checkout ------------------------------------


def test_the_built_programs_are_the_versions_the_compose_file_pins(
    stack_binaries: dict[str, Path], compose: dict[str, Any]
) -> None:
    services = compose["services"]
    jaeger_pin = services["jaeger"]["image"].rpartition(":")[2]
    prometheus_pin = services["prometheus"]["image"].rpartition(":v")[2]

    version = subprocess.run(
        [stack_binaries["jaeger"], "version"], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(version.splitlines()[-1])["gitVersion"] == f"v{jaeger_pin}"
    for program in ("prometheus", "promtool"):
        version = subprocess.run(
            [stack_binaries[program], "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert version.startswith(f"{program}, version {prometheus_pin} "), version

    gateway_pin = services["gateway"]["image"].rpartition(":")[2]
    caddy = stack_binaries["caddy"]
    version = subprocess.run([caddy, "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith(f"v{gateway_pin} "), version.stdout
    modules = subprocess.run(
        [caddy, "list-modules"], capture_output=True, text=True, check=True
    ).stdout.split()
    for module in (
        "http.handlers.rate_limit",
        "http.handlers.bearer_jwt",
        "http.handlers.problems",
    ):
        assert module in modules


def test_make_test_installs_the_stack_before_the_tests() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in recipe.splitlines()[1:]]
    assert "bash scripts/install-stack.sh" in lines
    assert lines.index("bash scripts/install-stack.sh") < next(
        i for i, line in enumerate(lines) if "pytest" in line
    )
    assert os.access(INSTALL_SCRIPT, os.X_OK)
