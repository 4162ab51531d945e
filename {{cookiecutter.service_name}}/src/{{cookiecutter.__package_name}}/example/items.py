"""Example resource: items kept in memory. Replace with the service's own domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from pydantic import BaseModel, Field
from service_chassis import Problem, Service

router = APIRouter(prefix="/items", tags=["items"])

# Ids are positive and fit in 64 bits, so any id in a path can be answered (404, not 500).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=10_000)


class Item(NewItem):
    id: int


class ItemNotFound(Problem):
    status = 404
    type = "urn:problem:item-not-found"
    title = "Item not found"


class ItemStore:
    """An in-memory store, seeded so that ``GET /items/1`` answers out of the box."""

    def __init__(self) -> None:
        self._items: dict[int, Item] = {1: Item(id=1, name="example", quantity=1)}

    def get(self, item_id: int) -> Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise ItemNotFound(
                f"There is no item {item_id}.", extensions={"item_id": item_id}
            ) from None

    def add(self, new: NewItem) -> Item:
        item = Item(id=max(self._items, default=0) + 1, **new.model_dump())
        self._items[item.id] = item
        return item


async def item_store(request: Request) -> ItemStore:
    # async: FastAPI runs a plain def dependency in a worker thread, on every request.
    store: ItemStore = request.app.state.items
    return store


Store = Annotated[ItemStore, Depends(item_store)]


@router.get("/{item_id}", responses={404: {"description": "No such item"}})
async def get_item(item_id: ItemId, store: Store) -> Item:
    return store.get(item_id)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(new: NewItem, store: Store) -> Item:
    return store.add(new)


def install(service: Service) -> None:
    service.app.state.items = ItemStore()
    service.include_router(router)
