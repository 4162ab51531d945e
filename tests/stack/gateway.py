"""The API gateway as a real process: the Caddy that scripts/install-stack.sh builds from
gateway/, running gateway/Caddyfile and its route table as shipped, on loopback ports.

Only what the Caddyfile reads from the environment changes (ports, upstreams, the JWT secret,
the OTLP endpoint). Shared by tests/stack, tests/e2e and scripts/demo.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.net import free_port
from tests.stack.programs import REPO, Jaeger, wait_until

GATEWAY_DIR = REPO / "gateway"
CADDYFILE = GATEWAY_DIR / "Caddyfile"
ROUTES = GATEWAY_DIR / "routes.caddy"
# A secret of the tests' own (the Caddyfile needs 32 bytes or more).
JWT_SECRET = "tests-only-secret-0123456789abcdef"

ROUTE_LINE = re.compile(
    r"^import\s+api\s+(?P<prefix>/\S+)\s+\{\$(?P<variable>\w+):(?P<default>[^}]+)\}"
    r"\s+(?P<auth>\w+)\s+(?P<events>\d+)\s+(?P<window>\S+)\s*$"
)


@dataclass(frozen=True)
class Route:
    """One line of the route table."""

    prefix: str  # /orders
    variable: str  # ORDERS_UPSTREAM: the environment variable naming the upstream
    default: str  # orders:8000: the upstream on the compose network
    auth: str  # jwt | public
    events: int
    window: str

    @property
    def service(self) -> str:
        return self.prefix.lstrip("/")


def routes(text: str | None = None) -> list[Route]:
    """The route table's `import api` lines (every other line is a comment or blank)."""
    found = []
    for line in (ROUTES.read_text() if text is None else text).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ROUTE_LINE.match(line.strip())
        assert match, f"not a route line: {line!r}"
        found.append(
            Route(
                match["prefix"],
                match["variable"],
                match["default"],
                match["auth"],
                int(match["events"]),
                match["window"],
            )
        )
    return found


def upstream_variable(service: str) -> str:
    """The variable that points a service's route at it: ORDERS_UPSTREAM for orders."""
    (route,) = [r for r in routes() if r.service == service]
    return route.variable


def jwt(claims: Mapping[str, Any], secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    """A compact JWS (RFC 7515) over `claims`, HMAC-signed; alg "none" leaves it unsigned."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64(json.dumps(dict(claims)).encode())
    signing_input = f"{header}.{payload}".encode()
    if alg == "none":
        return f"{header}.{payload}."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(secret.encode(), signing_input, digest).digest()
    return f"{header}.{payload}.{b64(signature)}"


@dataclass
class Gateway:
    port: int
    management_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def runtime_log(self) -> Path:
        return self.workdir / "caddy.log"

    def logs(self) -> list[dict[str, Any]]:
        """The access log: one JSON object per request."""
        return [
            json.loads(line)
            for line in self.access_log.read_text().splitlines()
            if line.startswith("{")
        ]

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextlib.contextmanager
def run_gateway(
    binary: Path,
    workdir: Path,
    upstreams: Mapping[str, str],
    jaeger: Jaeger | None = None,
    env: Mapping[str, str] | None = None,
    extra_routes: str = "",
    caddyfile: str | None = None,
) -> Iterator[Gateway]:
    """gateway/Caddyfile with the shipped route table, on free loopback ports.

    `upstreams` maps a service of the route table to the host:port it runs on. `extra_routes`
    (lines in the table's own syntax) are appended to a copy of the table, for routes a test
    needs beside the shipped ones; `caddyfile` replaces the Caddyfile's text, for a test of a
    setting the shipped file does not use. Either way both files are copied side by side.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = CADDYFILE
    if extra_routes or caddyfile is not None:
        (workdir / "Caddyfile").write_text(caddyfile or CADDYFILE.read_text())
        (workdir / "routes.caddy").write_text(ROUTES.read_text() + extra_routes)
        config = workdir / "Caddyfile"
    gateway = Gateway(free_port(), free_port(), workdir)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Caddy's own files (it keeps none with this config, but would look there).
        "HOME": str(workdir),
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "XDG_DATA_HOME": str(workdir / "data"),
        "GATEWAY_PORT": str(gateway.port),
        "GATEWAY_MANAGEMENT_PORT": str(gateway.management_port),
        "GATEWAY_BIND": "127.0.0.1",
        "GATEWAY_ADMIN": "off",
        "GATEWAY_JWT_SECRET": JWT_SECRET,
        "OTEL_SERVICE_NAME": "gateway",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **{upstream_variable(name): address for name, address in upstreams.items()},
    }
    if jaeger is None:
        environment["OTEL_TRACES_EXPORTER"] = "none"
    else:
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = jaeger.otlp_http_endpoint
        environment["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
    environment.update(env or {})
    with gateway.access_log.open("wb") as out, gateway.runtime_log.open("wb") as err:
        gateway.process = subprocess.Popen(
            [str(binary), "run", "--config", str(config), "--adapter", "caddyfile"],
            env=environment,
            stdout=out,
            stderr=err,
        )
        try:

            def live() -> bool:
                assert gateway.process is not None
                if gateway.process.poll() is not None:
                    raise RuntimeError(
                        f"the gateway exited {gateway.process.returncode}:\n"
                        f"{gateway.runtime_log.read_text()[-4000:]}"
                    )
                try:
                    answer = httpx.get(gateway.management_url + "/health/live", timeout=1)
                except httpx.TransportError:
                    return False
                return answer.status_code == 200

            wait_until("the gateway", live, timeout=30)
            yield gateway
        finally:
            gateway.stop()
