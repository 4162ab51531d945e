"""scripts/install-prometheus.sh, run against stand-ins for apt-get and the tools."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-prometheus.sh"
# The few real commands the script needs besides those it is tested against.
REAL_COMMANDS = ("id", "tee", "chmod", "rm")

FAKE_TOOL = '#!/bin/sh\necho "${0##*/}, version 2.42.0"\necho "  build details"\n'
# Records each call; `install` "installs" the tools and notes whether services were blocked.
FAKE_APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$CALLS"
if [ "$1" = install ]; then
    if [ -x "$POLICY_RC_D" ]; then echo "policy-rc.d in place" >> "$CALLS"; fi
    for tool in prometheus promtool; do
        printf '%s' "$FAKE_TOOL" > "$BIN/$tool"
        chmod +x "$BIN/$tool"
    done
fi
"""
FAKE_SERVICE = '#!/bin/sh\necho "${0##*/} $*" >> "$CALLS"\n'
PASS_THROUGH = '#!/bin/sh\nexec "$@"\n'


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A PATH holding only stand-ins and the few real commands the script uses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in REAL_COMMANDS:
        real = shutil.which(command)
        assert real, command
        (bin_dir / command).symlink_to(real)
    write_executable(bin_dir / "apt-get", FAKE_APT_GET)
    write_executable(bin_dir / "service", FAKE_SERVICE)
    write_executable(bin_dir / "systemctl", FAKE_SERVICE)
    write_executable(bin_dir / "sudo", PASS_THROUGH)
    env = {
        "PATH": str(bin_dir),
        "BIN": str(bin_dir),
        "CALLS": str(tmp_path / "calls.log"),
        "POLICY_RC_D": str(tmp_path / "policy-rc.d"),
        "FAKE_TOOL": FAKE_TOOL,
        "HOME": os.environ.get("HOME", "/root"),
    }
    return bin_dir, env


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_does_nothing_when_the_tools_are_installed(sandbox: tuple[Path, dict[str, str]]) -> None:
    bin_dir, env = sandbox
    for tool in ("prometheus", "promtool"):
        write_executable(bin_dir / tool, FAKE_TOOL)
    result = run_script(env)
    assert result.returncode == 0, result.stderr
    assert "already installed" in result.stdout
    assert calls(env) == []


def test_installs_the_debian_package_without_leaving_a_server_running(
    sandbox: tuple[Path, dict[str, str]],
) -> None:
    _, env = sandbox
    result = run_script(env)
    assert result.returncode == 0, result.stdout + result.stderr
    log = calls(env)
    assert log[:3] == [
        "apt-get update",
        "apt-get install -y --no-install-recommends prometheus",
        "policy-rc.d in place",
    ]
    # Whatever the init system, the packaged service is stopped afterwards.
    assert log[3:] in (["service prometheus stop"], ["systemctl disable --now prometheus.service"])
    assert not Path(env["POLICY_RC_D"]).exists(), "the temporary policy-rc.d was left behind"
    assert "promtool, version" in result.stdout
