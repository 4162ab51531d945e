"""bearer_jwt with an issuer's public key (`key_file`) instead of the shipped HMAC secret.

The shipped Caddyfile with its `auth_jwt` snippet switched to `key_file` (nothing else
changed), the keys made and the tokens signed by openssl: Ed25519 (EdDSA) and RSA (RS256).
The algorithm follows from the key: a token signed with the other kind of key, or an HMAC
token whose secret is the public key itself, is refused.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack.gateway import CADDYFILE, Gateway, jwt, run_gateway

pytestmark = pytest.mark.xdist_group("gateway-keys")

SHIPPED_SNIPPET = 'secret "{$GATEWAY_JWT_SECRET}"'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["openssl", *args], input=data, capture_output=True, timeout=30, check=True
    )
    return result.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> private key file, each with its .pub beside it: the issuer's key of each kind,
    and a forger's of the same kind."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name, args in {
        "ed25519": ["-algorithm", "ed25519"],
        "ed25519-forger": ["-algorithm", "ed25519"],
        "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "rsa-forger": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    }.items():
        private = folder / f"{name}.pem"
        private.write_bytes(openssl("genpkey", *args))
        private.with_suffix(".pub").write_bytes(openssl("pkey", "-in", str(private), "-pubout"))
        made[name] = private
    return made


def signed(claims: dict[str, Any], key: Path, kind: str) -> str:
    alg = {"ed25519": "EdDSA", "rsa": "RS256"}[kind]
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    if kind == "ed25519":
        # Ed25519 signs in one shot, which openssl does only from a file, not a pipe.
        message = key.with_name(f"message-{time.time_ns()}")
        message.write_bytes(signing_input)
        signature = openssl("pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(message))
    else:
        signature = openssl("dgst", "-sha256", "-sign", str(key), data=signing_input)
    return f"{header}.{payload}.{b64(signature)}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """A plain HTTP server that answers 200 to anything."""

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=["ed25519", "rsa"])
def gateway(
    request: pytest.FixtureRequest,
    stack_binaries: dict[str, Path],
    keys: dict[str, Path],
    upstream: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, str]]:
    kind: str = request.param
    text = CADDYFILE.read_text()
    assert SHIPPED_SNIPPET in text
    public = keys[kind].with_suffix(".pub")
    with run_gateway(
        stack_binaries["caddy"],
        tmp_path_factory.mktemp(f"gateway-{kind}"),
        {"orders": f"127.0.0.1:{upstream}"},
        caddyfile=text.replace(SHIPPED_SNIPPET, f"key_file {public}"),
    ) as running:
        yield running, kind


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "client-7", "exp": int(time.time()) + 300, **extra}


def status(gateway: Gateway, token: str) -> int:
    answer = httpx.get(
        gateway.url + "/orders/items/1", headers={"authorization": f"Bearer {token}"}, timeout=5
    )
    return answer.status_code


def test_a_token_signed_with_the_issuers_key_passes(
    gateway: tuple[Gateway, str], keys: dict[str, Path]
) -> None:
    running, kind = gateway
    assert status(running, signed(claims(), keys[kind], kind)) == 200


def test_an_expired_or_forged_token_is_refused(
    gateway: tuple[Gateway, str], keys: dict[str, Path]
) -> None:
    running, kind = gateway
    other = "rsa" if kind == "ed25519" else "ed25519"
    assert status(running, signed(claims(exp=int(time.time()) - 120), keys[kind], kind)) == 401
    # Signed with another key of the same kind, or with the other kind's algorithm.
    assert status(running, signed(claims(), keys[f"{kind}-forger"], kind)) == 401
    assert status(running, signed(claims(), keys[other], other)) == 401


def test_the_public_key_as_an_hmac_secret_is_refused(
    gateway: tuple[Gateway, str], keys: dict[str, Path]
) -> None:
    """The algorithm-confusion attack: HS256 keyed with the public key the gateway holds."""
    running, kind = gateway
    public = keys[kind].with_suffix(".pub").read_text()
    assert status(running, jwt(claims(), secret=public)) == 401


def test_issuer_and_audience_when_configured(
    stack_binaries: dict[str, Path],
    keys: dict[str, Path],
    upstream: int,
    tmp_path: Path,
) -> None:
    public = keys["ed25519"].with_suffix(".pub")
    settings = f"key_file {public}\n\t\tissuer https://issuer.test\n\t\taudience api"
    with run_gateway(
        stack_binaries["caddy"],
        tmp_path,
        {"orders": f"127.0.0.1:{upstream}"},
        caddyfile=CADDYFILE.read_text().replace(SHIPPED_SNIPPET, settings),
    ) as running:
        key = keys["ed25519"]
        good = claims(iss="https://issuer.test", aud="api")
        assert status(running, signed(good, key, "ed25519")) == 200
        assert status(running, signed({**good, "iss": "https://other.test"}, key, "ed25519")) == 401
        assert status(running, signed({**good, "aud": "other"}, key, "ed25519")) == 401
        assert status(running, signed(claims(), key, "ed25519")) == 401  # neither claim
