"""An orchestrator in a process of its own, for the crash tests: it drives the place-order
saga against the HTTP participants until SIGTERM (or until a test kills it).

    python -m tests.sagas.orchestrator_process DATABASE_URL PARTICIPANTS_URL
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from service_chassis.sagas import (
    SagaDefinition,
    SagaOrchestrator,
    SagaStep,
    StepContext,
    StepRejected,
)

PARTICIPANTS = ("stock", "payment", "shipping")


def place_order(client: httpx.AsyncClient) -> SagaDefinition:
    async def call(context: StepContext, kind: str) -> None:
        response = await client.post(
            f"/{context.step}/{kind}", headers={"idempotency-key": context.idempotency_key}
        )
        if response.status_code == 409:
            raise StepRejected(context.step)
        response.raise_for_status()

    async def act(context: StepContext) -> Mapping[str, Any]:
        await call(context, "action")
        return {}

    async def undo(context: StepContext) -> None:
        await call(context, "compensation")

    return SagaDefinition(
        "place-order",
        [SagaStep(name, act, undo) for name in PARTICIPANTS],
        retry_backoff=timedelta(milliseconds=50),
    )


async def main(database_url: str, participants_url: str) -> None:
    engine = create_async_engine(database_url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with httpx.AsyncClient(base_url=participants_url, timeout=60) as client:
        orchestrator = SagaOrchestrator(engine, [place_order(client)])
        print("ready", flush=True)
        await orchestrator.run(stop, poll_interval=0.05)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
