#!/usr/bin/env bash
# Builds the local stack's programs from their Go modules, at the versions docker-compose.yml
# pins, so they run without Docker:
#   Jaeger v2         jaegertracing/jaeger:<v>   -> github.com/jaegertracing/jaeger, cmd/jaeger
#   Prometheus 3      prom/prometheus:v<v>       -> github.com/prometheus/prometheus, cmd/prometheus
#                                                   and cmd/promtool
#   the API gateway   service-template/gateway:<v> -> gateway/ of this repository: Caddy <v>
#                                                   (github.com/caddyserver/caddy/v2) with the
#                                                   rate limiter and gateway/edge, as `caddy`
# Jaeger and Prometheus are built from their own module source, with its own go.mod and go.sum
# (the dependency versions its release used); the gateway from gateway/go.mod and go.sum, which
# must require Caddy at the compose file's version. Each is cached by version under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/service-template/stack/<name>-<version>/
# (the gateway's directory name adds a digest of gateway/'s Go sources, so an edit rebuilds it)
# so a second run costs a fraction of a second. Needs Go (1.26 or later, which Caddy 2.11
# requires; `go` on PATH or in /usr/local/go/bin) and the Go module proxy. The web UIs are not built: Prometheus serves its
# API without its UI assets (they are embedded only with the `builtinassets` tag), Jaeger
# serves a placeholder page instead of its React UI; both APIs are complete.
#
# Usage: scripts/install-stack.sh [--check] [jaeger] [prometheus] [gateway]
#   Builds what is named (all three by default) and prints one `name=path` line per program on
#   stdout (jaeger; prometheus and promtool; caddy), in shell syntax: `eval "$(...)"` sets
#   $jaeger, $prometheus, $promtool and $caddy. Progress goes to stderr. With --check nothing is built: exit 1
#   when a program is missing.
# Usage: scripts/install-stack.sh --run
#   Builds all three if needed, then runs them in the foreground as docker-compose.yml does,
#   with the repository's configs, on 127.0.0.1 and the compose file's ports, until Ctrl-C (see
#   observability/README.md, "Without Docker").
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COMPOSE="${STACK_COMPOSE_FILE:-$ROOT/docker-compose.yml}"
CACHE="${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/service-template/stack}"
STATE="${STACK_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/service-template/stack}"
CHECK_ONLY=false
RUN=false
WANTED=()

usage() { echo "usage: $0 [--check] [jaeger] [prometheus] [gateway] | $0 --run" >&2; exit 2; }
for arg in "$@"; do
    case "$arg" in
        --check) CHECK_ONLY=true ;;
        --run) RUN=true ;;
        jaeger | prometheus | gateway) WANTED+=("$arg") ;;
        *) usage ;;
    esac
done
if [ "$RUN" = true ] && { [ "$CHECK_ONLY" = true ] || [ "${#WANTED[@]}" -gt 0 ]; }; then
    usage
fi
[ "${#WANTED[@]}" -gt 0 ] || WANTED=(jaeger prometheus gateway)
declare -A BUILT=()

say() { echo "install-stack: $*" >&2; }
die() { say "$*"; exit 1; }

# The tag of `image: <repository>:<tag>` in the compose file.
image_tag() {
    local repository=$1 line tag
    line="$(grep -E "^[[:space:]]+image:[[:space:]]+${repository}:" "$COMPOSE")" ||
        die "no image $repository in $COMPOSE"
    tag="${line##*:}"
    tag="${tag//[[:space:]\"\']/}"
    echo "$tag"
}

