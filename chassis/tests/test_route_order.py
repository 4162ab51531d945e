from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import BaseRoute
from structlog.testing import capture_logs

from service_chassis.testing.servers import serve


def paths(routes: list[BaseRoute]) -> list[str]:
    """Each route's path; an included router shows as the paths of its routes."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.append(",".join(getattr(r, "path", "?") for r in inner.routes))
        else:
            found.append(getattr(route, "path", "?"))
    return found


async def test_the_chassis_routes_come_after_the_service_routes_once_started(
    app: FastAPI,
) -> None:
    before = paths(app.router.routes)
    assert before.index("/metrics") < before.index("/items/{item_id},/items")
    async with serve(app) as client:
        after = paths(app.router.routes)
        assert sorted(after) == sorted(before)  # moved, not lost or doubled
        assert after[-2:] == ["/metrics", "/health/live,/health/ready"]
        assert after.index("/items/{item_id},/items") < after.index("/metrics")
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/items/1")).status_code == 200


async def test_a_catch_all_route_of_the_service_leaves_the_probes_first(app: FastAPI) -> None:
    @app.get("/{anything:path}")
    async def catch_all(anything: str) -> dict[str, str]:
        return {"caught": anything}

    before = paths(app.router.routes)
    with capture_logs() as logs:
        async with serve(app) as client:
            assert paths(app.router.routes) == before
            live = await client.get("/health/live")
            assert live.headers["content-type"] == "application/health+json"
            assert (await client.get("/metrics")).text.startswith("# HELP")
            assert (await client.get("/elsewhere")).json() == {"caught": "elsewhere"}
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    shadowed = "'/{anything:path}' answers GET /health/live"
    assert [entry["reason"] for entry in warnings] == [shadowed]
