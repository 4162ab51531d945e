"""The example event: what ``POST /events`` publishes and the subscriber consumes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class NewEvent(BaseModel):
    """What a client sends; the service adds the id and the time."""

    # JSON has no NaN or infinity: refused here rather than turned into null on the way out.
    model_config = ConfigDict(allow_inf_nan=False)

    type: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: dict[str, JsonValue] = Field(default_factory=dict)


class Event(NewEvent):
    """What travels through the broker. Unknown fields are ignored (tolerant reader)."""

    id: uuid.UUID
    occurred_at: datetime

    @classmethod
    def create(cls, new: NewEvent) -> Event:
        return cls(id=uuid.uuid4(), occurred_at=datetime.now(UTC), **new.model_dump())

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
