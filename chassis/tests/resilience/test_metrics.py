from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from service_chassis.resilience.breaker import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)
from service_chassis.resilience.bulkhead import Bulkhead, BulkheadFullError
from service_chassis.resilience.clock import ManualClock
from service_chassis.resilience.metrics import ResilienceMetrics


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def test_track_creates_the_series_at_zero() -> None:
    registry = CollectorRegistry()
    ResilienceMetrics(registry).track("payments")
    assert value(registry, "circuit_breaker_state", name="payments") == 0.0
    assert value(registry, "circuit_breaker_rejections_total", name="payments") == 0.0
    assert value(registry, "bulkhead_rejections_total", name="payments") == 0.0
    for from_state, to_state in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("half_open", "open"),
    ]:
        sample = value(
            registry,
            "circuit_breaker_transitions_total",
            name="payments",
            from_state=from_state,
            to_state=to_state,
        )
        assert sample == 0.0
    for reason in ("connect_error", "connection_error", "timeout", "status_429", "status_503"):
        assert value(registry, "outbound_retries_total", name="payments", reason=reason) == 0.0


def test_breaker_transitions_and_rejections_update_the_registry() -> None:
    registry = CollectorRegistry()
    metrics = ResilienceMetrics(registry)
    clock = ManualClock()
    config = BreakerConfig(minimum_calls=1, open_duration=5.0, half_open_max_calls=1)
    breaker = CircuitBreaker("payments", config, clock=clock, listeners=[metrics])
    metrics.track(breaker.name, breaker.state)

    breaker.acquire().record_failure(0.1)
    assert value(registry, "circuit_breaker_state", name="payments") == 1.0
    transitions = {"name": "payments", "from_state": "closed", "to_state": "open"}
    assert value(registry, "circuit_breaker_transitions_total", **transitions) == 1.0

    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert value(registry, "circuit_breaker_rejections_total", name="payments") == 1.0

    clock.advance(5.0)
    assert breaker.state is CircuitState.HALF_OPEN
    assert value(registry, "circuit_breaker_state", name="payments") == 2.0
    trial = breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()  # half-open rejections count too
    assert value(registry, "circuit_breaker_rejections_total", name="payments") == 2.0

    trial.record_success(0.1)
    assert value(registry, "circuit_breaker_state", name="payments") == 0.0
    closed = {"name": "payments", "from_state": "half_open", "to_state": "closed"}
    assert value(registry, "circuit_breaker_transitions_total", **closed) == 1.0


def test_bulkhead_rejections_update_the_registry() -> None:
    registry = CollectorRegistry()
    metrics = ResilienceMetrics(registry)
    bulkhead = Bulkhead("payments", max_concurrent=1, listeners=[metrics])

    async def main() -> None:
        async with bulkhead:
            with pytest.raises(BulkheadFullError):
                await bulkhead.acquire()

    asyncio.run(main())
    assert value(registry, "bulkhead_rejections_total", name="payments") == 1.0


def test_retries_are_counted_by_reason() -> None:
    registry = CollectorRegistry()
    metrics = ResilienceMetrics(registry)
    metrics.on_retry("payments", "status_503")
    metrics.on_retry("payments", "status_503")
    metrics.on_retry("payments", "timeout")
    assert value(registry, "outbound_retries_total", name="payments", reason="status_503") == 2.0
    assert value(registry, "outbound_retries_total", name="payments", reason="timeout") == 1.0


def test_uses_only_the_registry_it_is_given() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    ResilienceMetrics(first).on_retry("payments", "timeout")
    ResilienceMetrics(second)  # a second app in the same process does not collide
    assert value(first, "outbound_retries_total", name="payments", reason="timeout") == 1.0
    assert value(second, "outbound_retries_total", name="payments", reason="timeout") is None
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"name": "payments"}) is None


def test_exposition_names_match_the_contract() -> None:
    registry = CollectorRegistry()
    ResilienceMetrics(registry).track("payments")
    text = generate_latest(registry).decode()
    for line in [
        "# TYPE circuit_breaker_state gauge",
        "# TYPE circuit_breaker_transitions_total counter",
        "# TYPE circuit_breaker_rejections_total counter",
        "# TYPE bulkhead_rejections_total counter",
        "# TYPE outbound_retries_total counter",
    ]:
        assert line in text
