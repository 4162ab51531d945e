"""Example resource: items in the service's database. Creating one also publishes an
``item.created`` event through the outbox when messaging is on: the row and the event commit
together or not at all. Replace with the service's own domain.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field
from service_chassis import Problem, Service
from service_chassis.database import DatabaseDependency

from ..models import ItemRow

router = APIRouter(prefix="/items", tags=["items"])

# Ids are positive and fit in 64 bits (the column's BIGINT), so any id in a path can be
# answered (404, not 500).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=10_000)


class Item(NewItem):
    model_config = ConfigDict(from_attributes=True)

    id: int


class ItemNotFound(Problem):
    status = 404
    type = "urn:problem:item-not-found"
    title = "Item not found"


ERRORS: dict[int | str, dict[str, str]] = {
    503: {"description": "The database cannot be reached"},
    504: {"description": "The database did not answer within the request's deadline"},
}


@router.get("/{item_id}", responses={404: {"description": "No such item"}, **ERRORS})
async def get_item(item_id: ItemId, database: DatabaseDependency) -> Item:
    async with database.transaction() as work:
        row = await work.session.get(ItemRow, item_id)
        if row is None:
            raise ItemNotFound(f"There is no item {item_id}.", extensions={"item_id": item_id})
        return Item.model_validate(row)


@router.post("", status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def create_item(new: NewItem, database: DatabaseDependency) -> Item:
    async with database.transaction() as work:
        row = ItemRow(**new.model_dump())
        work.session.add(row)
        await work.session.flush()  # the database gives the id
        item = Item.model_validate(row)
        if work.publishes:
            await work.publish_new("item.created", item.model_dump())
    return item


def install(service: Service) -> None:
    service.include_router(router)
