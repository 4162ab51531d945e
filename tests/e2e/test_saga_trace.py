"""The example saga across three baked services, as one trace per saga in a real Jaeger.

orders, stock and payments are baked with ``database=postgres`` and ``saga=place-order``, each
with a database of its own (migrated by its own ``migrate`` command), and run as real
processes. orders orchestrates; stock and payments are its participants. One order succeeds;
one is declined at the payment and compensates (the stock released, the order cancelled).
Every span after the saga starts carries ``saga.id`` (the baggage the orchestrator sends,
allow-listed by ``BAGGAGE_ATTRIBUTES``), and so does every log line written inside a step.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from cookiecutter.main import cookiecutter
from service_chassis.testing.servers import free_port

from tests.e2e.cluster import TEMPLATE, Service, migrated, otlp_env, trace_tree
from tests.stack.programs import Jaeger, JaegerSpan, run_jaeger, wait_until

pytestmark = [pytest.mark.bake, pytest.mark.xdist_group("e2e")]

INTERNAL, SERVER, CLIENT = 1, 2, 3
PARTS = ("orders", "stock", "payments")
SAGA_ID = "saga.id"


@pytest.fixture(scope="module")
def jaeger(
    stack_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jaeger]:
    with run_jaeger(stack_binaries["jaeger"], tmp_path_factory.mktemp("jaeger")) as running:
        yield running


@pytest.fixture(scope="module")
def services(
    jaeger: Jaeger, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Service]]:
    output = tmp_path_factory.mktemp("saga")
    ports = {part: free_port() for part in PARTS}
    common = {
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "LOG_LEVEL": "INFO",
        "BAGGAGE_ATTRIBUTES": SAGA_ID,
        "MESSAGING_ENABLED": "false",
        **otlp_env(jaeger, "http/protobuf"),
    }
    participants = {
        "STOCK_URL": f"http://127.0.0.1:{ports['stock']}",
        "PAYMENTS_URL": f"http://127.0.0.1:{ports['payments']}",
    }
    with ExitStack() as stack:
        services = {}
        for part in PARTS:
            project = cookiecutter(
                str(TEMPLATE),
                no_input=True,
                output_dir=str(output),
                extra_context={
                    "service_name": part,
                    "messaging": "none",
                    "discovery": "none",
                    "database": "postgres",
                    "saga": "place-order",
                },
            )
            env = {**common, **(participants if part == "orders" else {})}
            services[part] = Service(part, Path(project), ports[part], env)
        for service in services.values():
            service.env["DATABASE_URL"] = stack.enter_context(migrated(service))
        try:
            for service in services.values():
                service.start()
            for service in services.values():
                service.wait_ready()
            yield services
        finally:
            for service in services.values():
                service.stop()


def place(orchestrator: Service, trace_id: str, **order: Any) -> dict[str, Any]:
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    accepted = httpx.post(
        orchestrator.url + "/orders", json=order, headers={"traceparent": traceparent}, timeout=10
    )
    assert accepted.status_code == 202, accepted.text

    def settled() -> dict[str, Any] | None:
        current: dict[str, Any] = httpx.get(orchestrator.url + accepted.headers["location"]).json()
        return current if current["status"] != "pending" else None

    return wait_until("the order's saga to end", settled, timeout=30)


def saga_trace(jaeger: Jaeger, trace_id: str, wanted: set[tuple[str, str]]) -> list[JaegerSpan]:
    """The saga's trace once the spans named in ``wanted`` (service, name) are in Jaeger."""

    def complete() -> list[JaegerSpan]:
        spans = jaeger.trace(trace_id)
        return spans if wanted <= {(s.service, s.name) for s in spans} else []

    found: list[JaegerSpan] = wait_until("the saga's trace in Jaeger", complete, timeout=30)
    time.sleep(1)  # the step's own span ends just after its participant's
    return jaeger.trace(trace_id) or found


@pytest.fixture(scope="module")
def confirmed(
    services: dict[str, Service], jaeger: Jaeger
) -> tuple[dict[str, Any], list[JaegerSpan]]:
    trace_id = secrets.token_hex(16)
    order = place(services["orders"], trace_id, sku="book", quantity=1, amount_cents=1500)
    wanted = {
        ("orders", "POST /orders"),
        ("orders", "saga action confirm-order"),
        ("stock", "POST /reservations"),
        ("payments", "POST /charges"),
    }
    return order, saga_trace(jaeger, trace_id, wanted)


