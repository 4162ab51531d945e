"""SIGKILL of the orchestrator at each transition: after a restart the saga ends as it would
have, and no step or compensation takes effect twice.

The participant acts and then holds its answer; the test kills the orchestrator process at that
moment, the worst for a crash: the effect happened, the orchestrator never heard of it, and its
transaction rolls back. The restarted orchestrator calls again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service_chassis.sagas import SagaOrchestrator, SagaStatus
from tests.sagas.http_participants import run_participants
from tests.sagas.orchestrator_process import PARTICIPANTS, place_order

CHASSIS = Path(__file__).resolve().parents[2]

# (participant that holds its answer, kind, participants that refuse their action)
KILL_POINTS = [
    ("stock", "action", set()),
    ("payment", "action", set()),
    ("shipping", "action", set()),
    ("shipping", "action", {"shipping"}),  # killed while hearing a refusal
    ("payment", "compensation", {"shipping"}),
    ("stock", "compensation", {"shipping"}),
]


def start_orchestrator(database_url: str, participants_url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sagas.orchestrator_process", database_url, participants_url],
        cwd=CHASSIS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def stop(process: subprocess.Popen[str], how: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(how)
    process.wait(10)
    assert process.stdout is not None
    process.stdout.close()


async def wait_for_end(orchestrator: SagaOrchestrator, saga_id: UUID) -> SagaStatus:
    status = None
    for _ in range(400):
        view = await orchestrator.get(saga_id)
        assert view is not None
        status = view.status
        if status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"saga still {status} after 20 s")


@pytest.mark.integration
@pytest.mark.parametrize(("holder", "kind", "rejecting"), KILL_POINTS)
async def test_killed_at_each_transition_resumes_without_repeating_an_effect(
    engine: AsyncEngine, database_url: str, holder: str, kind: str, rejecting: set[str]
) -> None:
    with run_participants() as participants:
        participants.reject = set(rejecting)
        participants.hold = (holder, kind)
        async with httpx.AsyncClient(base_url=participants.url) as client:
            orchestrator = SagaOrchestrator(engine, [place_order(client)])
            async with engine.begin() as connection:
                saga_id = await orchestrator.start(connection, "place-order", {})

            first = start_orchestrator(database_url, participants.url)
            try:
                held = await asyncio.to_thread(participants.held.wait, 20)
                assert held, "the orchestrator never reached the kill point"
                first.send_signal(signal.SIGKILL)
            finally:
                stop(first, signal.SIGKILL)
            participants.release.set()

            second = start_orchestrator(database_url, participants.url)
            try:
                status = await wait_for_end(orchestrator, saga_id)
            finally:
                stop(second, signal.SIGTERM)

    expected = SagaStatus.COMPENSATED if rejecting else SagaStatus.COMPLETED
    assert status is expected
    # The held call was made twice (once by each process); it took effect once.
    assert participants.calls[(holder, kind)] == 2
    for name in PARTICIPANTS:
        acted = name not in rejecting
        assert participants.effects[(name, "action")] == (1 if acted else 0), name
        compensated = bool(rejecting) and acted
        assert participants.effects[(name, "compensation")] == (1 if compensated else 0), name
