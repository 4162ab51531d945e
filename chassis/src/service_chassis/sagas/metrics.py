"""Saga metrics: how many start and how each ends, how long steps take, and the two numbers an
operator is paged for (sagas needing intervention, sagas past their timeout)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class SagaMetrics:
    started: Counter
    finished: Counter
    step_duration: Histogram
    needing_intervention: Gauge
    overdue: Gauge


def create_saga_metrics(registry: CollectorRegistry) -> SagaMetrics:
    return SagaMetrics(
        started=Counter("sagas_started", "Sagas started, by saga.", ("saga",), registry=registry),
        finished=Counter(
            "sagas_finished",
            "Sagas that reached an end: completed, compensated or abandoned.",
            ("saga", "status"),
            registry=registry,
        ),
        step_duration=Histogram(
            "saga_step_duration_seconds",
            "Time of one action or compensation, by outcome.",
            ("saga", "step", "kind", "outcome"),
            buckets=STEP_BUCKETS,
            registry=registry,
        ),
        needing_intervention=Gauge(
            "sagas_needing_intervention",
            "Sagas stopped because a compensation kept failing: an operator retries or "
            "abandons each (GET /sagas?status=needs_intervention).",
            ("saga",),
            registry=registry,
        ),
        overdue=Gauge(
            "sagas_overdue",
            "Sagas still running or compensating past their declared timeout.",
            ("saga",),
            registry=registry,
        ),
    )
