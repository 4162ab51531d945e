"""Connections that hold on: idle, slow headers, a stalled body, huge headers. The service runs
as a real process with short limits; raw sockets on loopback play the clients."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from service_chassis.testing.servers import ServiceProcess, start_service

from .conftest import PACKAGE

LIMITS = {
    "HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "HTTP_BODY_TIMEOUT_SECONDS": "1",
    "HTTP_KEEP_ALIVE_SECONDS": "1",
    "HTTP_MAX_HEADER_BYTES": "8192",
}
# Each limit is 1 s; a connection still open well after that was not closed by it.
WITHIN = 4.0


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    running = start_service(
        PACKAGE, {"OTEL_TRACES_EXPORTER": "none", "MESSAGING_ENABLED": "false", **LIMITS}
    )
    yield running
    running.stop()


def connect(service: ServiceProcess) -> socket.socket:
    address = urlsplit(service.base_url)
    return socket.create_connection((address.hostname, address.port), timeout=WITHIN + 2)


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes; how long that took and what it said."""
    started, received = time.monotonic(), b""
    sock.settimeout(seconds)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s; got {received!r}") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


def test_a_connection_that_sends_nothing_is_closed(service: ServiceProcess) -> None:
    with connect(service) as sock:
        took, said = closed_within(sock, WITHIN)
    assert said == b""
    assert took < WITHIN


def test_headers_that_trickle_in_get_a_408_and_the_connection_closed(
    service: ServiceProcess,
) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            sock.sendall(b"X-Slow: y\r\n")
            time.sleep(0.4)
        _, said = closed_within(sock, WITHIN)
    assert said.startswith(b"HTTP/1.1 408 ")


def test_a_body_that_stalls_closes_the_connection(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.sendall(
            b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"name": "'
        )
        took, _ = closed_within(sock, WITHIN)
    assert took < WITHIN


def test_headers_beyond_the_limit_get_a_431(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        _, said = closed_within(sock, WITHIN)
    assert said.startswith(b"HTTP/1.1 431 ")


def test_complete_headers_beyond_the_limit_in_one_piece_get_a_431(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        _, said = closed_within(sock, WITHIN)
    assert said.startswith(b"HTTP/1.1 431 ")


def test_a_body_that_arrives_with_the_headers_does_not_count_as_headers(
    service: ServiceProcess,
) -> None:
    body = b"x" * 20_000  # more than the header limit, in the same chunk as the headers
    with connect(service) as sock:
        sock.sendall(
            b"GET /items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        _, said = closed_within(sock, WITHIN)
    assert said.startswith(b"HTTP/1.1 200 ")


def test_an_idle_kept_alive_connection_is_closed(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        took, said = closed_within(sock, WITHIN)
    assert said.startswith(b"HTTP/1.1 200 ")
    assert took < WITHIN


def test_ordinary_requests_pass_under_the_limits(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.base_url) as client:
        for _ in range(3):  # one kept-alive connection, several requests
            response = client.get("/items/1", headers={"x-fill": "a" * 6000})
            assert response.status_code == 200
        created = client.post("/items", json={"name": "widget", "quantity": 2})
        assert created.status_code == 201
