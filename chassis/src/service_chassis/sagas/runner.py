"""The orchestrator as a service component: started after the database, stopped before it."""

from __future__ import annotations

import asyncio

from .orchestrator import SagaOrchestrator


class SagaRunner:
    name = "sagas"

    def __init__(self, orchestrator: SagaOrchestrator, *, poll_interval: float = 0.5) -> None:
        self.orchestrator = orchestrator
        self._poll_interval = poll_interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(
            self.orchestrator.run(self._stop, poll_interval=self._poll_interval),
            name="saga-orchestrator",
        )

    async def stop(self) -> None:
        """Let the transition in progress finish, then stop: nothing is cut half-way, and a
        saga left active resumes in whichever replica runs next."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
