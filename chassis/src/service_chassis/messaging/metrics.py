"""The messaging metrics of the service's own: dead letters, skipped duplicates, waits.

The publish and consume metrics of OpenTelemetry's conventions are telemetry.py's, on the
same registry. Labels are destinations (a handful per service), never message ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class MessagingMetrics:
    dead_letters: Counter
    duplicates: Counter
    dependency_waits: Counter


def create_messaging_metrics(registry: CollectorRegistry) -> MessagingMetrics:
    return MessagingMetrics(
        dead_letters=Counter(
            "messaging_dead_letters",
            "Messages sent to the dead-letter destination, by the destination they came from.",
            ("destination", "reason"),
            registry=registry,
        ),
        duplicates=Counter(
            "messaging_duplicates",
            "Redelivered messages skipped because their id had already been handled.",
            ("destination",),
            registry=registry,
        ),
        dependency_waits=Counter(
            "messaging_dependency_waits",
            "Times a handler waited for an unavailable downstream (breaker open, bulkhead "
            "full) instead of spending one of the message's attempts.",
            ("destination", "downstream"),
            registry=registry,
        ),
    )
