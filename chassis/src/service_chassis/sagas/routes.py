"""The manual intervention path: list sagas by state, read one's history, retry or abandon one
that needs intervention. Every refusal is a problem document."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from ..problems import Problem
from .machine import InvalidTransition, SagaStatus
from .orchestrator import SagaNotFound, SagaOrchestrator, SagaView


class SagaUnknown(Problem):
    status = 404
    type = "urn:problem:saga-not-found"
    title = "Saga not found"


class SagaStateConflict(Problem):
    status = 409
    type = "urn:problem:saga-state-conflict"
    title = "Saga is not in a state that allows this"


class SagaEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    kind: str
    step: str | None
    outcome: str
    detail: str | None
    status: str


class SagaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    status: SagaStatus
    step: str | None
    failures: int
    data: dict[str, Any]
    started_at: datetime
    updated_at: datetime
    deadline_at: datetime
    history: list[SagaEventOut] | None = None


def _out(view: SagaView, *, history: bool) -> SagaOut:
    out = SagaOut.model_validate(view)
    return out if history else out.model_copy(update={"history": None})


def saga_routes(orchestrator: SagaOrchestrator, *, prefix: str = "/sagas") -> APIRouter:
    """Routes for operators. Mount them where only operators reach (the gateway keeps them
    inside, as it does /metrics)."""
    router = APIRouter(prefix=prefix, tags=["sagas"])

    @router.get("")
    async def list_sagas(
        status: SagaStatus | None = None, limit: int = Query(default=100, ge=1, le=1000)
    ) -> list[SagaOut]:
        views = await orchestrator.list(status=status, limit=limit)
        return [_out(view, history=False) for view in views]

    @router.get("/{saga_id}")
    async def get_saga(saga_id: UUID) -> SagaOut:
        view = await orchestrator.get(saga_id)
        if view is None:
            raise SagaUnknown(f"no saga {saga_id}")
        return _out(view, history=True)

    @router.post("/{saga_id}/retry")
    async def retry_saga(saga_id: UUID) -> SagaOut:
        """Resume compensation at the step that kept failing (after fixing its cause)."""
        return _out(await _operate(orchestrator.retry, saga_id), history=True)

    @router.post("/{saga_id}/abandon")
    async def abandon_saga(saga_id: UUID) -> SagaOut:
        """Stop compensating: what is left is settled by hand, and the history says so."""
        return _out(await _operate(orchestrator.abandon, saga_id), history=True)

    return router


async def _operate(operation: Any, saga_id: UUID) -> SagaView:
    try:
        view: SagaView = await operation(saga_id)
    except SagaNotFound:
        raise SagaUnknown(f"no saga {saga_id}") from None
    except InvalidTransition as refused:
        raise SagaStateConflict(
            f"{refused}: only a saga that needs intervention can be retried or abandoned",
            extensions={"saga_status": refused.status.value},
        ) from None
    return view
