#!/usr/bin/env bash
# Installs the Prometheus server and promtool from Debian's package so the stack's
# tests (tests/stack) can run a real Prometheus without Docker. Safe to run again.
#
# The package's maintainer scripts would start a system-wide Prometheus on :9090;
# the tests start their own on a free port, so the system one is kept from starting
# (policy-rc.d) and stopped if something started it anyway.
set -euo pipefail

first_line_of_version() {
    # Not `| head -n 1`: with pipefail, head closing the pipe early fails the script.
    local version
    version="$(promtool --version 2>&1)"
    echo "${version%%$'\n'*}"
}

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus and promtool already installed: $(first_line_of_version)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

policy="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"
added_policy=false
if [ ! -e "$policy" ]; then
    # Exit code 101 tells invoke-rc.d "action forbidden": no service is started.
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    added_policy=true
fi
cleanup() {
    if [ "$added_policy" = true ]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# No recommends: they pull in prometheus-node-exporter, another daemon on :9100.
$SUDO apt-get install -y --no-install-recommends prometheus

# Where systemd runs, policy-rc.d does not stop deb-systemd-invoke; stop and disable it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    $SUDO service prometheus stop >/dev/null 2>&1 || true
fi

first_line_of_version