@pytest.fixture(scope="module")
def cancelled(
    services: dict[str, Service], jaeger: Jaeger
) -> tuple[dict[str, Any], list[JaegerSpan]]:
    trace_id = secrets.token_hex(16)
    order = place(services["orders"], trace_id, sku="lamp", quantity=1, amount_cents=100_001)
    wanted = {
        ("orders", "saga compensation hold-order"),
        ("stock", "POST /reservations/{action_key}/release"),
        ("payments", "POST /charges"),
    }
    return order, saga_trace(jaeger, trace_id, wanted)


def children(spans: list[JaegerSpan], parent: JaegerSpan) -> list[JaegerSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def below(spans: list[JaegerSpan], ancestor: JaegerSpan, span: JaegerSpan) -> bool:
    by_id = {s.span_id: s for s in spans}
    current = by_id.get(span.parent_span_id)
    while current is not None:
        if current.span_id == ancestor.span_id:
            return True
        current = by_id.get(current.parent_span_id)
    return False


def test_a_confirmed_order_is_one_trace_with_a_span_per_step(
    confirmed: tuple[dict[str, Any], list[JaegerSpan]],
) -> None:
    order, spans = confirmed
    print(trace_tree(spans, spans[0].trace_id))
    assert order["status"] == "confirmed"
    (request,) = [s for s in spans if (s.service, s.name) == ("orders", "POST /orders")]
    steps = [s for s in spans if s.service == "orders" and s.name.startswith("saga action ")]
    assert [
        s.name.removeprefix("saga action ") for s in sorted(steps, key=lambda s: s.start_ns)
    ] == [
        "hold-order",
        "reserve-stock",
        "charge-payment",
        "confirm-order",
    ]
    assert all(step.parent_span_id == request.span_id for step in steps)
    by_step = {s.name.removeprefix("saga action "): s for s in steps}
    (reservation,) = [s for s in spans if (s.service, s.name) == ("stock", "POST /reservations")]
    (charge,) = [s for s in spans if (s.service, s.name) == ("payments", "POST /charges")]
    assert below(spans, by_step["reserve-stock"], reservation)
    assert below(spans, by_step["charge-payment"], charge)


def test_a_declined_payment_compensates_in_the_same_trace(
    cancelled: tuple[dict[str, Any], list[JaegerSpan]],
) -> None:
    order, spans = cancelled
    print(trace_tree(spans, spans[0].trace_id))
    assert order["status"] == "cancelled"
    (declined,) = [s for s in spans if (s.service, s.name) == ("payments", "POST /charges")]
    assert declined.attributes["http.response.status_code"] == 409
    compensations = sorted(
        (s for s in spans if s.service == "orders" and s.name.startswith("saga compensation ")),
        key=lambda s: s.start_ns,
    )
    assert [s.name.removeprefix("saga compensation ") for s in compensations] == [
        "reserve-stock",
        "hold-order",
    ]
    (release,) = [
        s
        for s in spans
        if (s.service, s.name) == ("stock", "POST /reservations/{action_key}/release")
    ]
    assert below(spans, compensations[0], release)


@pytest.mark.parametrize("which", ["confirmed", "cancelled"])
def test_the_saga_id_is_on_every_span_of_the_saga(
    which: str, request: pytest.FixtureRequest
) -> None:
    order, spans = request.getfixturevalue(which)
    steps = [s for s in spans if s.service == "orders" and s.name.startswith("saga ")]
    saga_spans = [s for s in spans if s in steps or any(below(spans, step, s) for step in steps)]
    assert {s.service for s in saga_spans} == set(PARTS)
    missing = [
        (s.service, s.name) for s in saga_spans if s.attributes.get(SAGA_ID) != order["saga_id"]
    ]
    assert missing == []


def test_the_saga_id_is_on_the_participants_log_lines(
    services: dict[str, Service], confirmed: tuple[dict[str, Any], list[JaegerSpan]]
) -> None:
    order, _ = confirmed
    for part in ("stock", "payments"):
        access = [
            line
            for line in services[part].logs()
            if line.get("logger") == "access"
            and line.get("http_route") in ("/reservations", "/charges")
        ]
        mine = [line for line in access if line.get(SAGA_ID) == order["saga_id"]]
        assert mine, f"{part}: no access line with the saga id among {access}"
