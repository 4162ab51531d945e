"""The example event: what ``POST /events`` publishes and the subscriber consumes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

# Ids derived from idempotency keys live in a namespace of their own (UUID version 5).
IDEMPOTENCY_NAMESPACE = uuid.UUID("8f6c2e3a-7a51-5bd4-9f0e-4c8f3b2d1a90")


def event_id(idempotency_key: str | None) -> uuid.UUID:
    """A fresh id, or the one a key stands for: the key itself when it is a UUID."""
    if not idempotency_key:
        return uuid.uuid4()
    try:
        return uuid.UUID(idempotency_key)
    except ValueError:
        return uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key)


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
    def create(cls, new: NewEvent, *, idempotency_key: str | None = None) -> Event:
        """A new event; with the caller's ``Idempotency-Key``, its id is derived from the key,
        so a retried request makes the same event, which the broker (NATS's duplicate window)
        and the consumers' idempotency stores recognise."""
        return cls(id=event_id(idempotency_key), occurred_at=datetime.now(UTC), **new.model_dump())

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
