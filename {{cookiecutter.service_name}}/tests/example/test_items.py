"""The example resource: replace these tests with your own along with the example."""

from __future__ import annotations

import httpx


async def test_an_item_is_created_and_read_back(client: httpx.AsyncClient) -> None:
    created = await client.post("/items", json={"name": "widget", "quantity": 3})
    assert created.status_code == 201
    item = created.json()
    assert (await client.get(f"/items/{item['id']}")).json() == item


async def test_a_missing_item_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/999")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:problem:item-not-found"


async def test_an_id_too_large_for_the_store_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/99999999999999999999999")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_bad_item_is_a_422_problem_field_by_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "", "quantity": 0})
    assert response.status_code == 422
    pointers = {error["pointer"] for error in response.json()["errors"]}
    assert pointers == {"#/body/name", "#/body/quantity"}
