"""The example saga across two real processes of this service on loopback: one orchestrates
(POST /orders), the other is its stock and payments participant. Replace with your own saga's
tests along with it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from service_chassis.testing.databases import migrated_database
from service_chassis.testing.servers import ServiceProcess, start_service

from {{ cookiecutter.__package_name }}.example.participants import (
    CHARGE_LIMIT_CENTS,
    STOCK_PER_RESERVATION,
)
from {{ cookiecutter.__package_name }}.settings import Settings

PACKAGE = "{{ cookiecutter.__package_name }}"
QUIET = {"OTEL_TRACES_EXPORTER": "none", "MESSAGING_ENABLED": "false"}


@pytest.fixture(scope="module")
def participant() -> Iterator[ServiceProcess]:
    """Another service, so a database of its own: sharing one would make it a replica of the
    orchestrator, sharing its sagas too."""
    with migrated_database(Settings(), PACKAGE) as database:
        process = start_service(PACKAGE, {**QUIET, **database}, ready_path="/health/ready")
        yield process
        process.stop()


@pytest.fixture(scope="module")
def orchestrator(participant: ServiceProcess) -> Iterator[ServiceProcess]:
    env = {**QUIET, "STOCK_URL": participant.base_url, "PAYMENTS_URL": participant.base_url}
    process = start_service(PACKAGE, env, ready_path="/health/ready")
    yield process
    process.stop()


async def settled(client: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    for _ in range(200):
        order: dict[str, Any] = (await client.get(f"/orders/{order_id}")).json()
        if order["status"] != "pending":
            return order
        await asyncio.sleep(0.05)
    saga = (await client.get(f"/sagas/{order['saga_id']}")).json()
    raise AssertionError(f"order {order_id} still pending: {saga['history']}")


async def place(orchestrator: ServiceProcess, **order: Any) -> tuple[dict[str, Any], list[Any]]:
    async with httpx.AsyncClient(base_url=orchestrator.base_url) as client:
        accepted = await client.post("/orders", json=order)
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["location"] == f"/orders/{accepted.json()['id']}"
        final = await settled(client, accepted.json()["id"])
        saga = (await client.get(f"/sagas/{final['saga_id']}")).json()
    steps = [(e["kind"], e["step"], e["outcome"]) for e in saga["history"][1:]]
    return final | {"saga_status": saga["status"], "data": saga["data"]}, steps


async def test_an_order_is_confirmed_when_every_step_succeeds(
    orchestrator: ServiceProcess,
) -> None:
    order, steps = await place(orchestrator, sku="book", quantity=2, amount_cents=1_500)
    assert order["status"] == "confirmed"
    assert order["saga_status"] == "completed"
    assert {"reservation_id", "charge_id"} <= set(order["data"])
    assert steps == [
        ("action", "hold-order", "succeeded"),
        ("action", "reserve-stock", "succeeded"),
        ("action", "charge-payment", "succeeded"),
        ("action", "confirm-order", "succeeded"),
    ]


async def test_out_of_stock_cancels_the_order_and_reserves_nothing(
    orchestrator: ServiceProcess,
) -> None:
    order, steps = await place(
        orchestrator, sku="book", quantity=STOCK_PER_RESERVATION + 1, amount_cents=1_500
    )
    assert order["status"] == "cancelled"
    assert order["saga_status"] == "compensated"
    assert steps == [
        ("action", "hold-order", "succeeded"),
        ("action", "reserve-stock", "rejected"),
        ("compensation", "hold-order", "succeeded"),
    ]


async def test_a_declined_payment_releases_the_stock_then_cancels(
    orchestrator: ServiceProcess, participant: ServiceProcess
) -> None:
    order, steps = await place(
        orchestrator, sku="lamp", quantity=1, amount_cents=CHARGE_LIMIT_CENTS + 1
    )
    assert order["status"] == "cancelled"
    assert steps == [
        ("action", "hold-order", "succeeded"),
        ("action", "reserve-stock", "succeeded"),
        ("action", "charge-payment", "rejected"),
        ("compensation", "reserve-stock", "succeeded"),
        ("compensation", "hold-order", "succeeded"),
    ]
    async with httpx.AsyncClient(base_url=participant.base_url) as client:
        # Releasing again (a compensation retried) changes nothing and answers the same.
        action_key = f"saga-{order['saga_id']}-reserve-stock-action"
        again = await client.post(f"/reservations/{action_key}/release")
        assert again.json()["status"] == "released"
        assert again.json()["sku"] == "lamp"


async def test_a_participant_acts_once_per_key_and_a_late_action_finds_its_tombstone(
    participant: ServiceProcess,
) -> None:
    async with httpx.AsyncClient(base_url=participant.base_url) as client:
        body = {"sku": "pen", "quantity": 3}
        first = await client.post("/reservations", json=body, headers={"Idempotency-Key": "k-1"})
        again = await client.post("/reservations", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()

        # The compensation arrived first (the action's request was lost, then delivered late).
        released = await client.post("/reservations/k-2/release")
        assert released.json()["status"] == "released"
        late = await client.post("/reservations", json=body, headers={"Idempotency-Key": "k-2"})
        assert late.json()["status"] == "released"  # no effect

        missing_key = await client.post("/charges", json={"amount_cents": 100})
        assert missing_key.status_code == 422
        assert missing_key.headers["content-type"] == "application/problem+json"
        declined = await client.post(
            "/charges",
            json={"amount_cents": CHARGE_LIMIT_CENTS + 1},
            headers={"Idempotency-Key": "k-3"},
        )
        assert declined.status_code == 409
        assert declined.json()["type"] == "urn:problem:payment-declined"


async def test_an_unknown_order_is_a_404_problem(orchestrator: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=orchestrator.base_url) as client:
        response = await client.get("/orders/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:problem:order-not-found"