# The Go module version that carries a release.
#   Prometheus 3.M.P is github.com/prometheus/prometheus v0.3MM.P (3.5.0 is v0.305.0).
#   Jaeger 2.M.P was released from the module's v1 line: v1.(63+M).P (2.13.0 is v1.76.0);
#   the module's CHANGELOG names both ("v1.76.0 / v2.13.0"), which build() checks.
prometheus_module_version() {
    local major minor patch
    IFS=. read -r major minor patch <<<"$1"
    [ "$major" = 3 ] || die "Prometheus $1: only 3.x is released as a v0.3xx Go module"
    printf 'v0.3%02d.%d\n' "$minor" "$patch"
}
jaeger_module_version() {
    local major minor patch
    IFS=. read -r major minor patch <<<"$1"
    [ "$major" = 2 ] || die "Jaeger $1: only 2.x is released from the v1.x Go module"
    echo "v1.$((63 + minor)).$patch"
}

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        die "Go is needed to build the stack (1.25 or later, https://go.dev/dl/); none found"
    fi
}

# build NAME VERSION MODULE MODULE_VERSION VERIFY LDFLAGS PACKAGE...
# Builds each ./cmd/<package> of MODULE@MODULE_VERSION into $CACHE/NAME-VERSION/.
build() {
    local name=$1 version=$2 module=$3 module_version=$4 verify=$5 ldflags=$6
    shift 6
    local target="$CACHE/$name-$version" go work source package started
    go="$(find_go)"
    started=$SECONDS
    say "building $name $version from $module@$module_version (first time only; minutes)"
    source="$("$go" mod download -json "$module@$module_version" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -d "$source" ] || die "$module@$module_version: the module proxy gave no source"
    "$verify" "$source" "$version" "$module_version"

    mkdir -p "$CACHE"
    work="$(mktemp -d "$CACHE/.build-$name-XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    # A writable copy of the module: `go build` in it uses the module's own go.mod and go.sum,
    # replace and exclude directives included, as the upstream release build does.
    cp -R "$source" "$work/src"
    chmod -R u+w "$work/src"
    mkdir "$work/bin"
    for package in "$@"; do
        # GOWORK=off: some modules ship a go.work that names directories the zip leaves out.
        (cd "$work/src" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" \
            "$go" build -trimpath \
            -ldflags "$ldflags" -o "$work/bin/${package##*/}" "./$package")
    done
    rm -rf "$target"
    mv "$work/bin" "$target"
    rm -rf "$work"
    trap - EXIT
    say "built $name $version in $((SECONDS - started)) s: $target"
}

verify_prometheus() {
    local source=$1 version=$2
    [ "$(cat "$source/VERSION")" = "$version" ] ||
        die "$source/VERSION says $(cat "$source/VERSION"), not $version"
}
verify_jaeger() {
    local source=$1 version=$2 module_version=$3
    grep -qF "$module_version / v$version " "$source/CHANGELOG.md" ||
        die "Jaeger's CHANGELOG at $module_version does not name v$version: pin a Jaeger" \
            "release that has a v1.x Go module version (2.13.0, v1.76.0, is the newest served)"
}

GATEWAY_DIR="${STACK_GATEWAY_DIR:-$ROOT/gateway}"

# A digest of what the gateway's build reads (go.mod, go.sum, the Go files): part of its
# cache directory's name, so an edited edge module or a bumped plugin is rebuilt.
gateway_digest() {
    (cd "$GATEWAY_DIR" && find . \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12
}

# build_gateway VERSION TARGET: gateway/ (Caddy VERSION, the rate limiter, gateway/edge) as
# TARGET/caddy, with gateway/go.mod and go.sum as they are.
build_gateway() {
    local version=$1 target=$2 go work started
    grep -qE "^[[:space:]]*github.com/caddyserver/caddy/v2 v${version//./\\.}\$" \
        "$GATEWAY_DIR/go.mod" ||
        die "gateway/go.mod does not require github.com/caddyserver/caddy/v2 v$version, the" \
            "version docker-compose.yml pins: change both together"
    go="$(find_go)"
    started=$SECONDS
    say "building the gateway: Caddy $version with gateway/go.mod (first time only; minutes)"
    mkdir -p "$CACHE"
    work="$(mktemp -d "$CACHE/.build-gateway-XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    mkdir "$work/bin"
    (cd "$GATEWAY_DIR" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" \
        "$go" build -trimpath -o "$work/bin/caddy" .)
    rm -rf "$target"
    mv "$work/bin" "$target"
    rm -rf "$work"
    trap - EXIT
    say "built the gateway (Caddy $version) in $((SECONDS - started)) s: $target"
}

# ensure NAME VERSION PROGRAM...: print name=path for each program, building when missing.
ensure() {
    local name=$1 version=$2 dir program missing=false
    shift 2
    dir="$CACHE/$name-$version"
    for program in "$@"; do
        [ -x "$dir/$program" ] || missing=true
    done
    if [ "$missing" = true ]; then
        if [ "$CHECK_ONLY" = true ]; then
            die "$name $version is not built in $dir: run scripts/install-stack.sh"
        fi
        case "$name" in
            prometheus)
                build prometheus "$version" github.com/prometheus/prometheus \
                    "$(prometheus_module_version "$version")" verify_prometheus \
                    "-X github.com/prometheus/common/version.Version=$version
                     -X github.com/prometheus/common/version.Branch=HEAD
                     -X github.com/prometheus/common/version.BuildUser=install-stack.sh" \
                    cmd/prometheus cmd/promtool
                ;;
            jaeger)
                build jaeger "$version" github.com/jaegertracing/jaeger \
                    "$(jaeger_module_version "$version")" verify_jaeger \
                    "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$version" \
                    cmd/jaeger
                ;;
            gateway) build_gateway "$GATEWAY_VERSION" "$dir" ;;
        esac
    fi
    for program in "$@"; do
        BUILT[$program]="$dir/$program"
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Jaeger, Prometheus and the gateway in the foreground, as the compose file runs them, until
# Ctrl-C.
run_stack() {
    local observability="$ROOT/observability" port pids=() names=() started name
    mkdir -p "$STATE"
    for port in 4317 4318 16685 16686 8889 13133 8888 9090 8080 2020 2019; do
        if port_open "$port"; then
            die "127.0.0.1:$port is taken: is the stack already running (docker compose up," \
                "or another --run)?"
        fi
    done
    # The shipped prometheus.yml names the compose network's hosts (jaeger, consul) and
    # resolves rules/ and targets/ next to itself: here the hosts are this machine, and the
    # paths are the repository's, so edited rules and target files apply as in the container.
    sed -e 's|consul:8500|127.0.0.1:8500|' -e 's|jaeger:8889|127.0.0.1:8889|' \
        -e 's|localhost:9090|127.0.0.1:9090|' \
        -e "s|- rules/|- $observability/prometheus/rules/|" \
        -e "s|- targets/|- $observability/prometheus/targets/|" \
        "$observability/prometheus/prometheus.yml" >"$STATE/prometheus.yml"
    for expected in 127.0.0.1:8500 127.0.0.1:8889 "$observability/prometheus/rules/"; do
        grep -qF "$expected" "$STATE/prometheus.yml" ||
            die "observability/prometheus/prometheus.yml no longer has what --run rewrites"
    done

    # The shipped Jaeger config, bound to loopback (the compose file publishes on 127.0.0.1
    # only), its Monitor tab reading this Prometheus.
    "${BUILT[jaeger]}" --config "$observability/jaeger/config.yaml" \
        --set=receivers.otlp.protocols.grpc.endpoint=127.0.0.1:4317 \
        --set=receivers.otlp.protocols.http.endpoint=127.0.0.1:4318 \
        --set=extensions.jaeger_query.http.endpoint=127.0.0.1:16686 \
        --set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:16685 \
        --set=exporters.prometheus.endpoint=127.0.0.1:8889 \
        --set=extensions.jaeger_storage.metric_backends.span_metrics_in_prometheus.prometheus.endpoint=http://127.0.0.1:9090 \
        >"$STATE/jaeger.log" 2>&1 &
    pids+=($!)
    names+=(jaeger)
    # The compose file's flags.
    "${BUILT[prometheus]}" --config.file="$STATE/prometheus.yml" \
        --storage.tsdb.path="$STATE/prometheus-data" --storage.tsdb.retention.time=15d \
        --enable-feature=exemplar-storage --web.enable-lifecycle \
        --web.listen-address=127.0.0.1:9090 >"$STATE/prometheus.log" 2>&1 &
    pids+=($!)
    names+=(prometheus)
    # The gateway with gateway/Caddyfile and its route table, on loopback, its spans to this
    # Jaeger. Its upstreams are the compose network's names unless <SERVICE>_UPSTREAM says
    # where a service runs here (e.g. STOREFRONT_UPSTREAM=127.0.0.1:8000); the JWT secret is
    # the compose file's local one unless GATEWAY_JWT_SECRET is set.
    GATEWAY_BIND=127.0.0.1 GATEWAY_ADMIN=127.0.0.1:2019 \
        GATEWAY_JWT_SECRET="${GATEWAY_JWT_SECRET:-local-stack-only-0123456789abcdef}" \
        OTEL_SERVICE_NAME=gateway OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
        OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
        "${BUILT[caddy]}" run --config "$GATEWAY_DIR/Caddyfile" --adapter caddyfile \
        >"$STATE/gateway-access.log" 2>"$STATE/gateway.log" &
    pids+=($!)
    names+=(gateway)
    # shellcheck disable=SC2064  # expand now: the pids are known
    trap "kill ${pids[*]} 2>/dev/null || true; wait ${pids[*]} 2>/dev/null || true" EXIT
    trap 'say "stopping"; exit 0' INT TERM

    started=$SECONDS
    until port_open 16686 && port_open 9090 && port_open 8080; do
        for i in "${!pids[@]}"; do
            if ! kill -0 "${pids[$i]}" 2>/dev/null; then
                say "${names[$i]} exited; $STATE/${names[$i]}.log ends with:"
                tail -n 20 "$STATE/${names[$i]}.log" >&2
                exit 1
            fi
        done
        [ $((SECONDS - started)) -lt 60 ] || die "the stack did not come up in 60 s; logs in $STATE"
        sleep 0.2
    done
    say "Jaeger $JAEGER_VERSION, Prometheus $PROMETHEUS_VERSION and the gateway (Caddy" \
        "$GATEWAY_VERSION) are up (logs in $STATE):"
    say "  Jaeger UI and query API   http://localhost:16686  (Monitor tab: span metrics)"
    say "  OTLP                      http://localhost:4317 (gRPC), http://localhost:4318 (HTTP)"
    say "  Prometheus                http://localhost:9090"
    say "  API gateway               http://localhost:8080  (routes: gateway/routes.caddy)"
    say "Ctrl-C stops them all."
    # All run until a signal; one that exits on its own takes the others down with it.
    set +e
    wait -n "${pids[@]}"
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then name=${names[$i]}; fi
    done
    say "$name exited; $STATE/$name.log ends with:"
    tail -n 20 "$STATE/$name.log" >&2
    exit 1
}

JAEGER_VERSION="$(image_tag jaegertracing/jaeger)"
PROMETHEUS_VERSION="$(image_tag prom/prometheus)"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION#v}"
GATEWAY_VERSION="$(image_tag service-template/gateway)"

if [ "$CHECK_ONLY" = false ]; then
    # One build at a time per cache, whoever runs it (make test and a user's shell alike).
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
fi

for name in "${WANTED[@]}"; do
    case "$name" in
        jaeger) ensure jaeger "$JAEGER_VERSION" jaeger ;;
        prometheus) ensure prometheus "$PROMETHEUS_VERSION" prometheus promtool ;;
        gateway) ensure gateway "$GATEWAY_VERSION-$(gateway_digest)" caddy ;;
    esac
done

if [ "$RUN" = true ]; then
    exec 9>&-  # the build lock: another shell may build while this one runs the stack
    run_stack
fi
for program in jaeger prometheus promtool caddy; do
    if [ -n "${BUILT[$program]:-}" ]; then
        printf '%s=%q\n' "$program" "${BUILT[$program]}"
    fi
done
