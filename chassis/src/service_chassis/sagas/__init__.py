"""Sagas: a transaction across services as ordered local steps, each with a compensation.

Orchestrated (one service drives the steps), persisted in the orchestrating service's database
(a crash resumes where it stopped), traced as one trace from the request that started it, and
with a manual intervention path for the compensation that keeps failing.
"""

from .definition import SagaDefinition, SagaStep, StepContext, StepRejected
from .machine import ActionOutcome, SagaStatus
from .metrics import SagaMetrics, create_saga_metrics
from .orchestrator import SAGA_ID, SagaNotFound, SagaOrchestrator, SagaView, UnknownSaga
from .routes import saga_routes
from .runner import SagaRunner
from .tables import metadata

__all__ = [
    "SAGA_ID",
    "ActionOutcome",
    "SagaDefinition",
    "SagaMetrics",
    "SagaNotFound",
    "SagaOrchestrator",
    "SagaRunner",
    "SagaStatus",
    "SagaStep",
    "SagaView",
    "StepContext",
    "StepRejected",
    "UnknownSaga",
    "create_saga_metrics",
    "metadata",
    "saga_routes",
]
