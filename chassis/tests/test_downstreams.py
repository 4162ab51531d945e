"""Declared downstreams: one client per name, shared; a clear error or a 503 without a URL."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends
from opentelemetry.sdk.trace import TracerProvider

from service_chassis import (
    Downstream,
    MissingDownstreamURLError,
    ResilientClient,
    Service,
)
from service_chassis.downstreams import UndeclaredDownstreamError
from service_chassis.testing.servers import RecordingDownstream, serve
from service_chassis.testing.wiring import downstream_urls
from tests.sample.settings import Settings

PAYMENTS = Downstream("payments")
CATALOG = Downstream("catalog", optional=True)
Payments = Annotated[ResilientClient, Depends(PAYMENTS)]
Catalog = Annotated[ResilientClient, Depends(CATALOG)]

router = APIRouter()


@router.get("/pay")
async def pay(payments: Payments) -> dict[str, int]:
    return {"status": (await payments.get("")).status_code}


@router.get("/browse")
async def browse(catalog: Catalog) -> dict[str, int]:
    return {"status": (await catalog.get("")).status_code}


def build(tracer_provider: TracerProvider) -> Service:
    service = Service(
        Settings(otel_traces_exporter="none"),
        tracer_provider=tracer_provider,
        downstreams=(PAYMENTS, CATALOG),
    )
    service.include_router(router)
    return service


def test_a_required_downstream_without_url_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> None:
    monkeypatch.delenv("PAYMENTS_URL", raising=False)
    with pytest.raises(MissingDownstreamURLError, match="PAYMENTS_URL is not set"):
        build(tracer_provider)


def test_bad_knobs_fail_at_start_even_without_a_url(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> None:
    monkeypatch.setenv("PAYMENTS_URL", "http://payments")
    monkeypatch.setenv("CATALOG_BREAKER_FAILURE_RATE", "2")
    with pytest.raises(ValueError, match="CATALOG_BREAKER_FAILURE_RATE='2'"):
        build(tracer_provider)


async def test_an_optional_downstream_without_url_answers_a_503_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    downstream: RecordingDownstream,
) -> None:
    monkeypatch.setenv("PAYMENTS_URL", downstream.url)
    monkeypatch.delenv("CATALOG_URL", raising=False)
    async with serve(build(tracer_provider).app) as client:
        assert (await client.get("/pay")).json() == {"status": 200}
        refused = await client.get("/browse")
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"] == "urn:problem:downstream-not-configured"
    assert "CATALOG_URL" in body["detail"]
    assert body["setting"] == "CATALOG_URL"


def test_declaring_again_shares_one_client_and_a_conflict_is_refused(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> None:
    monkeypatch.setenv("PAYMENTS_URL", "http://payments")
    service = build(tracer_provider)
    assert service.declare(Downstream("payments")) is service.downstreams["payments"]
    with pytest.raises(ValueError, match="declared twice"):
        service.declare(Downstream("payments", optional=True))
    with pytest.raises(UndeclaredDownstreamError, match="payments"):
        service.downstreams["paymens"]


def test_one_breaker_per_downstream_in_the_metrics(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> None:
    monkeypatch.setenv("PAYMENTS_URL", "http://payments")
    service = build(tracer_provider)
    service.declare(PAYMENTS)
    registry = service.metrics.registry
    states = [
        sample.labels["name"]
        for family in registry.collect()
        if family.name == "circuit_breaker_state"
        for sample in family.samples
    ]
    assert sorted(states) == ["catalog", "payments"]


def test_wiring_finds_every_declared_downstream(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> None:
    monkeypatch.delenv("PAYMENTS_URL", raising=False)
    monkeypatch.delenv("CATALOG_URL", raising=False)
    found = downstream_urls(lambda: build(tracer_provider).app, "http://stand-in")
    assert found == {"PAYMENTS_URL": "http://stand-in", "CATALOG_URL": "http://stand-in"}


def test_install_package_installs_each_module_and_ignores_a_missing_package(
    tracer_provider: TracerProvider,
) -> None:
    service = Service(Settings(otel_traces_exporter="none"), tracer_provider=tracer_provider)
    assert service.install_package("tests.no_such_package") == []
    installed = service.install_package("tests.sample.example")
    assert installed == [
        "tests.sample.example.downstream",
        "tests.sample.example.events",
        "tests.sample.example.items",
    ]
    paths = set(service.app.openapi()["paths"])
    assert {"/items/{item_id}", "/downstream", "/events"} <= paths


async def test_an_unresolvable_plain_url_is_a_502_problem(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> None:
    monkeypatch.setenv("PAYMENTS_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PAYMENTS_RETRY_MAX_ATTEMPTS", "1")
    async with serve(build(tracer_provider).app) as client:
        response: httpx.Response = await client.get("/pay")
    assert response.status_code == 502
    assert response.json()["downstream"] == "payments"
