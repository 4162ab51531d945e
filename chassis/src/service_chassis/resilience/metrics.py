"""Prometheus metrics for the resilience primitives (names per docs/metrics.md).

`ResilienceMetrics` is a breaker, bulkhead and retry listener at once; hand the same instance to
each. It registers on the registry it is given, never on prometheus-client's global one, so
several apps (and tests) in one process do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .breaker import CircuitState
from .retry import RETRYABLE_STATUSES, TransportFailure

# The transitions a breaker can make; created at zero so rate() and alerts see them from the start.
BREAKER_TRANSITIONS = (
    (CircuitState.CLOSED, CircuitState.OPEN),
    (CircuitState.OPEN, CircuitState.HALF_OPEN),
    (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    (CircuitState.HALF_OPEN, CircuitState.OPEN),
)
RETRY_REASONS = tuple(f.value for f in TransportFailure) + tuple(
    f"status_{status}" for status in sorted(RETRYABLE_STATUSES)
)


class ResilienceMetrics:
    """Keeps the breaker, bulkhead and retry series of every downstream."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.breaker_state = Gauge(
            "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            ["name"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "circuit_breaker_transitions",
            "Circuit breaker state changes.",
            ["name", "from_state", "to_state"],
            registry=registry,
        )
        self.breaker_rejections = Counter(
            "circuit_breaker_rejections",
            "Calls refused by a circuit breaker while open or half-open.",
            ["name"],
            registry=registry,
        )
        self.bulkhead_rejections = Counter(
            "bulkhead_rejections",
            "Calls refused because the bulkhead was full.",
            ["name"],
            registry=registry,
        )
        self.retries = Counter(
            "outbound_retries",
            "Outbound retry attempts made.",
            ["name", "reason"],
            registry=registry,
        )

    def track(self, name: str, state: CircuitState = CircuitState.CLOSED) -> None:
        """Create a downstream's series at their starting values, so they are scraped (and
        dashboards show 0, not "no data") before anything happens."""
        self.breaker_state.labels(name=name).set(state)
        for from_state, to_state in BREAKER_TRANSITIONS:
            self.breaker_transitions.labels(
                name=name, from_state=from_state.label, to_state=to_state.label
            )
        self.breaker_rejections.labels(name=name)
        self.bulkhead_rejections.labels(name=name)
        for reason in RETRY_REASONS:
            self.retries.labels(name=name, reason=reason)

    # BreakerListener
    def on_transition(self, name: str, from_state: CircuitState, to_state: CircuitState) -> None:
        self.breaker_state.labels(name=name).set(to_state)
        self.breaker_transitions.labels(
            name=name, from_state=from_state.label, to_state=to_state.label
        ).inc()

    def on_rejection(self, name: str) -> None:
        self.breaker_rejections.labels(name=name).inc()

    # BulkheadListener
    def on_bulkhead_rejection(self, name: str) -> None:
        self.bulkhead_rejections.labels(name=name).inc()

    # RetryListener
    def on_retry(self, name: str, reason: str) -> None:
        self.retries.labels(name=name, reason=reason).inc()
