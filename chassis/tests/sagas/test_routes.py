"""The manual intervention path over HTTP: list, read, retry, abandon; problems for refusals."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from service_chassis.problems import install_problem_handlers
from service_chassis.sagas import SagaDefinition, SagaOrchestrator, saga_routes
from service_chassis.testing.servers import serve
from tests.sagas.participants import Participant

PROBLEM = "application/problem+json"


def stuck_saga() -> tuple[SagaDefinition, list[Participant]]:
    stock, payment = Participant("stock"), Participant("payment")
    payment.reject = True
    stock.compensation_failures = 100
    definition = SagaDefinition(
        "place-order",
        [stock.step(), payment.step()],
        compensation_attempts=2,
        retry_backoff=timedelta(0),
    )
    return definition, [stock, payment]


def app_for(orchestrator: SagaOrchestrator) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(saga_routes(orchestrator))
    return app


async def test_operator_lists_reads_and_retries_a_saga_needing_intervention(
    engine: AsyncEngine,
) -> None:
    definition, (stock, _) = stuck_saga()
    orchestrator = SagaOrchestrator(engine, [definition])
    async with engine.begin() as connection:
        saga_id = await orchestrator.start(connection, "place-order", {"order_id": "o-7"})
    await orchestrator.run_until_idle()

    async with serve(app_for(orchestrator)) as client:
        listed = await client.get("/sagas", params={"status": "needs_intervention"})
        assert listed.status_code == 200
        assert [s["id"] for s in listed.json()] == [str(saga_id)]
        assert listed.json()[0]["step"] == "stock"

        one = await client.get(f"/sagas/{saga_id}")
        assert one.status_code == 200
        history = one.json()["history"]
        assert [(e["kind"], e["step"], e["outcome"]) for e in history] == [
            ("started", None, "started"),
            ("action", "stock", "succeeded"),
            ("action", "payment", "rejected"),
            ("compensation", "stock", "failed"),
            ("compensation", "stock", "failed"),
        ]
        assert history[-1]["detail"] == "ParticipantDown"  # the class, never the message

        stock.compensation_failures = 0
        retried = await client.post(f"/sagas/{saga_id}/retry")
        assert retried.status_code == 200
        assert retried.json()["status"] == "compensating"
        await orchestrator.run_until_idle()
        done = await client.get(f"/sagas/{saga_id}")
        assert done.json()["status"] == "compensated"

        # Over now: neither retried nor abandoned again.
        refused = await client.post(f"/sagas/{saga_id}/abandon")
        assert refused.status_code == 409
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["type"] == "urn:problem:saga-state-conflict"
        assert refused.json()["saga_status"] == "compensated"


async def test_abandon_ends_a_stuck_saga_and_unknown_ids_are_404_problems(
    engine: AsyncEngine,
) -> None:
    definition, _ = stuck_saga()
    orchestrator = SagaOrchestrator(engine, [definition])
    async with engine.begin() as connection:
        saga_id = await orchestrator.start(connection, "place-order", {})
    await orchestrator.run_until_idle()

    async with serve(app_for(orchestrator)) as client:
        abandoned = await client.post(f"/sagas/{saga_id}/abandon")
        assert abandoned.status_code == 200
        assert abandoned.json()["status"] == "abandoned"
        assert abandoned.json()["history"][-1]["kind"] == "abandoned"

        for response in (
            await client.get(f"/sagas/{uuid4()}"),
            await client.post(f"/sagas/{uuid4()}/retry"),
        ):
            assert response.status_code == 404
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["type"] == "urn:problem:saga-not-found"

        malformed = await client.get("/sagas/not-a-uuid")
        assert malformed.status_code == 422
        assert malformed.headers["content-type"] == PROBLEM
        bad_status = await client.get("/sagas", params={"status": "sideways"})
        assert bad_status.status_code == 422
